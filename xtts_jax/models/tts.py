"""The XTTS-style generator: conditioning + text tokens -> audio tokens and the latents HiFiGAN reads.

One sequence is ``[conditioning vectors | text | audio]`` through GPT-2 blocks (``gpt.Transformer``),
as XTTS-v2's GPT: text and audio tokens each have their own embedding and their own learned
positions (each segment restarts at 0); conditioning vectors get no position; after the stack's
``ln_f`` a second ``final_norm`` (coqui runs HF GPT2Model, which ends in ``ln_f``, then its own
``final_norm``), then a text head and an audio head. The final-norm hidden states at the audio
positions are the latents XTTS-v2's HiFiGAN decoder reads. Text is ``[start, ..., stop]``, audio
``[start, codes..., stop]`` with start = ``num_audio_codes`` and stop = ``num_audio_codes + 1``.

For sampling, ``models/tts_decoder.py``'s ``TTSDecoder`` shows the generic sampler
(``inference/sampling.py``) integer prompts.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from xtts_jax.errors import UserError
from xtts_jax.models.conditioning import Conditioner
from xtts_jax.models.gpt import GPT, Transformer
from xtts_jax.models.layers import Dense, LayerNorm, matmul
from xtts_jax.models.tts_config import (  # noqa: F401 (the config's names, as before the split)
    PRESETS, TOKENIZERS, TTSConfig, coqui_generation, get_config, with_phonemes, with_speaker_dim, with_text_vocab)

TEXT_LOSS_WEIGHT = 0.01  # as XTTS-v2: loss = 0.01 * text CE + audio CE


def _embed(n: int, d: int, key: PRNGKeyArray) -> Array:
    return 0.02 * jax.random.normal(key, (n, d), jnp.float32)


class TTSOutput(NamedTuple):
    text_logits: Float[Array, "Tt Vt"]
    audio_logits: Float[Array, "Ta Va"]
    latents: Float[Array, "Ta C"]  # final-norm hidden states at the audio positions
    advance_logits: Float[Array, " Ta"] | None = None  # text-pointer models: the next position reads a new token


class TTS(eqx.Module):
    text_embedding: Float[Array, "Vt C"]
    text_pos: Float[Array, "Pt C"]
    audio_embedding: Float[Array, "Va C"]
    audio_pos: Float[Array, "Pa C"]
    transformer: Transformer
    final_norm: LayerNorm
    text_head: Dense
    audio_head: Dense
    conditioner: Conditioner | None
    speaker_in: Dense | None  # speaker_dim -> n_embd, for a model narrower than its speaker vectors
    ctc_head: Dense | None  # n_embd -> text_vocab_size + 1 (the last class is CTC's blank)
    advance_head: Dense | None  # n_embd -> 1, text-pointer models (models/pointer.py)
    config: TTSConfig = eqx.field(static=True)

    def __init__(self, cfg: TTSConfig, *, key: PRNGKeyArray):
        k = jax.random.split(key, 8)
        d = cfg.gpt.n_embd
        self.speaker_in = Dense(cfg.speaker_width, d, bias=True, std=cfg.speaker_width ** -0.5,
                                key=jax.random.fold_in(key, 8)) if cfg.speaker_width != d else None
        self.text_embedding = _embed(cfg.text_vocab_size, d, k[0])
        self.text_pos = _embed(cfg.text_positions, d, k[1])
        self.audio_embedding = _embed(cfg.audio_vocab_size, d, k[2])
        self.audio_pos = _embed(cfg.audio_positions, d, k[3])
        self.transformer = Transformer(cfg.gpt, key=k[4])
        self.final_norm = LayerNorm(d, bias=True, eps=cfg.gpt.layer_norm_eps)
        self.text_head = Dense(d, cfg.text_vocab_size, bias=True, std=0.02, key=k[5])
        self.audio_head = Dense(d, cfg.audio_vocab_size, bias=True, std=0.02, key=k[6])
        self.conditioner = Conditioner(cfg.conditioning, key=k[7]) if cfg.conditioning else None
        self.ctc_head = (Dense(d, cfg.text_vocab_size + 1, bias=True, std=0.02, key=jax.random.fold_in(key, 9))
                         if cfg.ctc_head else None)
        self.advance_head = (Dense(d, 1, bias=True, std=0.02, key=jax.random.fold_in(key, 10))
                             if cfg.text_pointer else None)
        self.config = cfg

    def head(self, h: Float[Array, "... C"], which: Dense) -> Float[Array, "... V"]:
        """Logits in the compute dtype, accumulated in float32."""
        dtype = self.config.gpt.dtype
        out = matmul(h.astype(dtype), which.weight, jnp.float32)
        return out + which.bias

    def __call__(self, cond: Float[Array, "K C"], text: Int[Array, " Tt"], audio: Int[Array, " Ta"],
                 text_len: Int[Array, ""] | None = None, audio_len: Int[Array, ""] | None = None,
                 *, key: PRNGKeyArray | None = None, prior_weight: float = 0.0, prior_layers: int = 0,
                 pointer: Int[Array, " Ta"] | None = None) -> TTSOutput:
        """Training forward over one example. ``text_len``/``audio_len``: valid lengths when the
        segments are right-padded; padding is moved behind both segments before the transformer
        (and back after), so audio never attends to text padding and the result equals the
        unpadded forward. ``prior_weight`` > 0: the first ``prior_layers`` layers' attention from
        audio to text gets the diagonal prior of ``alignment.attention_prior_bias`` (training only).
        ``pointer``: text-pointer models, the text index each audio position reads (``models/pointer.py``)."""
        n_cond, n_text, n_audio = cond.shape[0], text.shape[0], audio.shape[0]
        audio_x = self.audio_embedding[audio] + self.audio_pos[:n_audio]
        if pointer is not None:
            audio_x = audio_x + self.text_at(text, pointer)
        x = jnp.concatenate([self.speaker_vectors(cond), self.text_embedding[text] + self.text_pos[:n_text], audio_x])
        prior = {}
        if prior_weight and prior_layers:
            from xtts_jax.models.alignment import attention_prior_bias

            bias = attention_prior_bias(n_cond, x.shape[0], jnp.asarray(n_text if text_len is None else text_len),
                                        jnp.asarray(n_audio if audio_len is None else audio_len), prior_weight)
            prior = {"bias": bias, "bias_layers": prior_layers}
        if text_len is None and audio_len is None:
            h, _ = self.transformer(x, key=key, **prior)
        else:
            text_len = n_text if text_len is None else text_len
            audio_len = n_audio if audio_len is None else audio_len
            group = jnp.concatenate([jnp.zeros(n_cond, jnp.int32),
                                     jnp.where(jnp.arange(n_text) < text_len, 1, 3),
                                     jnp.where(jnp.arange(n_audio) < audio_len, 2, 3)])
            order = jnp.argsort(group, stable=True)
            h_sorted, _ = self.transformer(x[order], key=key, **prior)  # the prior is in sorted order
            h = h_sorted[jnp.argsort(order)]
        h = self.final_norm(h)
        h_text, h_audio = h[n_cond:n_cond + n_text], h[n_cond + n_text:]
        advance = None if self.advance_head is None else self.head(h_audio, self.advance_head)[:, 0]
        return TTSOutput(self.head(h_text, self.text_head), self.head(h_audio, self.audio_head), h_audio, advance)

    def text_at(self, text: Int[Array, " Tt"], k: Int[Array, "..."]) -> Float[Array, "... C"]:
        """What a text-pointer position reads: the text token at index ``k`` as the text prefix
        embeds it (its embedding and its position; ``models/pointer.py``)."""
        return self.text_embedding[text[k]] + self.text_pos[k]

    def speaker_vectors(self, cond: Float[Array, "K S"]) -> Float[Array, "K C"]:
        """Conditioning vectors as they enter the sequence: projected to n_embd when wider."""
        cond = cond.astype(jnp.float32)
        return cond if self.speaker_in is None else self.speaker_in(cond)

    def condition(self, chunks: Float[Array, "K n_mels T"]) -> Float[Array, "N C"]:
        if self.conditioner is None:
            raise UserError("this TTS model has no conditioning encoder; supply a speaker embedding")
        return self.conditioner.from_chunks(chunks)


def with_heads(model: TTS, key: PRNGKeyArray, ctc_head: bool = False, text_pointer: bool = False) -> TTS:
    """``model`` with fresh auxiliary heads it lacks: the CTC head (``models/alignment.py``) and
    the text pointer's advance head (``models/pointer.py``), e.g. to fine-tune a checkpoint trained
    without them; every other weight kept. Nothing to add: ``model`` as it is."""
    cfg = model.config
    want = dataclasses.replace(cfg, ctc_head=cfg.ctc_head or ctc_head, text_pointer=cfg.text_pointer or text_pointer)
    if want == cfg:
        return model
    fresh = TTS(want, key=key)
    added = {"ctc_head"} if want.ctc_head != cfg.ctc_head else set()
    added |= {"advance_head"} if want.text_pointer != cfg.text_pointer else set()
    names = [f.name for f in dataclasses.fields(TTS) if f.name not in added | {"config"}]
    return eqx.tree_at(lambda m: [getattr(m, n) for n in names], fresh, [getattr(model, n) for n in names],
                       is_leaf=lambda x: x is None)


def with_compute_dtype(model: TTS, compute_dtype: str) -> TTS:
    """``model``'s arrays under a config whose GPT computes in ``compute_dtype`` (``GPTConfig``:
    auto, float32, bfloat16), e.g. bfloat16 to train on a CPU with bfloat16 kernels and back to auto
    before saving. Only the static choices change; every array is the same object."""
    cfg = model.config
    want = dataclasses.replace(cfg, gpt=dataclasses.replace(cfg.gpt, compute_dtype=compute_dtype))
    if want == cfg:
        return model
    structure = jax.tree.structure(eqx.filter_eval_shape(TTS, want, key=jax.random.key(0)))
    return jax.tree.unflatten(structure, jax.tree.leaves(model))


def with_ctc_head(model: TTS, key: PRNGKeyArray) -> TTS:
    """``model`` with a fresh CTC head; a model that has one is returned as it is."""
    return with_heads(model, key, ctc_head=True)


def _masked_ce(logits: Array, targets: Array, mask: Array) -> Array:
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)


def tts_loss(model: TTS, cond: Float[Array, "K C"], text: Int[Array, " Tt"], text_len: Int[Array, ""],
             audio: Int[Array, " Ta"], audio_len: Int[Array, ""], *, key: PRNGKeyArray | None = None,
             ctc_weight: float = 0.0, prior_weight: float = 0.0, prior_layers: int = 0,
             pointer: Int[Array, " Ta"] | None = None):
    """XTTS-v2's loss for one example: ``0.01 * text CE + audio CE`` over next tokens within each
    segment, padding masked; with ``ctc_weight`` (a model with a CTC head) plus that weight times
    the head's CTC loss per label (``alignment.next_phoneme_ctc``); ``prior_weight``/``prior_layers``
    as :meth:`TTS.__call__`; a text-pointer model with its ``pointer`` plus the advance head's
    binary cross-entropy (``pointer.advance_loss``). Returns (loss, metrics)."""
    from xtts_jax.models.alignment import next_phoneme_ctc
    from xtts_jax.models.pointer import advance_loss

    out = model(cond, text, audio, text_len, audio_len, key=key, prior_weight=prior_weight, prior_layers=prior_layers,
                pointer=pointer)
    text_mask = jnp.arange(text.shape[0] - 1) < text_len - 1
    audio_mask = jnp.arange(audio.shape[0] - 1) < audio_len - 1
    text_ce = _masked_ce(out.text_logits[:-1], text[1:], text_mask)
    audio_ce = _masked_ce(out.audio_logits[:-1], audio[1:], audio_mask)
    loss = TEXT_LOSS_WEIGHT * text_ce + audio_ce
    metrics = {"text_ce": text_ce, "audio_ce": audio_ce}
    if ctc_weight and model.ctc_head is not None:
        ctc, feasible = next_phoneme_ctc(model, out.latents, text, text_len, audio_len)
        loss = loss + ctc_weight * ctc
        metrics |= {"ctc": ctc, "ctc_feasible": feasible.astype(jnp.float32)}
    if out.advance_logits is not None and pointer is not None:
        bce = advance_loss(out.advance_logits, pointer, audio_len)
        loss = loss + bce
        metrics["advance_bce"] = bce
    return loss, {"loss": loss, **metrics}


def init_from_gpt(model: TTS, gpt: GPT, token_ids=None) -> TTS:
    """Copy a trained GPT's blocks and final LayerNorm, and its token and position embeddings into
    the text tables (the token rows only for a model that reads GPT-2 ids), e.g. from a TinyStories
    run or Hugging Face GPT-2. ``token_ids[i]``: the text
    id of the GPT's row i, for a GPT trained on a compacted vocabulary (``train.lm.VocabMap``)."""
    a, b = model.config.gpt, gpt.config
    if (a.n_layer, a.n_embd, a.n_head, a.mlp_activation, a.bias) != (b.n_layer, b.n_embd, b.n_head, b.mlp_activation, b.bias):
        raise UserError(f"GPT checkpoint ({b.n_layer} layers, d {b.n_embd}, {b.n_head} heads) does not fit the TTS "
                        f"transformer ({a.n_layer} layers, d {a.n_embd}, {a.n_head} heads)")
    # only the arrays: the TTS keeps its own static settings (dtype, scan, dropout)
    params, static = eqx.partition(model.transformer, eqx.is_array)
    dst, treedef = jax.tree.flatten(params)
    src = jax.tree.leaves(eqx.filter(gpt.transformer, eqx.is_array))
    if [x.shape for x in src] != [x.shape for x in dst]:
        raise UserError("the GPT checkpoint's transformer parameters do not match the TTS transformer's shapes")
    transformer = eqx.combine(jax.tree.unflatten(treedef, src), static)
    n_vocab = model.text_embedding.shape[0]
    ids = jnp.arange(b.vocab_size) if token_ids is None else jnp.asarray(token_ids)
    keep = ids < n_vocab
    text = model.text_embedding.at[jnp.where(keep, ids, n_vocab)].set(gpt.wte[: len(ids)], mode="drop")
    if model.config.tokenizer != "gpt2":  # phonemes or XTTS ids: the GPT's token rows mean other things
        text = model.text_embedding
    n_pos = min(model.text_pos.shape[0], gpt.wpe.shape[0])
    pos = model.text_pos.at[:n_pos].set(gpt.wpe[:n_pos])
    return eqx.tree_at(lambda m: (m.transformer, m.text_embedding, m.text_pos), model, (transformer, text, pos))


