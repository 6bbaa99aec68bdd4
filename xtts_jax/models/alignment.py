"""An alignment aid for the generator: a CTC loss that makes the audio latents read the text.

A small generator trained only on next-code prediction learns a *positional* alignment: its first
layer's heads attend from audio position t to text position ~c*t (learned positions on both sides),
which holds at the start of a sentence and drifts later, so its teacher-forced loss climbs along
each utterance (docs/default_model: 0.9 nats in the first tenth, 3.6 in the ninth). The aid asks the
latent at audio position t, which predicts code t+1, to also emit the phonemes being spoken through
a linear head trained with CTC (Graves et al., 2006) against the sentence's spoken tokens. A head
that can do this needs each latent to know where in the text the speech is, which is what drifts;
it is the recogniser-on-the-decoder idea of "Maximizing Mutual Information for Tacotron" (Liu et al.,
2019), applied to the latents of a decoder-only model. Sampling never reads the head.
"""

from __future__ import annotations

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
