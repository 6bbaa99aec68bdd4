"""Where training metrics go: a JSONL file (one object per line), a tqdm bar, TensorBoard if present.

Only process 0 writes; other processes get a logger that does nothing, so the loop needs no
``if process_index == 0`` of its own. A run that starts at step s > 0 (a resume) keeps the records
up to s, drops those past it (written after the checkpoint it resumes from) and adds one
``{"step": s, "kind": "resume"}`` record, so the file reads as one history.
"""

from __future__ import annotations

import contextlib
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
    """``log(step, dict)`` appends to ``metrics.jsonl``; ``progress(step)`` moves the bar, and
    ``stage(name)`` names what runs between steps (eval, samples, save) on it."""

    def __init__(self, out_dir: str, total_steps: int, start_step: int = 0,
                 tensorboard: bool = True, show_progress: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.bar = None
        self.writer = None
        if not self.active:
            return
        os.makedirs(out_dir, exist_ok=True)
        _keep_until(self.path, start_step)
        self.file = open(self.path, "a", buffering=1)
        if start_step > 0:
            self.log(start_step, {}, kind="resume")
        if show_progress:
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, desc="train")
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

    @contextlib.contextmanager
    def stage(self, name: str):
        """Show ``name`` instead of "train" on the bar while the block runs."""
        if self.bar is not None:
            self.bar.set_description_str(name, refresh=True)
        try:
            yield
        finally:
            if self.bar is not None:
                self.bar.set_description_str("train", refresh=True)

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


def _keep_until(path: str, step: int) -> None:
    """Rewrite ``path`` with only its records at or before ``step``; a line cut off by a crash
    goes too."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# Dense bf16 peaks from the vendors' data sheets (FLOP/s per device), for MFU as nanoGPT reports
# it (its A100 figure is 312e12). Other devices: pass --peak-flops.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 70e12}


def peak_flops_for(device) -> float:
    """Peak bf16 FLOP/s of ``device`` when its kind is in PEAK_FLOPS, else 0 (MFU not reported)."""
    kind = getattr(device, "device_kind", "")
    return next((v for k, v in PEAK_FLOPS.items() if k in kind), 0.0)