def logical_axes(model: TTS):
    """Sharding names: the transformer's from gpt.logical_axes; embeddings shard only ``embed``
    (the text vocabulary, 50,257 or 6,681, need not divide a mesh axis); the rest replicated."""
    from jax.sharding import PartitionSpec as P

    from xtts_jax.models import gpt as gpt_lib

    def spec(path, leaf):
        if not eqx.is_array(leaf):
            return leaf
        name = gpt_lib.path_name(path)
        if name in ("text_embedding", "audio_embedding", "text_pos", "audio_pos"):
            return P(None, "embed")
        return P(*([None] * leaf.ndim))

    specs = jax.tree_util.tree_map_with_path(spec, model)
    return eqx.tree_at(lambda s: s.transformer, specs, gpt_lib.logical_axes(model.transformer))


def save_tts(model: TTS, path: str, metadata: dict | None = None) -> None:
    """Weights as safetensors, the TTS config as JSON metadata under ``tts``."""
    from xtts_jax.weights import export_safetensors

    export_safetensors(model, path, {"tts": model.config.to_dict(), **(metadata or {})})


def load_tts(path: str) -> TTS:
    """A TTS model saved by :func:`save_tts` (ours, or an XTTS-v2 conversion)."""
    from xtts_jax.weights import load_safetensors, read_model_config, read_safetensors_metadata

    saved = read_model_config(path, "tts", "TTS")
    cfg = TTSConfig.from_dict(saved)
    if "sample_audio_start" not in saved and read_safetensors_metadata(path).get("source", "").startswith("XTTS-v2"):
        cfg = coqui_generation(cfg)  # converted before the config carried coqui's sampling limits
    return load_safetensors(eqx.filter_eval_shape(lambda: TTS(cfg, key=jax.random.key(0))), path, "TTS checkpoint")
