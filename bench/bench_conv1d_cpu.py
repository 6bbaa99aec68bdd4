"""The HiFiGAN decoder's 1-D convolutions on a CPU, one formulation against another and PyTorch.

XLA's CPU backend runs ``lax.conv_general_dilated`` in the torch layout ([channels, time]) as a
channels-last convolution between two transposes, and a transposed convolution as a convolution over
an input dilated with zeros (``lhs_dilate``): for XTTS-v2's 8x upsamplers 7 of 8 products multiply a
zero. This bench times, at the XTTS-v2 decoder's shapes for ``--seconds`` of 24 kHz audio:

* ``lax NCH``   the convolution as ``models/hifigan.py`` wrote it first (torch layout)
* ``lax NWC``   the same convolution with time first and channels last (no transposes)
* ``dots``      channels last, one product per kernel tap on the shifted input, summed
* ``im2col``    channels last, the taps gathered into one [T, K*C_in] operand and one product
* ``polyphase`` (transposed convs) one product [T, C_in] x [C_in, K*C_out] and an overlap-add
* ``torch``     ``torch.nn.functional.conv1d`` / ``conv_transpose1d`` (oneDNN), [C, T]

Medians of ``--repeats`` interleaved rounds; the load average printed. Each formulation is checked
against ``lax NCH`` before it is timed. PyTorch shares the process with JAX here, and each library's
idle worker threads slow the other's (see ``bench_xtts_cpu.py --side``): read its column as a rough
guide, and ``bench_xtts_cpu.py --side torch`` for PyTorch's decoder alone. The generator on CPU
takes ``lax NWC`` and ``polyphase`` (``models/hifigan.py``), the fastest here summed over the
decoder's layers (a few single layers favour another form by a little; README, Benchmarks).

    python bench/bench_conv1d_cpu.py --seconds 1 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.models.hifigan import conv_transpose_polyphase  # noqa: E402

# XTTS-v2's decoder (hifigan.preset("xtts-v2")): 512 channels after conv_pre, upsampling 8, 8, 2, 2
# with kernels 16, 16, 4, 4; resblocks of kernels 3, 7, 11 with dilations 1, 3, 5; 256 samples a frame.
UPS = ((8, 16), (8, 16), (2, 4), (2, 4))
KERNELS, DILATIONS = (3, 7, 11), (1, 3, 5)


def shapes(seconds: float):
    """(name, kind, c_in, c_out, kernel, dilation or stride, input length, count per decoder call)."""
    frames = int(round(seconds * 24000 / 256))
    out, c, t = [], 512, frames
    out.append(("conv_pre", "conv", 1024, 512, 7, 1, frames, 1))
    for i, (rate, k) in enumerate(UPS):
        out.append((f"up{i}", "up", c, c // 2, k, rate, t, 1))
        c, t = c // 2, t * rate
        for k in KERNELS:
            for d in DILATIONS:
                out.append((f"rb{i} k{k} d{d}", "conv", c, c, k, d, t, 1))
            out.append((f"rb{i} k{k} d1 (2nd)", "conv", c, c, k, 1, t, len(DILATIONS)))
    return out


def conv_nch(x, w, d, pad):
    return jax.lax.conv_general_dilated(x[None], w, (1,), [(pad, pad)], rhs_dilation=(d,),
                                        dimension_numbers=("NCH", "OIH", "NCH"))[0]


def conv_nwc(x, w, d, pad):  # x [T, C_in], w [K, C_in, C_out]
    return jax.lax.conv_general_dilated(x[None], w, (1,), [(pad, pad)], rhs_dilation=(d,),
                                        dimension_numbers=("NWC", "WIO", "NWC"))[0]


def conv_dots(x, w, d, pad):
    k = w.shape[0]
    xp = jnp.pad(x, ((pad, pad), (0, 0)))
    t = x.shape[0]
    return sum(xp[j * d: j * d + t] @ w[j] for j in range(k))


def conv_im2col(x, w, d, pad):
    k, c_in, c_out = w.shape
    xp = jnp.pad(x, ((pad, pad), (0, 0)))
    t = x.shape[0]
    cols = jnp.concatenate([xp[j * d: j * d + t] for j in range(k)], axis=1)
    return cols @ w.reshape(k * c_in, c_out)


def up_nch(x, w, s, pad):  # w [C_in, C_out, K] (torch ConvTranspose1d)
    k = w.shape[-1]
    wf = jnp.flip(jnp.swapaxes(w, 0, 1), axis=-1)
    return jax.lax.conv_general_dilated(x[None], wf, (1,), [(k - 1 - pad, k - 1 - pad)], lhs_dilation=(s,),
                                        dimension_numbers=("NCH", "OIH", "NCH"))[0]


@run_cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1:
        raise UserError("--seconds must be > 0 and --repeats >= 1")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    rows = []
    print(f"load average before: {os.getloadavg()[0]:.2f}; jax {jax.__version__}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores; XTTS-v2 decoder shapes for {args.seconds} s")
    for name, kind, c_in, c_out, k, d, t, count in shapes(args.seconds):
        x = rng.standard_normal((c_in, t)).astype(np.float32)
        fns = {}
        if kind == "conv":
            w = (rng.standard_normal((c_out, c_in, k)) / np.sqrt(c_in * k)).astype(np.float32)
            pad = d * (k - 1) // 2
            wl = jnp.asarray(np.transpose(w, (2, 1, 0)))  # [K, C_in, C_out]
            xl = jnp.asarray(x.T)
            fns["lax NCH"] = (jax.jit(conv_nch, static_argnums=(2, 3)), (jnp.asarray(x), jnp.asarray(w), d, pad), False)
            fns["lax NWC"] = (jax.jit(conv_nwc, static_argnums=(2, 3)), (xl, wl, d, pad), True)
            fns["dots"] = (jax.jit(conv_dots, static_argnums=(2, 3)), (xl, wl, d, pad), True)
            fns["im2col"] = (jax.jit(conv_im2col, static_argnums=(2, 3)), (xl, wl, d, pad), True)
            tx, tw = torch.from_numpy(x)[None], torch.from_numpy(w)
            fns["torch"] = (lambda: torch.nn.functional.conv1d(tx, tw, padding=pad, dilation=d)[0], (), False)
        else:
            w = (rng.standard_normal((c_in, c_out, k)) / np.sqrt(c_in * k)).astype(np.float32)
            pad = (k - d) // 2  # XTTS-v2's upsamplers: padding (k - u) / 2
            fns["lax NCH"] = (jax.jit(up_nch, static_argnums=(2, 3)), (jnp.asarray(x), jnp.asarray(w), d, pad), False)
            # the generator's own (models/hifigan.py), weights in torch's layout as it holds them
            fns["polyphase"] = (jax.jit(conv_transpose_polyphase, static_argnums=(2, 3)),
                                (jnp.asarray(x.T), jnp.asarray(w), d, pad), True)
            tx, tw = torch.from_numpy(x)[None], torch.from_numpy(w)
            fns["torch"] = (lambda: torch.nn.functional.conv_transpose1d(tx, tw, stride=d, padding=pad)[0], (), False)
        ref = None
        for label, (fn, fargs, channels_last) in fns.items():
            with torch.no_grad():
                y = np.asarray(fn(*fargs))
            y = y.T if channels_last else y
            if ref is None:
                ref = y
            err = float(np.max(np.abs(y - ref)) / (np.max(np.abs(ref)) + 1e-12))
            if err > 1e-4:
                raise SystemExit(f"{name} {label}: differs from lax NCH by {err:.2e}")
        times = {label: [] for label in fns}
        for _ in range(args.repeats):
            for label, (fn, fargs, _) in fns.items():
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = fn(*fargs)
                jax.block_until_ready(out) if not isinstance(out, torch.Tensor) else None
                times[label].append(time.perf_counter() - t0)
        med = {label: float(np.median(v)) * 1e3 for label, v in times.items()}
        rows.append((name, count, med))
        print(f"{name:22s} x{count} [{c_in}->{c_out}, k {k}, {'stride' if kind == 'up' else 'dil'} {d}, T {t}]: "
              + ", ".join(f"{label} {ms:.2f}" for label, ms in med.items()) + " ms", flush=True)
    labels = ["lax NCH", "lax NWC", "dots", "im2col", "polyphase", "torch"]
    total = {label: 0.0 for label in labels}
    best = 0.0
    for _, count, med in rows:
        for label in labels:
            # a formulation that does not apply to a layer (polyphase to plain convs) takes the best lax time there
            total[label] += count * med.get(label, min(v for lb, v in med.items() if lb != "torch"))
        best += count * min(v for lb, v in med.items() if lb != "torch")
    print("\n| per decoder call, ms | " + " | ".join(labels) + " | best JAX per layer |")
    print("|---|" + "---:|" * (len(labels) + 1))
    print("| sum of layers | " + " | ".join(f"{total[label]:.0f}" for label in labels) + f" | {best:.0f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    main()
