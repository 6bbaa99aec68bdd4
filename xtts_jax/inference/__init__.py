"""xtts_jax.inference"""
