"""GPT-2's configuration and its named presets (gpt2 ... gpt2-xl, tiny, nano), with the CPU and GPU
choices the config makes from the backend (layers scanned or unrolled, compute dtype, attention
implementation) in one place. The modules that read it are in ``gpt.py``."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from xtts_jax.errors import UserError
from xtts_jax.models.layers import MLP_ACTIVATIONS, mlp_hidden_width

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
ATTENTION = ("xla", "cudnn", "blocked")
QUERY_BLOCK = 64  # rows per query block of the "blocked" attention


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = 50257  # the real vocabulary; embeddings are padded to a multiple of 64
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True
    mlp_activation: str = "gelu_tanh"
    # The three "auto" choices are resolved per backend by the properties scan, dtype and
    # attention_impl below, the one place where CPU and GPU defaults differ.
    scan_layers: bool | str = "auto"  # True: lax.scan (fast compiles at 30+ layers); False: unrolled
    compute_dtype: str = "auto"  # bfloat16 on GPU/TPU, float32 on CPU; parameters stay float32
    attention: str = "auto"  # "xla", "cudnn" or "blocked" (blocked_causal_attention)
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        scan = {"true": True, "1": True, "false": False, "0": False}.get(str(self.scan_layers).lower(), self.scan_layers)
        if scan not in (True, False, "auto"):
            raise UserError(f"scan_layers {self.scan_layers!r} is not true, false or auto")
        object.__setattr__(self, "scan_layers", scan)  # a flag or JSON may give a string
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.mlp_activation not in MLP_ACTIVATIONS:
            raise UserError(f"unknown mlp_activation {self.mlp_activation!r}; choose one of {', '.join(MLP_ACTIVATIONS)}")
        if self.compute_dtype not in ("auto", *DTYPES):
            raise UserError(f"unknown compute_dtype {self.compute_dtype!r}; choose auto, {', '.join(DTYPES)}")
        if self.attention not in ("auto", *ATTENTION):
            raise UserError(f"unknown attention {self.attention!r}; choose auto, {', '.join(ATTENTION)}")
        if min(self.n_layer, self.n_head, self.n_embd, self.block_size, self.vocab_size) < 1:
            raise UserError("n_layer, n_head, n_embd, block_size and vocab_size must all be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout {self.dropout} is outside [0, 1)")

    @property
    def padded_vocab_size(self) -> int:
        return 64 * math.ceil(self.vocab_size / 64)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def scan(self) -> bool:
        """Layers under lax.scan? auto: unrolled on CPU, where scan made the demo-size training step
        1.8x slower (bench/bench_train_cpu.py); scan elsewhere (compile time at 30+ layers)."""
        if self.scan_layers == "auto":
            return jax.default_backend() != "cpu"
        return self.scan_layers

    @property
    def dtype(self):
        if self.compute_dtype == "auto":
            return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
        return DTYPES[self.compute_dtype]

    @property
    def attention_impl(self) -> str:
        """auto: cuDNN flash attention on GPU in 16-bit; blocked_causal_attention on CPU (no fused
        attention kernel there); else the XLA path of jax.nn.dot_product_attention."""
        if self.attention != "auto":
            return self.attention
        gpu16 = jax.default_backend() == "gpu" and self.dtype in (jnp.bfloat16, jnp.float16)
        if gpu16 and self.head_dim <= 128:
            return "cudnn"
        return "blocked" if jax.default_backend() == "cpu" else "xla"

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (padded vocabulary); ``non_embedding`` leaves out position embeddings, as nanoGPT."""
        d, b = self.n_embd, int(self.bias)
        hidden = mlp_hidden_width(d, self.mlp_activation)
        n_mats = 3 if hidden != 4 * d else 2
        ln = d * (1 + b)
        attn = 3 * d * d + 3 * d * b + d * d + d * b
        mlp = (n_mats - 1) * (d * hidden + hidden * b) + hidden * d + d * b
        n = self.n_layer * (2 * ln + attn + mlp) + ln + self.padded_vocab_size * d
        n += 0 if self.tie_embeddings else self.padded_vocab_size * d
        return n if non_embedding else n + self.block_size * d

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training flops per token, nanoGPT's formula: 6 N + 12 n_layer n_embd T."""
        t = seq_len or self.block_size
        return 6 * self.num_params(non_embedding=True) + 12 * self.n_layer * self.n_embd * t

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown GPTConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
    # CPU-sized configs for tests, recipes and benchmarks.
    "tiny": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256),
    "nano": GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
}


def get_config(name: str, **overrides) -> GPTConfig:
    """A named preset, with fields overridden; unknown names get a one-line error listing the choices."""
    if name not in PRESETS:
        raise UserError(f"unknown GPT config {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
