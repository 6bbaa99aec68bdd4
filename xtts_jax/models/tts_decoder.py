"""The generator behind the sampler's integer-prompt interface (``inference/sampling.py``).

Prompt ids are audio ids ``[0, A)``, then text ids, then one id per conditioning vector of the
batch; ``prefill`` runs the prompt, ``decode_step`` one audio token with the KV cache. For a
text-pointer model (``models/pointer.py``) the cache also carries the pointer: which text token the
next position reads and whether the advance head moved it on.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from xtts_jax.models import pointer
from xtts_jax.models.tts import TTS


class TTSDecoder(eqx.Module):
    """The TTS model behind the sampler's integer-prompt interface, for a batch of speakers.

    ``cond_table`` holds the conditioning vectors of every row of a batch, one after another; a
    row's prompt names its own vectors by id, so the sampler stays generic and one-jit and the
    vectors are traced arrays (new speakers do not recompile). Generated ids are audio ids.
    """

    model: TTS
    cond_table: Float[Array, "N C"]

    @property
    def text_offset(self) -> int:
        return self.model.config.audio_vocab_size

    @property
    def cond_offset(self) -> int:
        return self.text_offset + self.model.config.text_vocab_size

    @property
    def prompt_vocab_size(self) -> int:
        return self.cond_offset + self.cond_table.shape[0]

    def prompt(self, cond_rows: range, text: list[int]) -> list[int]:
        """Prompt ids: conditioning vectors ``cond_rows`` of the table, the text, the audio start."""
        return ([self.cond_offset + i for i in cond_rows] + [self.text_offset + t for t in text]
                + [self.model.config.audio_start_token])

    def prefill(self, tokens: Int[Array, " P"], max_len: int):
        m, A, C = self.model, self.text_offset, self.cond_offset
        is_audio, is_cond = tokens < A, tokens >= C
        is_text = ~is_audio & ~is_cond
        text_pos = jnp.clip(jnp.cumsum(is_text) - 1, 0, m.text_pos.shape[0] - 1)
        audio_pos = jnp.clip(jnp.cumsum(is_audio) - 1, 0, m.audio_pos.shape[0] - 1)
        text_x = m.text_embedding[jnp.clip(tokens - A, 0, C - A - 1)] + m.text_pos[text_pos]
        audio_x = m.audio_embedding[jnp.clip(tokens, 0, A - 1)] + m.audio_pos[audio_pos]
        # the sequence index of the audio start token: audio position = index - start
        start = jnp.argmax(tokens == m.config.audio_start_token).astype(jnp.int32)
        pointer_state = None
        if m.config.text_pointer:  # the start token reads the first spoken token (models/pointer.py)
            ids = jnp.zeros(tokens.shape[0], jnp.int32).at[jnp.where(is_text, text_pos, tokens.shape[0])].set(
                tokens - A, mode="drop")
            text_ids, spoken, first, stop = pointer.start(ids, jnp.sum(is_text), self._spoken())
            audio_x = audio_x + m.text_at(text_ids, first)
        cond_x = m.speaker_vectors(self.cond_table[jnp.clip(tokens - C, 0, self.cond_table.shape[0] - 1)])
        x = jnp.where(is_audio[:, None], audio_x, jnp.where(is_text[:, None], text_x, cond_x))
        h, kv = m.transformer(x)
        logits = self.audio_logits(h)
        if m.config.text_pointer:
            logits = pointer.mask_stop(logits, first == stop, m.config.audio_stop_token)
            pointer_state = (text_ids, spoken, first, stop, self._advance(h[start]))
        return logits, (m.transformer.prompt_cache(kv, max_len), start, pointer_state)

    def decode_step(self, cache, token: Int[Array, ""], pos: Int[Array, ""]):
        m = self.model
        kv, start, state = cache
        audio_pos = jnp.clip(pos - start, 0, m.audio_pos.shape[0] - 1)
        x = m.audio_embedding[token] + m.audio_pos[audio_pos]
        if state is not None:
            text_ids, spoken, k, stop, advance = state
            k = jnp.where(advance, pointer.next_position(spoken, k, stop), k)
            x = x + m.text_at(text_ids, k)
        h, kv = m.transformer.decode(x, kv, pos)
        logits = self.audio_logits(h)
        if state is not None:
            logits = pointer.mask_stop(logits, k == stop, m.config.audio_stop_token)
            state = (text_ids, spoken, k, stop, self._advance(h))
        return (kv, start, state), logits

    def _spoken(self) -> Bool[Array, " Vt"]:
        from xtts_jax.models.alignment import spoken_tokens

        return jnp.asarray(spoken_tokens(self.model.config))

    def _advance(self, h: Float[Array, " C"]) -> Bool[Array, ""]:
        """Whether the next position reads the next spoken token: the advance head's logit > 0."""
        m = self.model
        return m.head(m.final_norm(h), m.advance_head)[0] > 0

    def audio_logits(self, h: Float[Array, "... C"]) -> Float[Array, "... Va"]:
        """Audio-head logits; the start token is masked (never drawn) unless the config follows
        coqui's XTTS-v2 sampling, which leaves it drawable (``sample_audio_start``)."""
        m = self.model
        logits = m.head(m.final_norm(h), m.audio_head)
        if m.config.sample_audio_start:
            return logits
        return logits.at[..., m.config.audio_start_token].set(-1e9)
