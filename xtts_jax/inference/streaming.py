"""Streaming synthesis: audio codes a chunk at a time from a carried KV cache, and the audio they
newly cover rendered as they come (the first piece of a sentence long before its end).

:func:`stream_codes` samples with the same one-row keys as the batch sampler, so a seed gives the
same codes streamed or not; :func:`stream_audio` turns them into waveform pieces through the
synthesizer's decode interface.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.audio.io import PEAK
from xtts_jax.errors import UserError
from xtts_jax.inference.sampling import SamplingConfig, sample_token, unstack_layers
from xtts_jax.inference.tts import Synthesizer, dvae_codes, render_dvae_codes
from xtts_jax.models.tts import TTS
from xtts_jax.models.tts_decoder import TTSDecoder


def stream_audio(synth: Synthesizer, text: str, cond: np.ndarray, key, sampling: SamplingConfig,
                 chunk_tokens: int = 16, speaker: np.ndarray | None = None,
                 context_tokens: int = 8) -> Iterator[np.ndarray]:
    """Audio pieces of one text as it is generated: after every ``chunk_tokens`` tokens, the
    samples the codes so far newly cover; the last token is held back until the next chunk
    (its samples depend on the token after it).

    Through the DVAE (mel decoders) only a window is re-rendered each time: the new codes plus
    ``context_tokens`` before them, so a sentence costs O(length) rendering, not O(length^2);
    a DVAE token is exactly ``downsample x hop`` samples, which places the window. GPT-latent
    decoders re-render the sentence (its latents need the whole prefix anyway).
    """
    sentences = synth.sentences(text)
    if not sentences:
        raise UserError("the text is empty")
    if synth.speed != 1.0:
        raise UserError("streaming renders at speed 1 only")
    if context_tokens < 0 or chunk_tokens < 1:
        raise UserError(f"chunk_tokens {chunk_tokens} must be >= 1 and context_tokens {context_tokens} >= 0")
    sampling = dataclasses.replace(sampling, max_new_tokens=synth.max_new_tokens(sampling.max_new_tokens))
    windowed = synth.vocoder.features == "mel"
    spt = synth.dvae.cfg.downsample * synth.dvae.cfg.mel.hop_length if windowed else None
    hop = spt or synth.sample_rate * 1024 // 22050  # samples per audio token (about, for latents)
    for n, sentence in enumerate(sentences):
        row = synth.text_row(sentence)
        key, sub = jax.random.split(key)
        if n:
            yield np.zeros(int(synth.gap_seconds * synth.sample_rate), np.float32)
        emitted, codes, gain = 0, [], 1.0
        for piece, done in stream_codes(synth.model, cond, row, sub, sampling, chunk_tokens):
            codes += dvae_codes(piece, synth.model.config) if windowed else piece
            first = max(0, emitted // spt - context_tokens) if windowed else 0
            wave = (render_dvae_codes(synth.dvae, synth.vocoder, codes[first:], speaker,
                                      reference_strength=synth.reference_strength) if windowed
                    else synth.decode(codes, cond, row, speaker))
            offset = first * (spt or 0)  # where the window starts in the sentence's samples
            total = offset + len(wave)
            end = total if done else min(total, max(0, (len(codes) - 1) * hop))
            if end > emitted:
                new = wave[emitted - offset:end - offset]
                # the sentence's peak is not known yet: a gain that only ever falls keeps every
                # piece under PEAK (the one-shot render scales the whole sentence once)
                gain = min(gain, PEAK / max(float(np.abs(new).max()), PEAK))
                yield new * np.float32(gain)
                emitted = end


@eqx.filter_jit
def _prefill(dec: TTSDecoder, prompt, max_len: int):
    """Jitted once per (prompt length, cache length), not once per call as a fresh lambda would be."""
    return dec.prefill(prompt, max_len)


@eqx.filter_jit
def _decode_chunk(dec: TTSDecoder, state: dict, cfg: SamplingConfig, n: int):
    """``n`` sampling steps of one row from a carried state (cache, logits, pos, seen, key, done)."""
    stop = dec.model.config.audio_stop_token
    dec = unstack_layers(dec)  # each layer's weights sliced once per chunk, not on every step

    def step(s, _):
        key, sub = jax.random.split(s["key"])
        row_key = jax.random.split(sub, 1)[0]  # as the batch sampler's row 0: same seed, same tokens
        token = jnp.where(s["done"], stop, sample_token(row_key, s["logits"], s["seen"], cfg))
        done = s["done"] | (token == stop)
        cache, logits = dec.decode_step(s["cache"], token, s["pos"])
        s = dict(cache=cache, logits=logits, pos=jnp.where(done, s["pos"], s["pos"] + 1),
                 seen=s["seen"].at[token].max(~done), key=key, done=done)
        return s, token

    return jax.lax.scan(step, state, None, length=n)


def stream_codes(model: TTS, cond: np.ndarray, text: list[int], key, sampling: SamplingConfig,
                 chunk_tokens: int) -> Iterator[tuple[list[int], bool]]:
    """Audio codes of one sentence, ``chunk_tokens`` at a time: yields (new codes, finished).
    The same key gives the same codes as :meth:`Synthesizer.codes` (the batch sampler) does."""
    cfg = model.config
    dec = TTSDecoder(model, jnp.asarray(cond))
    prompt = jnp.asarray(dec.prompt(range(len(cond)), text), jnp.int32)
    n_new = -(-sampling.max_new_tokens // chunk_tokens) * chunk_tokens
    logits, cache = _prefill(dec, prompt, prompt.shape[0] + n_new)
    state = dict(cache=cache, logits=logits[-1], pos=jnp.int32(prompt.shape[0]),
                 seen=jnp.asarray(sampling.initial_seen(cfg.audio_vocab_size)), key=key, done=jnp.bool_(False))
    sampling = dataclasses.replace(sampling, stop_token=cfg.audio_stop_token)
    produced = 0
    while True:
        state, tokens = _decode_chunk(dec, state, sampling, chunk_tokens)
        tokens = [int(t) for t in np.asarray(tokens)][: max(0, sampling.max_new_tokens - produced)]
        produced += chunk_tokens
        done = bool(state["done"]) or produced >= sampling.max_new_tokens
        yield tokens[: tokens.index(cfg.audio_stop_token)] if cfg.audio_stop_token in tokens else tokens, done
        if done:
            return
