"""xtts_jax.text"""
