"""A text pointer for the generator: hard, monotonic alignment inside the autoregressive model.

A small generator that must find its place in the text by attention loses it along the sentence
(docs/default_model: its teacher-forced loss climbs from the first tenth of an utterance to the
last). Here each audio position also reads *which* text token is being spoken: the input at audio
position t gets ``text_embedding[text[k]] + text_pos[k]`` for the token k that code t + 1 belongs
to, and an advance head on the same position says whether the next position moves on to the
next spoken token. This is the monotonic alignment of VALL-E R (Han et al., 2024), where a codec
language model predicts, with each code, whether to move to the next phoneme; its durations are
learnt from a forced alignment, here a CTC head's Viterbi path (``alignment.ctc_forced_align``,
``tools/align_tokens.py``). Sampling moves the pointer itself (advance when the head's logit is
positive), so every spoken token is read in order, none skipped or repeated, and the stop token
is drawn when the pointer has passed the last one and at no other time.

Silent tokens (word boundaries, punctuation, start, stop) get no frames of their own: the pointer
steps over them (their pauses belong to the sound before). The pointer's last stop is the text's
stop token, which the inputs of the final code and the audio stop token read.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int


def advance_targets(pointer: Int[Array, " Ta"]) -> Bool[Array, " Ta"]:
    """Whether position t + 1 reads another token than position t (the last position: False)."""
    return jnp.concatenate([pointer[1:] != pointer[:-1], jnp.zeros(1, bool)])


def advance_loss(logits: Float[Array, " Ta"], pointer: Int[Array, " Ta"], audio_len: Int[Array, ""]) -> Array:
    """Mean binary cross-entropy of the advance head over the positions whose next input exists
    (``[0, audio_len - 1)``)."""
    mask = jnp.arange(logits.shape[0]) < audio_len - 1
    bce = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), advance_targets(pointer).astype(jnp.float32))
    return jnp.sum(bce * mask) / jnp.maximum(jnp.sum(mask), 1)


def pointer_from_frames(text: np.ndarray, spoken: np.ndarray, frame_label: np.ndarray) -> np.ndarray:
    """Training pointers for ``audio = [start, c_1 .. c_n, stop]`` from a forced alignment: for the
    ``n`` codes, ``frame_label[j]`` is the index among ``text``'s spoken tokens that code j + 1
    belongs to. Audio position t reads the token of code t + 1; the positions of the last code and
    the stop token read the text's last token (its stop). Returns n + 2 text indices."""
    where = np.flatnonzero(spoken[text])
    stop = len(text) - 1
    return np.concatenate([where[frame_label], [stop, stop]]).astype(np.int32)


def start(text_ids: Int[Array, " P"], n_text: Int[Array, ""], spoken_table: Bool[Array, " V"]):
    """The pointer state before the audio start token: (text ids, spoken mask, position of the
    first spoken token, stop position)."""
    spoken = spoken_table[text_ids] & (jnp.arange(text_ids.shape[0]) < n_text)
    stop = (n_text - 1).astype(jnp.int32)
    first = jnp.where(jnp.any(spoken), jnp.argmax(spoken), stop).astype(jnp.int32)
    return text_ids, spoken, first, stop


def next_position(spoken: Bool[Array, " P"], k: Int[Array, ""], stop: Int[Array, ""]) -> Int[Array, ""]:
    """The position of the first spoken token after ``k``; ``stop`` when none is left."""
    later = spoken & (jnp.arange(spoken.shape[0]) > k)
    return jnp.where(jnp.any(later), jnp.argmax(later), stop).astype(jnp.int32)


def mask_stop(logits: Float[Array, "... V"], at_stop: Bool[Array, "..."], stop_token: int) -> Float[Array, "... V"]:
    """Audio logits under the pointer: only the stop token once the pointer has reached the text's
    stop, and never the stop token before."""
    is_stop = jnp.arange(logits.shape[-1]) == stop_token
    forced = jnp.where(is_stop, 0.0, -1e9)
    return jnp.where(at_stop[..., None], forced, jnp.where(is_stop, -1e9, logits))
