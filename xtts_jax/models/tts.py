"""The XTTS-style generator: conditioning + text tokens -> audio tokens and the latents HiFiGAN reads.

One sequence is ``[conditioning vectors | text | audio]`` through GPT-2 blocks (``gpt.Transformer``),
as XTTS-v2's GPT: text and audio tokens each have their own embedding and their own learned
positions (each segment restarts at 0); conditioning vectors get no position; after the stack's
``ln_f`` a second ``final_norm`` (coqui runs HF GPT2Model, which ends in ``ln_f``, then its own
``final_norm``), then a text head and an audio head. The final-norm hidden states at the audio
positions are the latents XTTS-v2's HiFiGAN decoder reads. Text is ``[start, ..., stop]``, audio
``[start, codes..., stop]`` with start = ``num_audio_codes`` and stop = ``num_audio_codes + 1``.

For sampling, :class:`TTSDecoder` shows the generic sampler (``inference/sampling.py``) integer
prompts: audio ids ``[0, A)``, then text ids, then one id per conditioning vector of the batch.
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
from xtts_jax.models.conditioning import PRESETS as COND_PRESETS, Conditioner, ConditioningConfig
from xtts_jax.models.gpt import GPT, GPTConfig, Transformer
from xtts_jax.models.layers import Dense, LayerNorm
from xtts_jax.text.tokenizer import EOT_ID, VOCAB_SIZE

TEXT_LOSS_WEIGHT = 0.01  # as XTTS-v2: loss = 0.01 * text CE + audio CE
TOKENIZERS = ("gpt2", "xtts", "phonemes")


@dataclasses.dataclass(frozen=True)
class TTSConfig:
    gpt: GPTConfig = GPTConfig(n_layer=30, n_head=16, n_embd=1024)
    text_vocab_size: int = VOCAB_SIZE  # GPT-2 BPE; XTTS-v2's own tokenizer has 6,681
    text_start_token: int = EOT_ID  # XTTS-v2: 261
    text_stop_token: int = EOT_ID  # XTTS-v2: 0
    # Compact vocabulary: the GPT-2 ids of the text table's rows (``text.vocab.VocabMap``), so a
    # demo trained on a narrow corpus carries a few hundred rows; empty: row i is GPT-2 id i.
    text_vocab: tuple[int, ...] = ()
    # Table sizes. XTTS-v2 sizes them gpt_max_text_tokens 402 + 2 and gpt_max_audio_tokens 605 + 3.
    text_positions: int = 404
    audio_positions: int = 608
    num_audio_codes: int = 1024
    conditioning: ConditioningConfig | None = ConditioningConfig()
    # Text tokenizer: "gpt2" (GPT-2 BPE, tiktoken), "xtts" (an XTTS-v2 vocab.json, carried in
    # the checkpoint's metadata; ``text.xtts_tokenizer``) or "phonemes" (``text.phonemes``: CMUdict
    # phonemes, letters for other words; any English sentence).
    tokenizer: str = "gpt2"
    # Width of the speaker conditioning vectors at the interface (emb.npy, the conditioner's
    # output): 0 is the GPT's n_embd (XTTS-v2: 1024); wider, they are projected to n_embd as they
    # enter the sequence, so every model takes the same 1024-d vectors.
    speaker_dim: int = 0
    # Sampling steps per sentence, the stop token included; 0: every audio position but start and
    # stop. XTTS-v2 conversions: coqui's max_gen_mel_tokens, gpt_max_audio_tokens - 1 - 2 = 602.
    max_new_audio_tokens: int = 0
    # False: the audio start token's logit is masked, so it is never drawn. True for XTTS-v2
    # conversions, as coqui's HF generate call, which leaves it drawable (drawn, it stays in the
    # codes the latents pass reads, but is no DVAE code).
    sample_audio_start: bool = False
    # An auxiliary head on the audio latents that reads the text's next phonemes, trained with CTC
    # (``models/alignment.py``): a training-time aid for alignment; sampling never reads it.
    ctc_head: bool = False

    def __post_init__(self):
        if self.tokenizer not in TOKENIZERS:
            raise UserError(f"TTS tokenizer {self.tokenizer!r} is not one of {', '.join(TOKENIZERS)}")
        if self.conditioning is not None and self.conditioning.width != self.speaker_width:
            raise UserError(f"the conditioning encoder gives {self.conditioning.width}-d vectors, "
                            f"the model reads {self.speaker_width}-d")
        if max(self.text_start_token, self.text_stop_token) >= self.text_vocab_size:
            raise UserError("text start/stop tokens must lie inside the text vocabulary")
        if self.text_vocab and len(self.text_vocab) != self.text_vocab_size:
            raise UserError(f"text_vocab lists {len(self.text_vocab)} ids for a {self.text_vocab_size}-row text table")
        if not 0 <= self.max_new_audio_tokens <= self.audio_positions - 2:
            raise UserError(f"max_new_audio_tokens {self.max_new_audio_tokens} must lie in [0, "
                            f"{self.audio_positions - 2}] (the audio positions less start and stop)")

    @property
    def speaker_width(self) -> int:
        """Width of the conditioning vectors the model takes."""
        return self.speaker_dim or self.gpt.n_embd

    @property
    def audio_vocab_size(self) -> int:
        return self.num_audio_codes + 2

    @property
    def audio_start_token(self) -> int:
        return self.num_audio_codes

    @property
    def audio_stop_token(self) -> int:
        return self.num_audio_codes + 1

    @property
    def generation_limit(self) -> int:
        """Sampling steps per sentence (stop token included): ``max_new_audio_tokens``, else every
        audio position but the start and stop token's."""
        return self.max_new_audio_tokens or self.audio_positions - 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TTSConfig":
        d = dict(d)
        d["gpt"] = GPTConfig.from_dict(d["gpt"])
        d["text_vocab"] = tuple(d.get("text_vocab", ()))
        cond = d.get("conditioning")
        d["conditioning"] = ConditioningConfig.from_dict(cond) if cond else None
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown TTSConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


