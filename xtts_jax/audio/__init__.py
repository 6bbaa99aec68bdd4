"""xtts_jax.audio: audio in (``io``), features (``mel``) and speech datasets (``datasets``)."""
