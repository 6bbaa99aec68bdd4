"""xtts_jax.convert"""
