"""Import the GPT of an XTTS-v2 ``model.pth`` (the ``gpt.*`` keys) into our :class:`TTS`.

Key layout, checked against coqui-ai TTS ``TTS/tts/layers/xtts/gpt.py``, ``latent_encoder.py``,
``perceiver_encoder.py`` and ``TTS/tts/layers/tortoise/arch_utils.py``:

* ``gpt.text_embedding.weight`` [text vocab, d] (6,681 rows for XTTS-v2), ``gpt.mel_embedding.weight``
  [codes + 2, d] (1026: start 1024, stop 1025), ``gpt.{text,mel}_pos_embedding.emb.weight``
  [positions, d] (404 and 608: each segment restarts at position 0);
* ``gpt.gpt.h.N.*``, ``gpt.gpt.ln_f.*``: a Hugging Face ``GPT2Model`` driven with ``inputs_embeds``;
  coqui deletes its ``wte`` and replaces ``wpe`` by a function returning zeros, so neither is stored.
  Its ``Conv1D`` weights are [in, out], as our ``Dense``: the block mapping of ``hf_gpt2`` applies;
* ``gpt.final_norm.*`` (LayerNorm after ``ln_f``), ``gpt.text_head.*``, ``gpt.mel_head.*``
  (``nn.Linear``: weight [out, in], transposed here);
* ``gpt.conditioning_encoder.init.*`` (Conv1d, kernel 1, [d, n_mels, 1]) and ``.attn.N.{norm,qkv,
  proj_out}.*`` (GroupNorm with Tortoise's ``normalization()`` group count, 1x1 convs; qkv channels
  grouped per head as ``[q_h, k_h, v_h]``, which ``models/conditioning.py`` reads directly), with
  as many heads as the GPT (``ConditioningEncoder(80, model_dim, num_attn_heads=heads)``);
* ``gpt.conditioning_perceiver.latents``, ``.layers.N.0.{to_q,to_kv,to_out}.weight`` (no biases; no
  ``proj_context`` since the context width equals d), ``.layers.N.1.0.*`` / ``.layers.N.1.2.*``
  (the GEGLU feed-forward's two Linears; index 1 is the GEGLU itself), ``.norm.gamma`` (RMSNorm).

Text start/stop tokens are XTTS-v2's 261 and 0. Shapes do not give head counts: without a
``config`` the GPT's and the perceiver's heads are taken as 64 wide (XTTS-v2: 16 x 64 and 8 x 64).

The conditioning encoder's attention blocks add the GroupNorm *output* back as the residual, as
coqui's XTTS ``latent_encoder.AttentionBlock`` (Tortoise's ``arch_utils`` block adds the input);
``models/conditioning.py`` does the same, so the imported conditioner is exact too.
"""

from __future__ import annotations

import dataclasses
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.convert import hf_gpt2
from xtts_jax.convert.torch_io import float32, xtts_state_dict
from xtts_jax.errors import UserError
from xtts_jax.models.conditioning import XTTS_MEL, ConditioningConfig
from xtts_jax.models.gpt_config import GPTConfig
from xtts_jax.models.tts import TTS, TTSConfig, coqui_generation

PREFIX = "gpt."
MEL_STATS = "mel_stats"  # Xtts's buffer: the per-channel divisor of the reference log-mel
TEXT_START, TEXT_STOP = 261, 0  # XTTS-v2's GPT(start_text_token=261, stop_text_token=0)
HEAD_DIM = 64  # GPT and perceiver head width of XTTS-v2 (and of every GPT-2 size)
_ENC, _PERC = PREFIX + "conditioning_encoder.", PREFIX + "conditioning_perceiver."
# Not weights of their own: buffers that older transformers versions saved with each GPT-2 block
# (the causal mask), and ``gpt.gpt_inference.*``, the GPT2InferenceModel wrapper that coqui builds
# around the same modules for sampling (saved in checkpoints written after init_gpt_for_inference,
# e.g. by GPTTrainer once it has made its eval samples).
_BUFFERS = re.compile(r"gpt\.gpt\.h\.\d+\.attn\.(bias|masked_bias)$|gpt\.gpt_inference\.")


