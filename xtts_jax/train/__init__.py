"""xtts_jax.train"""
