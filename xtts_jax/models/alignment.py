"""Alignment aids for the generator: a CTC loss that makes the audio latents read the text, and a
diagonal prior on the attention from audio to text.

A small generator trained only on next-code prediction learns a *positional* alignment: its first
layer's heads attend from audio position t to text position ~c*t (learned positions on both sides),
which holds at the start of a sentence and drifts later, so its teacher-forced loss climbs along
each utterance (docs/default_model: 0.9 nats in the first tenth, 3.6 in the eighth). The aid asks the
latent at audio position t, which predicts code t+1, to also emit the phonemes being spoken through
a linear head trained with CTC (Graves et al., 2006) against the sentence's spoken tokens. A head
that can do this needs each latent to know where in the text the speech is, which is what drifts;
it is the recogniser-on-the-decoder idea of "Maximizing Mutual Information for Tacotron" (Liu et al.,
2019), applied to the latents of a decoder-only model. Sampling never reads the head.

The prior instead shows the model where to look: during training, the attention scores from audio
position t to text position k in the first layers get ``w * log P(k | t)``, a beta-binomial band
along the diagonal scaled by the utterance's true text and audio lengths (the static prior of
RAD-TTS, Shih et al. 2021, which Koel-TTS, Hussain et al. 2025, applies to the cross-attention of
its decoder), so the right text reaches each audio position before the model can find it by
content. Sampling, and the held-out loss, run without it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

# optax's CTC scores impossible alignments with log_epsilon (-1e5): far above any real loss
_INFEASIBLE = 1e4


def spoken_tokens(cfg) -> np.ndarray:
    """A [text_vocab_size] bool table: the text ids the CTC head must emit. For the phoneme
    tokenizer: phonemes and spelled letters (word boundaries and punctuation are often silent);
    for other tokenizers every id but the start and stop tokens."""
    spoken = np.ones(cfg.text_vocab_size, bool)
    if cfg.tokenizer == "phonemes":
        from xtts_jax.text import phonemes

        spoken[: phonemes.ID[phonemes.PUNCTUATION[-1]] + 1] = False  # stop, boundary, punctuation
    spoken[[cfg.text_start_token, cfg.text_stop_token]] = False
    return spoken


def next_phoneme_ctc(model, latents: Float[Array, "Ta C"], text: Int[Array, " Tt"], text_len: Int[Array, ""],
                     audio_len: Int[Array, ""]) -> tuple[Array, Array]:
    """CTC loss per label of the CTC head over the latents that predict codes (positions
    ``[0, audio_len - 1)``) against ``text``'s spoken tokens, in order. Returns (loss, feasible):
    an utterance with fewer frames than its labels need scores 0 and ``feasible`` False."""
    cfg = model.config
    frames = latents.shape[0] - 1
    logits = model.head(latents[:-1], model.ctc_head)
    logit_pad = (jnp.arange(frames) >= audio_len - 1).astype(jnp.float32)
    keep = jnp.asarray(spoken_tokens(cfg))[text] & (jnp.arange(text.shape[0]) < text_len)
    order = jnp.argsort(~keep, stable=True)  # spoken tokens first, in sentence order
    labels, label_pad = text[order], (~keep[order]).astype(jnp.float32)
    loss = optax.ctc_loss(logits[None], logit_pad[None], labels[None], label_pad[None],
                          blank_id=cfg.text_vocab_size)[0]
    feasible = loss < _INFEASIBLE
    return jnp.where(feasible, loss / jnp.maximum(jnp.sum(keep), 1), 0.0), feasible


def beta_binomial_log_prior(query_audio: Int[Array, " T"], key_text: Int[Array, " S"], text_len: Int[Array, ""],
                            audio_len: Int[Array, ""], scale: float = 1.0, floor: float = -8.0) -> Float[Array, "T S"]:
    """``log P(k | t)`` for audio index ``t = query_audio[i]`` and text index ``k = key_text[j]``:
    the beta-binomial over the ``text_len`` text positions with a = scale (t + 1) and
    b = scale (audio_len - t) (RAD-TTS's prior), shifted so each row peaks at 0 and floored at
    ``floor``; 0 where ``t`` or ``k`` lies outside its segment (no bias)."""
    n = (text_len - 1).astype(jnp.float32)
    t = jnp.clip(query_audio, 0, audio_len - 1).astype(jnp.float32)[:, None]
    k = jnp.clip(key_text, 0, text_len - 1).astype(jnp.float32)[None, :]
    a, b = scale * (t + 1), scale * (audio_len.astype(jnp.float32) - t)
    gammaln = jax.scipy.special.gammaln
    betaln = lambda x, y: gammaln(x) + gammaln(y) - gammaln(x + y)  # noqa: E731
    logp = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + betaln(k + a, n - k + b) - betaln(a, b)
    inside = ((query_audio >= 0) & (query_audio < audio_len))[:, None] & ((key_text >= 0) & (key_text < text_len))[None, :]
    peak = jnp.max(jnp.where(inside, logp, -jnp.inf), axis=1, keepdims=True)
    return jnp.where(inside, jnp.maximum(logp - jnp.where(jnp.isfinite(peak), peak, 0.0), floor), 0.0)


def attention_prior_bias(n_cond: int, n_total: int, text_len: Int[Array, ""], audio_len: Int[Array, ""],
                         weight: float) -> Float[Array, "1 T T"]:
    """The bias a sequence ``[cond (n_cond) | text (text_len) | audio (audio_len) | padding]`` of
    ``n_total`` positions adds to its attention scores: ``weight`` times the prior from audio
    queries to text keys, 0 elsewhere; one [T, T] map shared by the heads."""
    i = jnp.arange(n_total)
    prior = beta_binomial_log_prior(i - n_cond - text_len, i - n_cond, text_len, audio_len)
    return (weight * prior)[None]


def ctc_forced_align(log_probs: np.ndarray, labels: np.ndarray, blank: int) -> tuple[np.ndarray, float]:
    """The most probable CTC path (Viterbi) of ``labels`` through ``log_probs`` [T, V]: for every
    frame the index into ``labels`` it belongs to, and the path's log-probability. Blank frames
    belong to the label before them (leading blanks to the first label), so the indices rise by 0
    or 1 from frame to frame, from 0 to ``len(labels) - 1``: a segmentation of the frames into the
    labels' durations, each at least one frame. Raises ValueError when the frames are too few."""
    labels = np.asarray(labels)
    n_frames, n_labels = log_probs.shape[0], len(labels)
    ext = np.full(2 * n_labels + 1, blank)  # blank, l1, blank, l2, ..., blank
    ext[1::2] = labels
    n_states = len(ext)
    # a state may skip the blank before it when it holds a label that differs from the one two back
    skip = np.zeros(n_states, bool)
    skip[3::2] = labels[1:] != labels[:-1]
    emit = log_probs[:, ext]  # [T, S]
    score = np.full(n_states, -np.inf)
    score[:2] = emit[0, :2]
    back = np.zeros((n_frames, n_states), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, n_frames):
        one = np.concatenate([[-np.inf], score[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        moves = np.stack([score, one, two])
        back[t] = np.argmax(moves, axis=0)
        score = moves[back[t], np.arange(n_states)] + emit[t]
    ends = [n_states - 1, n_states - 2] if n_labels else [0]
    state = max(ends, key=lambda s: score[s])
    if not np.isfinite(score[state]):
        raise ValueError(f"{n_frames} frames cannot hold {n_labels} labels under CTC")
    best = float(score[state])
    path = np.empty(n_frames, np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    # label state 2k+1 -> k; blank state 2k -> k - 1 (the label before), leading blanks -> 0
    return np.maximum((path - 1) // 2, 0) if n_labels else np.zeros(n_frames, np.int64), best
