"""Training products written in the forms XLA's CPU backend runs fast, with their own backward passes.

XLA's CPU backend (JAX 0.10) hands a dot to its YNNPACK kernels, which use AVX512-BF16 and AMX on
CPUs that have them, when the left operand contracts its last axis (the right one may contract
either). A bfloat16 dot in any other form is converted to float32 and run by a float32 kernel, with
two conversion passes around it. Autodiff of ``x @ w`` writes the weight gradient as such a dot
(both operands contract their rows), and the batched attention products move the head axis inside:
so bfloat16 training was slower than float32 on this backend (bench/bench_train_cpu.py,
``jax-cores-bf16``). The functions here compute the same arithmetic as autodiff's (the operands in
the compute dtype, float32 accumulation) with every product in the kernel's form, transposing an
operand once where needed; ``tests/test_cpu_kernels.py`` checks their values and gradients against
autodiff of the plain formulas. Callers (``layers.matmul``, ``gpt.CausalSelfAttention``) take this
path on the CPU backend only; GPU and TPU keep the plain products.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jaxtyping import Array, Float


def applies(dtype) -> bool:
    """Whether products in ``dtype`` take these kernels: bfloat16 on the CPU backend."""
    return dtype == jnp.bfloat16 and jax.default_backend() == "cpu"


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU lists AVX512-BF16 or AMX-BF16, the instructions YNNPACK's bfloat16 kernels
    use (without them XLA runs bfloat16 products no faster than float32)."""
    try:
        with open(cpuinfo) as f:
            flags = set(f.read().split())
    except OSError:  # not Linux: no way to tell, so no bfloat16 by default
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def training_dtype(requested: str | None = None) -> str | None:
    """The compute dtype a training run uses, the one place the recipes choose it: ``requested``
    when given, else bfloat16 on the CPU backend of a CPU with bfloat16 kernels (1.6x the TTS
    recipe's step with losses equal to three decimals, 1.7x the text GPT's: README, Benchmarks),
    else None, meaning the model's own ``GPTConfig.compute_dtype`` (bfloat16 on GPU/TPU already).
    Weights and exported checkpoints keep their own dtype either way."""
    if requested is not None:
        return requested
    return "bfloat16" if jax.default_backend() == "cpu" and cpu_has_bf16() else None


def swapaxes_copy(x: Array, axis1: int, axis2: int) -> Array:
    """``jnp.swapaxes`` as a copy that XLA keeps: a plain transpose it folds into the next dot's
    dimension numbers, which brings back the form the kernels do not take."""
    axis1, axis2 = axis1 % x.ndim, axis2 % x.ndim
    y = jnp.swapaxes(x.reshape(*x.shape, 1), axis1, axis2)
    return y.reshape(y.shape[:-1])


def transpose_last(x: Float[Array, "... m k"]) -> Float[Array, "... k m"]:
    return swapaxes_copy(x, -2, -1)


def bf16_matmul(x: Float[Array, "... k"], w: Float[Array, "k n"], out_dtype, transpose_w: bool = False
                ) -> Float[Array, "... n"]:
    """``x @ w`` (``x @ w.T`` with ``transpose_w``, for a weight stored ``[n, k]``) with both operands
    in bfloat16 and float32 accumulation, the result in ``out_dtype``; the weight gradient comes back
    in ``w``'s dtype without rounding to bfloat16.

    A primitive rather than a ``custom_vjp``: under ``vmap`` (each model handles one example and the
    trainer maps it over the batch) a custom_vjp's backward pass is mapped too, so the weight
    gradient would be one small product per example and a sum; the primitive's batching rule folds
    the batch into the rows instead, and its transpose contracts all rows in one product."""
    return _matmul_p.bind(x, w, out_dtype=jnp.dtype(out_dtype), transpose_w=transpose_w)


def _bf16(x):
    return x.astype(jnp.bfloat16)


def _rows(x):
    return _bf16(x.reshape(-1, x.shape[-1]))


