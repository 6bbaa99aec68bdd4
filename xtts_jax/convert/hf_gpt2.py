"""Hugging Face GPT-2 checkpoint folders <-> our Equinox ``GPT``.

A folder holds ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, read with
``torch.load(weights_only=True)`` when torch is installed). Keys come either bare (``h.0.attn...``,
as OpenAI's original upload) or under ``transformer.`` (as ``GPT2LMHeadModel.save_pretrained``).
GPT-2's ``Conv1D`` stores weights as [in, out], as our ``Dense`` does, so tensors copy straight in.
"""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.errors import UserError
from xtts_jax.models.gpt import GPT

# Hugging Face activation_function -> our mlp_activation.
from xtts_jax.models.gpt_config import GPTConfig
_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu",
                   "silu": "silu", "swish": "silu"}
_OURS_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
# Per-block parameters: HF name -> path in our Block.
BLOCK_KEYS = {
    "ln_1.weight": lambda b: b.ln_1.weight, "ln_1.bias": lambda b: b.ln_1.bias,
    "attn.c_attn.weight": lambda b: b.attn.c_attn.weight, "attn.c_attn.bias": lambda b: b.attn.c_attn.bias,
    "attn.c_proj.weight": lambda b: b.attn.c_proj.weight, "attn.c_proj.bias": lambda b: b.attn.c_proj.bias,
    "ln_2.weight": lambda b: b.ln_2.weight, "ln_2.bias": lambda b: b.ln_2.bias,
    "mlp.c_fc.weight": lambda b: b.mlp.c_fc.weight, "mlp.c_fc.bias": lambda b: b.mlp.c_fc.bias,
    "mlp.c_proj.weight": lambda b: b.mlp.c_proj.weight, "mlp.c_proj.bias": lambda b: b.mlp.c_proj.bias,
}


def config_from_hf(hf: dict, **overrides) -> GPTConfig:
    """Our config from a GPT-2 ``config.json`` dict; variants we do not implement are refused by name."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise UserError(f"config.json has model_type {hf.get('model_type')!r}; only gpt2 is supported")
    act = hf.get("activation_function", "gelu_new")
    if act not in _HF_ACTIVATIONS:
        raise UserError(f"config.json activation_function {act!r} is not supported ({', '.join(_HF_ACTIVATIONS)})")
    n_inner = hf.get("n_inner")
    if n_inner not in (None, 4 * hf["n_embd"]):
        raise UserError(f"config.json n_inner {n_inner} is not 4 * n_embd; only GPT-2's MLP width is supported")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if hf.get(flag):
            raise UserError(f"config.json sets {flag}, which this importer does not implement")
    fields = dict(n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"], block_size=hf["n_positions"],
                  vocab_size=hf["vocab_size"], bias=True, dropout=0.0, mlp_activation=_HF_ACTIVATIONS[act],
                  tie_embeddings=hf.get("tie_word_embeddings", True), layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))
    return GPTConfig(**{**fields, **overrides})


def config_to_hf(cfg: GPTConfig) -> dict:
    if cfg.mlp_activation not in _OURS_TO_HF or not cfg.bias:
        raise UserError(f"a GPT-2 checkpoint cannot express mlp_activation={cfg.mlp_activation!r}, bias={cfg.bias}")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": _OURS_TO_HF[cfg.mlp_activation],
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "n_positions": cfg.block_size,
            "n_ctx": cfg.block_size, "vocab_size": cfg.vocab_size, "layer_norm_epsilon": cfg.layer_norm_eps,
            "tie_word_embeddings": cfg.tie_embeddings, "n_inner": None, "bos_token_id": 50256, "eos_token_id": 50256,
            "attn_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "resid_pdrop": cfg.dropout}


def read_state_dict(folder: Path) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint folder as float32 numpy arrays."""
    if (path := folder / "model.safetensors").is_file():
        from xtts_jax.weights import read_safetensors

        return {k: np.asarray(v, np.float32) for k, v in read_safetensors(path, "GPT-2 weights").items()}
    if (path := folder / "pytorch_model.bin").is_file():
        from xtts_jax.convert.torch_io import torch_load  # one reader for PyTorch files, with its errors

        return {k: v.float().numpy() for k, v in torch_load(path).items() if hasattr(v, "float")}
    raise UserError(f"{folder} holds neither model.safetensors nor pytorch_model.bin")