def tortoise_groups(channels: int) -> int:
    """GroupNorm groups of Tortoise's ``normalization(channels)``: 32 (8 up to 16 channels, 16 up to
    64), halved until they divide ``channels``."""
    groups = 8 if channels <= 16 else 16 if channels <= 64 else 32
    while channels % groups:
        groups //= 2
    return groups


def read_xtts_state(path_or_state_dict) -> dict[str, np.ndarray]:
    """The ``gpt.*`` tensors (and ``mel_stats``) of an XTTS-v2 checkpoint as float32 numpy arrays.

    Accepts a path to ``model.pth`` (``{"model": state_dict, ...}`` or a bare state dict) or the
    dict itself. Keys of coqui's ``GPTTrainer`` checkpoints (``xtts.gpt.*``) lose their ``xtts.``.
    """
    state, where = xtts_state_dict(path_or_state_dict)
    arrays = {k: float32(v) for k, v in state.items() if k.startswith(PREFIX) or k == MEL_STATS}
    if not any(k.startswith(PREFIX) for k in arrays):
        raise UserError(f"{where} is not an XTTS checkpoint: it has no {PREFIX}* keys")
    return arrays


def _count(state: dict, pattern: str) -> int:
    """How many consecutive indices N have a key ``pattern.format(N)``."""
    n = 0
    while pattern.format(n) in state:
        n += 1
    return n


def _shape(state: dict, key: str) -> tuple:
    if key not in state:
        raise UserError(f"checkpoint is missing {key!r}; is it an XTTS-v2 model.pth?")
    return tuple(state[key].shape)


def _heads(width: int, what: str) -> int:
    if width % HEAD_DIM:
        raise UserError(f"{what} width {width} is not a multiple of {HEAD_DIM}; pass a TTSConfig with the head count")
    return width // HEAD_DIM


def infer_config(state: dict) -> TTSConfig:
    """The :class:`TTSConfig` that the tensor shapes of ``state`` (``read_xtts_state``) describe."""
    n_text, d = _shape(state, PREFIX + "text_embedding.weight")
    n_audio, _ = _shape(state, PREFIX + "mel_embedding.weight")
    n_layer = _count(state, PREFIX + "gpt.h.{}.ln_1.weight")
    if n_layer == 0:
        raise UserError(f"checkpoint has no GPT-2 blocks ({PREFIX}gpt.h.0.*)")
    if n_text <= TEXT_START:
        raise UserError(f"the {n_text}-row text table cannot hold XTTS-v2's text start token {TEXT_START}; "
                        "pass a TTSConfig with the right start/stop tokens")
    conditioning = None
    if _ENC + "init.weight" in state:
        inner = _shape(state, _PERC + "layers.0.0.to_q.weight")[0]
        ff = _shape(state, _PERC + "layers.0.1.2.weight")[1]
        # coqui's FeedForward width is int(d * mult * 2 / 3); find the integer mult behind it
        mults = [m for m in range(1, 17) if int(d * m * 2 / 3) == ff]
        if not mults:
            raise UserError(f"perceiver feed-forward width {ff} is not int({d} * mult * 2 / 3) for any mult up to 16")
        n_mels = _shape(state, _ENC + "init.weight")[1]
        norms = state.get(MEL_STATS)
        if norms is not None and norms.shape != (n_mels,):
            raise UserError(f"{MEL_STATS} has shape {norms.shape}, the conditioning encoder reads {n_mels} mels")
        conditioning = ConditioningConfig(
            n_mels=n_mels, mel=dataclasses.replace(XTTS_MEL, n_mels=n_mels), chunking="xtts",
            mel_norms=() if norms is None else tuple(float(x) for x in norms), n_embd=d, n_head=_heads(d, "GPT"),
            n_blocks=_count(state, _ENC + "attn.{}.qkv.weight"), num_groups=tortoise_groups(d),
            num_latents=_shape(state, _PERC + "latents")[0],
            perceiver_depth=_count(state, _PERC + "layers.{}.0.to_q.weight"),
            perceiver_heads=_heads(inner, "perceiver attention"), perceiver_head_dim=HEAD_DIM, ff_mult=mults[0])
    return coqui_generation(TTSConfig(
        gpt=GPTConfig(n_layer=n_layer, n_head=_heads(d, "GPT"), n_embd=d), text_vocab_size=n_text,
        text_start_token=TEXT_START, text_stop_token=TEXT_STOP,
        text_positions=_shape(state, PREFIX + "text_pos_embedding.emb.weight")[0],
        audio_positions=_shape(state, PREFIX + "mel_pos_embedding.emb.weight")[0],
        num_audio_codes=n_audio - 2, conditioning=conditioning, tokenizer="xtts"))


