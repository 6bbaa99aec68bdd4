"""xtts_jax.audio"""