PRESETS: dict[str, TTSConfig] = {
    "xtts-v2": TTSConfig(),
    # CPU sizes: "small" for demos, "tiny" for tests and benchmarks.
    "small": TTSConfig(gpt=GPTConfig(n_layer=6, n_head=4, n_embd=256), text_positions=256,
                       audio_positions=512, conditioning=dataclasses.replace(
                           COND_PRESETS["tiny"], n_embd=256, n_head=4, num_groups=16, num_latents=16)),
    # The shipped CPU demo (~4M parameters with a corpus text table; fp32 safetensors < 20 MB).
    "demo": TTSConfig(gpt=GPTConfig(n_layer=6, n_head=4, n_embd=192), text_positions=64,
                      audio_positions=320, conditioning=dataclasses.replace(
                          COND_PRESETS["tiny"], n_embd=192, n_head=4, num_groups=16, num_latents=16)),
    # The demo's width with room for phoneme text (a 25-word sentence is about 100 phonemes) and
    # 18 s of audio: the size the open-vocabulary CPU model is tried at.
    "cpu": TTSConfig(gpt=GPTConfig(n_layer=6, n_head=4, n_embd=192), text_positions=192,
                     audio_positions=400, conditioning=dataclasses.replace(
                         COND_PRESETS["tiny"], n_embd=192, n_head=4, num_groups=16, num_latents=16)),
    "tiny": TTSConfig(gpt=GPTConfig(n_layer=2, n_head=4, n_embd=64), text_positions=64,
                      audio_positions=128, num_audio_codes=32, conditioning=COND_PRESETS["tiny"]),
}