def take(state: dict, key: str, shape: tuple) -> np.ndarray:
    if key not in state:
        raise UserError(f"checkpoint is missing {key!r} (expected shape {shape})")
    value = state[key]
    if tuple(value.shape) != tuple(shape):
        raise UserError(f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def gpt_from_state_dict(state: dict[str, np.ndarray], cfg: GPTConfig) -> GPT:
    """Fill a GPT of config ``cfg`` from GPT-2 tensors; missing keys or wrong shapes name the key."""
    prefix = "transformer." if any(k.startswith("transformer.") for k in state) else ""
    # The structure alone (no random init): every array leaf is replaced below.
    model = eqx.filter_eval_shape(GPT, cfg, key=jax.random.key(0))
    d = cfg.n_embd
    wte = take(state, prefix + "wte.weight", (cfg.vocab_size, d))
    wte = np.concatenate([wte, np.zeros((cfg.padded_vocab_size - cfg.vocab_size, d), np.float32)])
    wpe = take(state, prefix + "wpe.weight", (cfg.block_size, d))
    blocks = model.transformer.blocks
    getters, values = [], []
    for name, get in BLOCK_KEYS.items():
        shape = get(blocks).shape[1:]
        getters.append(get)
        values.append(jnp.asarray(np.stack([take(state, f"{prefix}h.{i}.{name}", shape) for i in range(cfg.n_layer)])))
    blocks = eqx.tree_at(lambda b: [g(b) for g in getters], blocks, values)
    ln_f = model.transformer.ln_f
    ln_f = eqx.tree_at(lambda m: (m.weight, m.bias), ln_f,
                       (jnp.asarray(take(state, prefix + "ln_f.weight", (d,))), jnp.asarray(take(state, prefix + "ln_f.bias", (d,)))))
    model = eqx.tree_at(lambda m: (m.wte, m.wpe, m.transformer.blocks, m.transformer.ln_f), model,
                        (jnp.asarray(wte), jnp.asarray(wpe), blocks, ln_f))
    if not cfg.tie_embeddings:
        head = take(state, "lm_head.weight", (cfg.vocab_size, d)).T
        head = np.concatenate([head, np.zeros((d, cfg.padded_vocab_size - cfg.vocab_size), np.float32)], axis=1)
        model = eqx.tree_at(lambda m: m.lm_head.weight, model, jnp.asarray(head))
    return model


def load_hf_gpt2(folder: str | Path, **overrides) -> GPT:
    """Load a Hugging Face GPT-2 checkpoint folder (config.json + weights) into our GPT."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} has no config.json; expected a Hugging Face GPT-2 checkpoint folder")
    try:
        hf = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{folder / 'config.json'} is not valid JSON ({e.msg} at line {e.lineno})")
    return gpt_from_state_dict(read_state_dict(folder), config_from_hf(hf, **overrides))


def state_dict_from_gpt(model: GPT, prefix: str = "transformer.") -> dict[str, np.ndarray]:
    """GPT-2 tensors of our model, keyed as ``GPT2LMHeadModel.save_pretrained`` writes them."""
    cfg = model.config
    state = {prefix + "wte.weight": np.asarray(model.wte[: cfg.vocab_size]), prefix + "wpe.weight": np.asarray(model.wpe),
             prefix + "ln_f.weight": np.asarray(model.transformer.ln_f.weight),
             prefix + "ln_f.bias": np.asarray(model.transformer.ln_f.bias)}
    for name, get in BLOCK_KEYS.items():
        stacked = np.asarray(get(model.transformer.blocks))
        for i in range(cfg.n_layer):
            state[f"{prefix}h.{i}.{name}"] = stacked[i]
    if model.lm_head is not None:
        state["lm_head.weight"] = np.ascontiguousarray(np.asarray(model.lm_head.weight)[:, : cfg.vocab_size].T)
    return state


def save_hf_gpt2(model: GPT, folder: str | Path) -> None:
    """Write config.json + model.safetensors that transformers' GPT2LMHeadModel loads."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2))
    save_file(state_dict_from_gpt(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
