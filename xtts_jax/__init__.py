"""xtts_jax: the autoregressive backbone of an XTTS-style TTS system in JAX and Equinox.

Data path: ``text/`` (tokenizer, corpora) and ``audio/`` (io, mel, datasets) feed
``models/`` (gpt, tts, conditioning, dvae, hifigan); ``inference/`` samples tokens with a KV
cache and renders audio; ``train/`` holds the one trainer; ``convert/`` imports reference weights.
"""

__version__ = "0.1.0"