def get_config(name: str, **overrides) -> TTSConfig:
    if name not in PRESETS:
        raise UserError(f"unknown TTS config {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def coqui_generation(cfg: TTSConfig) -> TTSConfig:
    """``cfg`` sampling as coqui's XTTS-v2 does: its mel position table has gpt_max_audio_tokens + 3
    rows and generation stops after max_gen_mel_tokens = gpt_max_audio_tokens - max_conditioning_inputs
    (1) - 2 steps (602 for XTTS-v2), handed to HF generate, which does not mask the audio start token."""
    return dataclasses.replace(cfg, max_new_audio_tokens=max(1, cfg.audio_positions - 3 - 1 - 2),
                               sample_audio_start=True)


def with_text_vocab(cfg: TTSConfig, gpt2_ids) -> TTSConfig:
    """``cfg`` with a compact text table over ``gpt2_ids`` (plus ``<|endoftext|>``, the start and
    stop token of the GPT-2 text convention)."""
    from xtts_jax.text.vocab import VocabMap

    vocab = VocabMap(tuple(sorted({int(i) for i in gpt2_ids} | {EOT_ID})))
    eot = int(vocab.to_compact([EOT_ID])[0])
    return dataclasses.replace(cfg, text_vocab_size=vocab.size, text_start_token=eot, text_stop_token=eot,
                               text_vocab=vocab.ids)


def with_phonemes(cfg: TTSConfig) -> TTSConfig:
    """``cfg`` reading ``text.phonemes`` ids: a table of phonemes, letters and punctuation (101
    rows), id 0 starting and ending each sentence."""
    from xtts_jax.text import phonemes

    return dataclasses.replace(cfg, tokenizer="phonemes", text_vocab_size=phonemes.VOCAB_SIZE, text_vocab=(),
                               text_start_token=phonemes.STOP_ID, text_stop_token=phonemes.STOP_ID)


def with_speaker_dim(cfg: TTSConfig, speaker_dim: int) -> TTSConfig:
    """``cfg`` taking ``speaker_dim``-wide conditioning vectors (its conditioner gives them too)."""
    cond = cfg.conditioning and dataclasses.replace(cfg.conditioning, out_dim=speaker_dim)
    return dataclasses.replace(cfg, speaker_dim=speaker_dim, conditioning=cond)


def _embed(n: int, d: int, key: PRNGKeyArray) -> Array:
    return 0.02 * jax.random.normal(key, (n, d), jnp.float32)


class TTSOutput(NamedTuple):
    text_logits: Float[Array, "Tt Vt"]
    audio_logits: Float[Array, "Ta Va"]
    latents: Float[Array, "Ta C"]  # final-norm hidden states at the audio positions


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
        self.config = cfg

    def head(self, h: Float[Array, "... C"], which: Dense) -> Float[Array, "... V"]:
        """Logits in the compute dtype, accumulated in float32."""
        dtype = self.config.gpt.dtype
        out = jnp.matmul(h.astype(dtype), which.weight.astype(dtype), preferred_element_type=jnp.float32)
        return out + which.bias

    def __call__(self, cond: Float[Array, "K C"], text: Int[Array, " Tt"], audio: Int[Array, " Ta"],
                 text_len: Int[Array, ""] | None = None, audio_len: Int[Array, ""] | None = None,
                 *, key: PRNGKeyArray | None = None) -> TTSOutput:
        """Training forward over one example. ``text_len``/``audio_len``: valid lengths when the
        segments are right-padded; padding is moved behind both segments before the transformer
        (and back after), so audio never attends to text padding and the result equals the
        unpadded forward."""
        n_cond, n_text, n_audio = cond.shape[0], text.shape[0], audio.shape[0]
        x = jnp.concatenate([
            self.speaker_vectors(cond),
            self.text_embedding[text] + self.text_pos[:n_text],
            self.audio_embedding[audio] + self.audio_pos[:n_audio],
        ])
        if text_len is None and audio_len is None:
            h, _ = self.transformer(x, key=key)
        else:
            text_len = n_text if text_len is None else text_len
            audio_len = n_audio if audio_len is None else audio_len
            group = jnp.concatenate([jnp.zeros(n_cond, jnp.int32),
                                     jnp.where(jnp.arange(n_text) < text_len, 1, 3),
                                     jnp.where(jnp.arange(n_audio) < audio_len, 2, 3)])
            order = jnp.argsort(group, stable=True)
            h_sorted, _ = self.transformer(x[order], key=key)
            h = h_sorted[jnp.argsort(order)]
        h = self.final_norm(h)
        h_text, h_audio = h[n_cond:n_cond + n_text], h[n_cond + n_text:]
        return TTSOutput(self.head(h_text, self.text_head), self.head(h_audio, self.audio_head), h_audio)

    def speaker_vectors(self, cond: Float[Array, "K S"]) -> Float[Array, "K C"]:
        """Conditioning vectors as they enter the sequence: projected to n_embd when wider."""
        cond = cond.astype(jnp.float32)
        return cond if self.speaker_in is None else self.speaker_in(cond)

    def condition(self, chunks: Float[Array, "K n_mels T"]) -> Float[Array, "N C"]:
        if self.conditioner is None:
            raise UserError("this TTS model has no conditioning encoder; supply a speaker embedding")
        return self.conditioner.from_chunks(chunks)


def with_ctc_head(model: TTS, key: PRNGKeyArray) -> TTS:
    """``model`` with a fresh CTC head (``models/alignment.py``), e.g. to fine-tune a checkpoint
    trained without one; a model that has one is returned as it is."""
    if model.ctc_head is not None:
        return model
    fresh = TTS(dataclasses.replace(model.config, ctc_head=True), key=key)
    names = [f.name for f in dataclasses.fields(TTS) if f.name not in ("ctc_head", "config")]
    return eqx.tree_at(lambda m: [getattr(m, n) for n in names], fresh, [getattr(model, n) for n in names],
                       is_leaf=lambda x: x is None)


def _masked_ce(logits: Array, targets: Array, mask: Array) -> Array:
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1)


