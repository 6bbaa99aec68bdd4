"""MLP-activation ablation: one GPT config, trained once per activation and per seed, compared fairly.

Fair means: for seed index k every activation sees the same batches (data seed k) and starts from
the same PRNG key, all runs get the same token budget and learning-rate schedule, parameter counts
agree within 1% (gated MLPs get an 8d/3 hidden width, see ``models.layers.mlp_hidden_width``), and
every run is scored on the same validation batches. Each run goes through the shared
:class:`~xtts_jax.train.trainer.Trainer`, so it checkpoints, logs ``metrics.jsonl`` and resumes like
any other training run. A finished run leaves ``result.json`` (its done-marker); a run without it
is resumed from its last checkpoint. ``xtts_jax.train.ablation_report`` turns results into the
table, plot and JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import numpy as np

from xtts_jax.errors import UserError
from xtts_jax.models.gpt import GPT
from xtts_jax.models.gpt_config import GPTConfig
from xtts_jax.models.layers import MLP_ACTIVATIONS, mlp_hidden_width
from xtts_jax.train.data import TokenDataset
from xtts_jax.train.lm import LMTask, VocabMap
from xtts_jax.train.metrics import read_jsonl
from xtts_jax.train.optim import TrainConfig
from xtts_jax.train.trainer import Trainer

PARAM_TOLERANCE = 0.01  # parameter counts must agree within 1% of the first activation's
DONE_FILE = "result.json"
SPEC_FILE = "ablation.json"


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """What is compared and how. ``gpt.mlp_activation`` and ``train.seed``/``out_dir`` are set per run."""

    gpt: GPTConfig
    train: TrainConfig
    activations: tuple[str, ...] = MLP_ACTIVATIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_seed: int = 10_000  # validation batches: the same for every run
    compact_vocab: bool = True  # renumber the corpus's token ids (a CPU does not pay for 50,257 logits)

    def __post_init__(self):
        unknown = [a for a in self.activations if a not in MLP_ACTIVATIONS]
        if unknown or not self.activations:
            raise UserError(f"unknown or no activations {unknown or list(self.activations)}; "
                            f"choose from {', '.join(MLP_ACTIVATIONS)}")
        if len(set(self.activations)) != len(self.activations) or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"activations {self.activations} and seeds {self.seeds} must not repeat")
        if not self.seeds or min(self.seeds) < 0:
            raise UserError(f"seeds {self.seeds} must be one or more non-negative integers")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AblationConfig":
        train = dict(d["train"], betas=tuple(d["train"]["betas"]))
        return cls(GPTConfig.from_dict(d["gpt"]), TrainConfig(**train), tuple(d["activations"]),
                   tuple(d["seeds"]), d["eval_seed"], d["compact_vocab"])


def _token_counts(tokens: np.ndarray, chunk: int = 1 << 24) -> np.ndarray:
    """How often each uint16 id occurs, read in chunks so a large memmap is never held twice."""
    return sum(np.bincount(tokens[i:i + chunk], minlength=1 << 16) for i in range(0, len(tokens), chunk))


class LMData:
    """Train/val token files of ``xtts_jax.text.prepare``, optionally renumbered to a compact vocabulary."""

    def __init__(self, data_dir, block_size: int, compact_vocab: bool):
        data_dir = Path(data_dir)
        self.train = TokenDataset(data_dir / "train.bin", block_size)
        self.val = TokenDataset(data_dir / "val.bin", block_size)
        self.vocab = None
        if compact_vocab:  # ids of both splits, so no validation token falls outside the table
            counts = sum(_token_counts(d.tokens) for d in (self.train, self.val))
            self.vocab = VocabMap.from_counts(counts)

    def _map(self, batch: np.ndarray) -> np.ndarray:
        return batch if self.vocab is None else self.vocab.to_compact(batch)

    def train_batches(self, data_seed: int, batch_size: int) -> Callable[[int], np.ndarray]:
        return lambda step: self._map(self.train.batch(data_seed, step, batch_size))

    def eval_batches(self, eval_seed: int, batch_size: int) -> Callable[[int], np.ndarray]:
        return lambda i: self._map(self.val.batch(eval_seed, i, batch_size))


def run_configs(spec: AblationConfig, vocab_size: int) -> dict[str, GPTConfig]:
    return {a: dataclasses.replace(spec.gpt, mlp_activation=a, vocab_size=vocab_size) for a in spec.activations}


def param_counts(cfg: GPTConfig) -> dict[str, int]:
    """Parameters of the built model (no memory used): ``total``, and ``non_embedding`` without
    the token and position tables, the part where the MLP variants differ."""
    model = eqx.filter_eval_shape(GPT, cfg, key=jax.random.PRNGKey(0))
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct))
    embeddings = int(np.prod(model.wte.shape)) + int(np.prod(model.wpe.shape))
    return {"total": total, "non_embedding": total - embeddings,
            "mlp_hidden": mlp_hidden_width(cfg.n_embd, cfg.mlp_activation)}


def check_matched(counts: dict[str, dict[str, int]], tolerance: float = PARAM_TOLERANCE) -> None:
    """UserError unless every activation's total and non-embedding counts lie within ``tolerance``
    of the first activation's."""
    base_name, base = next(iter(counts.items()))
    for name, c in counts.items():
        for kind in ("total", "non_embedding"):
            gap = abs(c[kind] - base[kind]) / base[kind]
            if gap > tolerance:
                raise UserError(f"{name} has {c[kind]:,} {kind} parameters, {gap:.1%} away from {base_name}'s "
                                f"{base[kind]:,} (tolerance {tolerance:.0%}); choose another n_embd")