def _linear(take, key: str, d_in: int, d_out: int, bias: bool = True) -> list[np.ndarray]:
    """An ``nn.Linear`` as our Dense: weight [out, in] -> [in, out] (+ bias)."""
    out = [take(key + ".weight", (d_out, d_in)).T]
    return out + [take(key + ".bias", (d_out,))] if bias else out


def _conv1x1(take, key: str, d_in: int, d_out: int) -> list[np.ndarray]:
    """A kernel-1 ``nn.Conv1d`` [out, in, 1] (+ bias) as our Dense."""
    return [take(key + ".weight", (d_out, d_in, 1))[:, :, 0].T, take(key + ".bias", (d_out,))]


def load_xtts_gpt(path_or_state_dict, config: TTSConfig | None = None) -> TTS:
    """An XTTS-v2 ``model.pth`` (path or state dict) -> our TTS with its GPT, heads and conditioner.

    ``config``: the model's :class:`TTSConfig`, or None to infer it from the tensor shapes. A
    missing key, a shape that does not fit, or ``gpt.*`` keys left unused raise a UserError.
    """
    state = read_xtts_state(path_or_state_dict)
    cfg = config or infer_config(state)
    cond = cfg.conditioning
    if cond is not None and cond.num_groups != tortoise_groups(cond.n_embd):
        raise UserError(f"conditioning num_groups {cond.num_groups} differs from the {tortoise_groups(cond.n_embd)} "
                        f"groups XTTS-v2's GroupNorm has at d {cond.n_embd}")
    used: set[str] = set()

    def take(key: str, shape: tuple) -> np.ndarray:
        used.add(key)
        return hf_gpt2.take(state, key, shape)

    # shapes only: every array leaf is replaced below, so no random init runs
    model = eqx.filter_eval_shape(TTS, cfg, key=jax.random.key(0))
    d, g = cfg.gpt.n_embd, PREFIX + "gpt."
    parts: list[tuple] = [  # (getter of our leaves, their values)
        (lambda m: [m.text_embedding], [take(PREFIX + "text_embedding.weight", (cfg.text_vocab_size, d))]),
        (lambda m: [m.text_pos], [take(PREFIX + "text_pos_embedding.emb.weight", (cfg.text_positions, d))]),
        (lambda m: [m.audio_embedding], [take(PREFIX + "mel_embedding.weight", (cfg.audio_vocab_size, d))]),
        (lambda m: [m.audio_pos], [take(PREFIX + "mel_pos_embedding.emb.weight", (cfg.audio_positions, d))]),
        (lambda m: [m.transformer.ln_f.weight, m.transformer.ln_f.bias],
         [take(g + "ln_f.weight", (d,)), take(g + "ln_f.bias", (d,))]),
        (lambda m: [m.final_norm.weight, m.final_norm.bias],
         [take(PREFIX + "final_norm.weight", (d,)), take(PREFIX + "final_norm.bias", (d,))]),
        (lambda m: [m.text_head.weight, m.text_head.bias], _linear(take, PREFIX + "text_head", d, cfg.text_vocab_size)),
        (lambda m: [m.audio_head.weight, m.audio_head.bias], _linear(take, PREFIX + "mel_head", d, cfg.audio_vocab_size)),
    ]
    for name, get in hf_gpt2.BLOCK_KEYS.items():  # HF GPT-2 blocks, stacked on our leading layer axis
        shape = get(model.transformer.blocks).shape[1:]
        stacked = np.stack([take(f"{g}h.{i}.{name}", shape) for i in range(cfg.gpt.n_layer)])
        parts.append((lambda m, get=get: [get(m.transformer.blocks)], [stacked]))
    if cond is not None:
        parts += _conditioner_parts(take, cond)
    getters, values = zip(*parts)
    values = [jnp.asarray(v) for vs in values for v in vs]
    model = eqx.tree_at(lambda m: [leaf for get in getters for leaf in get(m)], model, values)
    leftover = sorted(k for k in state if k not in used and k != MEL_STATS and not _BUFFERS.match(k))
    if leftover:
        raise UserError(f"checkpoint has {len(leftover)} {PREFIX}* tensor(s) this TTS config does not use, e.g. "
                        f"{', '.join(leftover[:4])}")
    return model


