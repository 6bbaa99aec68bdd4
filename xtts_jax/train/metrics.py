"""Where training metrics go: a JSONL file (one object per line), a tqdm bar, TensorBoard if present.

Only process 0 writes; other processes get a logger that does nothing, so the loop needs no
``if process_index == 0`` of its own.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
from tqdm.auto import tqdm


def _tensorboard_writer(log_dir: str):
    """A SummaryWriter from tensorboardX or torch, when tensorboard is installed; else None."""
    import importlib.util

    # Both writers need the tensorboard package; looking first avoids importing torch for nothing.
    if importlib.util.find_spec("tensorboard") is None:
        return None
    for module in ("tensorboardX", "torch.utils.tensorboard"):
        try:
            writer_cls = __import__(module, fromlist=["SummaryWriter"]).SummaryWriter
            return writer_cls(log_dir)
        except Exception:  # missing package, or torch without the tensorboard extra
            continue
    return None


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "size", 1) == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN; keep the line parseable
    return v


class MetricsLogger:
    """``log(step, dict)`` appends to ``metrics.jsonl``; ``progress(step)`` moves the bar."""

    def __init__(self, out_dir: str, total_steps: int, start_step: int = 0,
                 tensorboard: bool = True, show_progress: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.bar = None
        self.writer = None
        if not self.active:
            return
        os.makedirs(out_dir, exist_ok=True)
        self.file = open(self.path, "a", buffering=1)
        if show_progress:
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        if tensorboard:
            self.writer = _tensorboard_writer(os.path.join(out_dir, "tensorboard"))

    def log(self, step: int, values: dict, kind: str = "train") -> None:
        if not self.active:
            return
        record = {"step": int(step), "kind": kind, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in values.items()})
        self.file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "time"):
                    self.writer.add_scalar(f"{kind}/{k}", v, int(step))
        if self.bar is not None and kind in ("train", "eval"):
            shown = {k: f"{v:.4g}" for k, v in record.items()
                     if isinstance(v, float) and k in ("loss", "val_loss", "lr", "tokens_per_s")}
            self.bar.set_postfix(shown, refresh=False)

    def write(self, text: str) -> None:
        """Print a line without breaking the bar."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def progress(self, step: int) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def close(self) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.file.close()


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# Dense bf16 peaks from the vendors' data sheets (FLOP/s per device), for MFU as nanoGPT reports
# it (its A100 figure is 312e12). Other devices: pass --peak_flops.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 70e12}


def peak_flops_for(device) -> float:
    """Peak bf16 FLOP/s of ``device`` when its kind is in PEAK_FLOPS, else 0 (MFU not reported)."""
    kind = getattr(device, "device_kind", "")
    return next((v for k, v in PEAK_FLOPS.items() if k in kind), 0.0)
