"""xtts_jax.models"""