def _latest(records: list[dict], kind: str) -> list[dict]:
    """Records of ``kind``, one per step, the last written winning: a resumed run repeats the steps
    after its last checkpoint, and those repeats are the ones that lead to the final model."""
    by_step = {r["step"]: r for r in records if r.get("kind") == kind}
    return [by_step[s] for s in sorted(by_step)]


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)  # atomic: a done-marker is never half written


def run_one(spec: AblationConfig, activation: str, seed: int, data: LMData, run_dir: Path,
            show_progress: bool = False) -> dict:
    """Train (or resume, or skip when done) one run; returns its result record."""
    done = run_dir / DONE_FILE
    if done.is_file():
        return json.loads(done.read_text())
    vocab_size = data.vocab.size if data.vocab is not None else spec.gpt.vocab_size
    cfg = run_configs(spec, vocab_size)[activation]
    train = dataclasses.replace(spec.train, seed=seed, out_dir=str(run_dir))
    trainer = Trainer(LMTask(cfg, data.vocab), train,
                      train_data=data.train_batches(seed, train.batch_size),
                      eval_data=data.eval_batches(spec.eval_seed, train.batch_size),
                      meta={"ablation": {"activation": activation, "seed": seed}})
    start = time.perf_counter()
    trainer.fit(resume=True, show_progress=show_progress)  # resume=True starts fresh when no checkpoint
    wall_s = time.perf_counter() - start
    records = read_jsonl(str(run_dir / "metrics.jsonl"))
    tokens_per_step = train.batch_size * cfg.block_size
    evals = [{"step": r["step"], "tokens": r["step"] * tokens_per_step, "val_loss": r["val_loss"]}
             for r in _latest(records, "eval")]
    trains = [{k: r[k] for k in ("step", "loss", "tokens_per_s") if k in r} for r in _latest(records, "train")]
    if not evals or evals[-1]["step"] != train.steps:
        raise RuntimeError(f"{run_dir}: no validation loss at the final step {train.steps}")
    result = {"activation": activation, "seed": seed, "steps": train.steps,
              "tokens": train.steps * tokens_per_step, "params": param_counts(cfg),
              "final_val_loss": evals[-1]["val_loss"],
              # The median interval: robust to the first one, which includes compilation.
              "tokens_per_s": float(np.median([r["tokens_per_s"] for r in trains])),
              "wall_s": wall_s,  # this invocation's fit, compilation included
              "val_curve": evals, "train_curve": trains}
    _write_json(done, result)
    return result