def _dot(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _matmul(x, w, *, out_dtype, transpose_w):
    y = _dot("mk,nk->mn" if transpose_w else "mk,kn->mn", _rows(x), _bf16(w))
    return y.astype(out_dtype).reshape(*x.shape[:-1], w.shape[0 if transpose_w else 1])


def _matmul_abstract(x, w, *, out_dtype, transpose_w):
    return jax.core.ShapedArray((*x.shape[:-1], w.shape[0 if transpose_w else 1]), out_dtype)


def _matmul_batch(args, dims, *, out_dtype, transpose_w):
    (x, w), (bx, bw) = args, dims
    if bw is None:  # the batch joins the rows
        return bf16_matmul(jnp.moveaxis(x, bx, 0), w, out_dtype, transpose_w), 0
    w = jnp.moveaxis(w, bw, 0)  # a weight per example: plain batched products
    x = jnp.moveaxis(x, bx, 0) if bx is not None else jnp.broadcast_to(x, (w.shape[0], *x.shape))
    xb = _bf16(x.reshape(x.shape[0], -1, x.shape[-1]))
    y = _dot("bmk,bnk->bmn" if transpose_w else "bmk,bkn->bmn", xb, _bf16(w))
    return y.astype(out_dtype).reshape(*x.shape[:-1], y.shape[-1]), 0


def _matmul_transpose_x(g, x, w, *, out_dtype, transpose_w):
    dx = _dot("mn,nk->mk" if transpose_w else "mn,kn->mk", _rows(g), _bf16(w))
    return dx.astype(x.aval.dtype).reshape(x.aval.shape)


def _matmul_transpose_w(g, x, w, *, out_dtype, transpose_w):
    if transpose_w:
        dw = _dot("nm,mk->nk", transpose_last(_rows(g)), _rows(x))
    else:
        dw = _dot("km,mn->kn", transpose_last(_rows(x)), _rows(g))
    return dw.astype(w.aval.dtype)


_matmul_p = Primitive("xtts_bf16_matmul")
_matmul_p.def_impl(_matmul)
_matmul_p.def_abstract_eval(_matmul_abstract)
mlir.register_lowering(_matmul_p, mlir.lower_fun(_matmul, multiple_results=False))
ad.defbilinear(_matmul_p, _matmul_transpose_x, _matmul_transpose_w)
batching.primitive_batchers[_matmul_p] = _matmul_batch


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def causal_attention(q: Float[Array, "T H D"], k: Float[Array, "T H D"], v: Float[Array, "T H D"],
                     block: int) -> Float[Array, "T H D"]:
    """Causal softmax attention, queries in blocks of ``block`` rows that score only the keys up to
    their own last row: ``gpt.blocked_causal_attention``'s arithmetic (scores and softmax in float32,
    the products in the inputs' dtype), heads moved to the front once so that every product of the
    forward and backward passes is a batched dot in the kernels' form. The backward pass reuses the
    saved probabilities (in the inputs' dtype) instead of autodiff's chain through the softmax."""
    return _attention_fwd(q, k, v, block)[0]


def _blocks(t: int, block: int):
    return [(lo, min(lo + block, t)) for lo in range(0, t, block)]


def _attention_fwd(q, k, v, block):
    t, _, d = q.shape
    dtype = q.dtype
    qh, kh, vh = (swapaxes_copy(a, 0, 1) for a in (q, k, v))  # [H, T, D]
    qh = qh * jnp.asarray(1 / math.sqrt(d), dtype)
    out, probs = [], []
    for lo, hi in _blocks(t, block):
        s = jnp.einsum("hqd,hkd->hqk", qh[:, lo:hi], kh[:, :hi], preferred_element_type=jnp.float32)
        s = jnp.where(jnp.arange(lo, hi)[:, None] >= jnp.arange(hi)[None, :], s, -jnp.inf)
        p = jax.nn.softmax(s, axis=-1).astype(dtype)
        out.append(jnp.einsum("hqk,hkd->hqd", p, vh[:, :hi], preferred_element_type=jnp.float32).astype(dtype))
        probs.append(p)
    return jnp.swapaxes(jnp.concatenate(out, axis=1), 0, 1), (qh, kh, vh, tuple(probs))


def _attention_bwd(block, residuals, g):
    qh, kh, vh, probs = residuals
    dtype = qh.dtype
    gh = swapaxes_copy(g.astype(dtype), 0, 1)
    dq, dk, dv = [], jnp.zeros(kh.shape, jnp.float32), jnp.zeros(vh.shape, jnp.float32)
    for (lo, hi), p in zip(_blocks(qh.shape[1], block), probs):
        go = gh[:, lo:hi]
        dv = dv.at[:, :hi].add(jnp.einsum("hkq,hqd->hkd", transpose_last(p), go, preferred_element_type=jnp.float32))
        dp = jnp.einsum("hqd,hkd->hqk", go, vh[:, :hi], preferred_element_type=jnp.float32)
        p32 = p.astype(jnp.float32)
        ds = (p32 * (dp - jnp.sum(dp * p32, axis=-1, keepdims=True))).astype(dtype)  # softmax's backward
        dq.append(jnp.einsum("hqk,hkd->hqd", ds, kh[:, :hi], preferred_element_type=jnp.float32))
        dk = dk.at[:, :hi].add(jnp.einsum("hkq,hqd->hkd", transpose_last(ds), qh[:, lo:hi],
                                          preferred_element_type=jnp.float32))
    scale = 1 / math.sqrt(qh.shape[-1])
    dq = jnp.concatenate(dq, axis=1) * scale  # the scores read q scaled; k's gradient already has it
    return tuple(jnp.swapaxes(a, 0, 1).astype(dtype) for a in (dq, dk, dv))


causal_attention.defvjp(_attention_fwd, _attention_bwd)