def _conditioner_parts(take, cond: ConditioningConfig) -> list[tuple]:
    d, inner, ff = cond.n_embd, cond.perceiver_heads * cond.perceiver_head_dim, cond.ff_width
    parts = [(lambda m: [m.conditioner.encoder.init.weight, m.conditioner.encoder.init.bias],
              _conv1x1(take, _ENC + "init", cond.n_mels, d)),
             (lambda m: [m.conditioner.perceiver.latents, m.conditioner.perceiver.norm_gamma],
              [take(_PERC + "latents", (cond.num_latents, d)), take(_PERC + "norm.gamma", (d,))])]
    for i in range(cond.n_blocks):
        key = f"{_ENC}attn.{i}."

        def block(m, i=i):
            b = m.conditioner.encoder.blocks[i]
            return [b.norm.weight, b.norm.bias, b.qkv.weight, b.qkv.bias, b.proj_out.weight, b.proj_out.bias]

        parts.append((block, [take(key + "norm.weight", (d,)), take(key + "norm.bias", (d,)),
                              *_conv1x1(take, key + "qkv", d, 3 * d), *_conv1x1(take, key + "proj_out", d, d)]))
    for i in range(cond.perceiver_depth):
        key = f"{_PERC}layers.{i}."

        def layer(m, i=i):
            p = m.conditioner.perceiver.layers[i]
            return [p.to_q.weight, p.to_kv.weight, p.to_out.weight, p.ff_in.weight, p.ff_in.bias,
                    p.ff_out.weight, p.ff_out.bias]

        # layers.N.0 is the attention, layers.N.1 the feed-forward Sequential(Linear, GEGLU, Linear)
        parts.append((layer, [*_linear(take, key + "0.to_q", d, inner, bias=False),
                              *_linear(take, key + "0.to_kv", d, 2 * inner, bias=False),
                              *_linear(take, key + "0.to_out", inner, d, bias=False),
                              *_linear(take, key + "1.0", d, 2 * ff), *_linear(take, key + "1.2", ff, d)]))
    return parts


def describe(cfg: TTSConfig) -> str:
    """One line per part of the config, for the CLI."""
    g, c = cfg.gpt, cfg.conditioning
    lines = [f"GPT: {g.n_layer} layers, d {g.n_embd}, {g.n_head} heads",
             f"text: {cfg.text_vocab_size} tokens (start {cfg.text_start_token}, stop {cfg.text_stop_token}), "
             f"{cfg.text_positions} positions",
             f"audio: {cfg.num_audio_codes} codes (start {cfg.audio_start_token}, stop {cfg.audio_stop_token}), "
             f"{cfg.audio_positions} positions, at most {cfg.generation_limit} generated"]
    if c is not None:
        lines.append(f"conditioning: {c.n_mels} mels, {c.n_blocks} attention blocks of {c.n_head} heads, "
                     f"{c.num_groups} groups; perceiver {c.perceiver_depth} layers, {c.num_latents} latents, "
                     f"{c.perceiver_heads} x {c.perceiver_head_dim} heads, ff x{c.ff_mult}")
    return "\n".join(lines)