def tts_loss(model: TTS, cond: Float[Array, "K C"], text: Int[Array, " Tt"], text_len: Int[Array, ""],
             audio: Int[Array, " Ta"], audio_len: Int[Array, ""], *, key: PRNGKeyArray | None = None,
             ctc_weight: float = 0.0):
    """XTTS-v2's loss for one example: ``0.01 * text CE + audio CE`` over next tokens within each
    segment, padding masked; with ``ctc_weight`` (a model with a CTC head) plus that weight times
    the head's CTC loss per label (``alignment.next_phoneme_ctc``). Returns (loss, metrics)."""
    from xtts_jax.models.alignment import next_phoneme_ctc

    out = model(cond, text, audio, text_len, audio_len, key=key)
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
        cond_x = m.speaker_vectors(self.cond_table[jnp.clip(tokens - C, 0, self.cond_table.shape[0] - 1)])
        x = jnp.where(is_audio[:, None], audio_x, jnp.where(is_text[:, None], text_x, cond_x))
        h, kv = m.transformer(x)
        # the sequence index of the audio start token: audio position = index - start
        start = jnp.argmax(tokens == m.config.audio_start_token).astype(jnp.int32)
        return self.audio_logits(h), (m.transformer.prompt_cache(kv, max_len), start)

    def decode_step(self, cache, token: Int[Array, ""], pos: Int[Array, ""]):
        m = self.model
        kv, start = cache
        audio_pos = jnp.clip(pos - start, 0, m.audio_pos.shape[0] - 1)
        h, kv = m.transformer.decode(m.audio_embedding[token] + m.audio_pos[audio_pos], kv, pos)
        return (kv, start), self.audio_logits(h)

    def audio_logits(self, h: Float[Array, "... C"]) -> Float[Array, "... Va"]:
        """Audio-head logits; the start token is masked (never drawn) unless the config follows
        coqui's XTTS-v2 sampling, which leaves it drawable (``sample_audio_start``)."""
        m = self.model
        logits = m.head(m.final_norm(h), m.audio_head)
        if m.config.sample_audio_start:
            return logits
        return logits.at[..., m.config.audio_start_token].set(-1e9)


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