def run_ablation(spec: AblationConfig, data_dir, out_dir, show_progress: bool = False,
                 on_result: Callable[[list[dict]], None] | None = None, log: Callable[[str], None] = print
                 ) -> list[dict]:
    """All runs, seed by seed (so a stopped ablation holds whole seeds), skipping finished ones.

    ``out_dir/ablation.json`` records ``spec``; rerunning into the same folder with another spec is
    a UserError, so finished runs are never mixed with runs of other settings. ``on_result`` gets
    the results so far after every run (to refresh the report while the ablation is going).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / SPEC_FILE
    if spec_path.is_file():
        saved = json.loads(spec_path.read_text())
        if saved != json.loads(json.dumps(spec.to_dict())):
            raise UserError(f"{out_dir} holds an ablation with other settings ({spec_path}); "
                            "use the same settings to resume it or choose another output folder")
    else:
        _write_json(spec_path, spec.to_dict())
    data = LMData(data_dir, spec.gpt.block_size, spec.compact_vocab)
    vocab_size = data.vocab.size if data.vocab is not None else spec.gpt.vocab_size
    counts = {a: param_counts(c) for a, c in run_configs(spec, vocab_size).items()}
    check_matched(counts)
    results = []
    for seed in spec.seeds:
        for activation in spec.activations:
            run_dir = out_dir / "runs" / activation / f"seed{seed}"
            skipped = (run_dir / DONE_FILE).is_file()
            result = run_one(spec, activation, seed, data, run_dir, show_progress)
            results.append(result)
            log(f"{activation:>9} seed {seed}: val loss {result['final_val_loss']:.4f}, "
                f"{result['tokens_per_s']:,.0f} tokens/s{' (done before, skipped)' if skipped else ''}")
            if on_result is not None:
                on_result(results)
    return results


# --- aggregation and report ------------------------------------------------------------------
def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1, the spread one expects between seeds); std 0 for one value."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def paired_t_test(differences) -> tuple[float | None, float | None]:
    """Paired t-test on per-seed differences: t = mean / (sample std / sqrt(n)) and its two-sided
    p-value from Student's t with n - 1 degrees of freedom. (None, None) where it is undefined:
    fewer than two pairs, or differences with no spread (the baseline against itself)."""
    from scipy import stats

    d = np.asarray(differences, np.float64)
    mean, std = mean_std(d) if len(d) > 1 else (0.0, 0.0)
    if std == 0:
        return None, None
    t = mean / (std / np.sqrt(len(d)))
    return float(t), float(2 * stats.t.sf(abs(t), len(d) - 1))


def summarize(results: list[dict]) -> dict:
    """Per activation (in first-seen order; the first is the baseline): final val loss mean and std
    over seeds, the paired difference to the baseline (same seed: same data order and init key)
    with a paired t-test on it, tokens/s, and the mean/std val-loss curve."""
    by_activation: dict[str, list[dict]] = {}
    for r in results:
        by_activation.setdefault(r["activation"], []).append(r)
    baseline = next(iter(by_activation))
    base_loss = {r["seed"]: r["final_val_loss"] for r in by_activation[baseline]}
    rows = []
    for activation, runs in by_activation.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        losses = [r["final_val_loss"] for r in runs]
        mean, std = mean_std(losses)
        paired = [r["final_val_loss"] - base_loss[r["seed"]] for r in runs if r["seed"] in base_loss]
        delta, delta_std = mean_std(paired) if paired else (float("nan"), float("nan"))
        t, p = paired_t_test(paired)
        # The val curves share eval steps when the runs share a TrainConfig; keep the common ones.
        steps = sorted(set.intersection(*({p["step"] for p in r["val_curve"]} for r in runs)))
        curves = np.array([[{p["step"]: p["val_loss"] for p in r["val_curve"]}[s] for s in steps] for r in runs])
        tokens_per_step = runs[0]["tokens"] / runs[0]["steps"]
        rows.append({
            "activation": activation, "seeds": [r["seed"] for r in runs], "params": runs[0]["params"],
            "final_val_loss": losses, "mean": mean, "std": std,
            "delta_vs_baseline": delta, "delta_std": delta_std,
            "paired_t": t, "p_value": p, "pairs": len(paired),
            "tokens_per_s": mean_std([r["tokens_per_s"] for r in runs])[0],
            "steps": runs[0]["steps"], "tokens": runs[0]["tokens"],
            "curve": {"tokens": [s * tokens_per_step for s in steps], "mean": curves.mean(0).tolist(),
                      "std": (curves.std(0, ddof=1) if len(runs) > 1 else 0 * curves[0]).tolist()},
        })
    return {"baseline": baseline, "rows": rows}


def markdown_table(summary: dict) -> str:
    base = summary["baseline"]
    lines = [f"| activation | MLP hidden | params | non-embedding params | final val loss (mean ± std) "
             f"| Δ vs {base}, paired (mean ± std) | paired t-test | seeds | tokens/s | steps | tokens |",
             "|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        p = r["params"]
        delta = "—" if r["activation"] == base else f"{r['delta_vs_baseline']:+.4f} ± {r['delta_std']:.4f}"
        test = "—" if r["p_value"] is None else f"t = {r['paired_t']:+.2f}, p = {r['p_value']:.3f}"
        lines.append(f"| {r['activation']} | {p['mlp_hidden']} | {p['total']:,} | {p['non_embedding']:,} "
                     f"| {r['mean']:.4f} ± {r['std']:.4f} | {delta} | {test} | {len(r['seeds'])} "
                     f"| {r['tokens_per_s']:,.0f} | {r['steps']:,} | {r['tokens']:,} |")
    return "\n".join(lines) + "\n"


def plot_curves(summary: dict, path: Path, title: str = "") -> None:
    """Val loss against tokens seen: mean over seeds and a ±1 std band; right panel: second half zoomed."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server or in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in summary["rows"]:
        t, mean, std = (np.asarray(r["curve"][k]) for k in ("tokens", "mean", "std"))
        for ax, keep in ((axes[0], t >= 0), (axes[1], t >= t.max() / 2)):
            (line,) = ax.plot(t[keep], mean[keep], label=r["activation"])
            ax.fill_between(t[keep], (mean - std)[keep], (mean + std)[keep], color=line.get_color(), alpha=0.2)
    for ax, sub in zip(axes, ("", " (second half)")):
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{title}{sub}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _threshold(summary: dict) -> str:
    """What |t| it takes for p < 0.05 at this ablation's number of seeds."""
    from scipy import stats

    n = max(r["pairs"] for r in summary["rows"])
    return f" (with {n} seeds, p < 0.05 needs |t| > {stats.t.isf(0.025, n - 1):.2f})" if n > 1 else ""


def write_report(results: list[dict], out_dir, info: dict | None = None) -> dict:
    """``results.json`` (every raw number), ``results.md`` (the table) and ``val_loss.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    info = dict(info or {})
    _write_json(out_dir / "results.json", {"info": info, "summary": summary, "runs": results})
    header = "".join(f"- {k}: {v}\n" for k, v in info.items())
    note = (f"\nΔ is the final val loss minus {summary['baseline']}'s for the same seed (same data order "
            "and init key). Paired t-test: t = mean Δ / (std Δ / √n) over the n seeds, p two-sided from "
            f"Student's t with n − 1 degrees of freedom{_threshold(summary)}. "
            "std is the sample standard deviation over seeds.\n")
    (out_dir / "results.md").write_text(f"# MLP activation ablation\n\n{header}\n{markdown_table(summary)}{note}")
    plot_curves(summary, out_dir / "val_loss.png", info.get("title", ""))
    return summary
