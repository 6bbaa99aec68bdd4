"""The evaluation's outputs: a markdown table, a JSON with every transcript and score, a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(report: dict) -> str:
    """Rungs side by side: one table over all utterances, one per voice, the timing, the skips."""
    rungs = list(report["rungs"])
    lines = [f"Evaluation of `{report['manifest']}`: {report['utterances']} utterances, "
             f"{len(report['speakers'])} voices; recogniser {report['asr']}; speaker embedding {report['embedder']}"
             + (f"; the model keeps the best of {report['candidates']} sampled candidates" if (report.get("candidates") or 1) > 1
                else "")
             + (f"; the DVAE decoder reads each reference at strength {report['reference_strength']:g}"
                if report.get("reference_strength") is not None else "")
             + (f"; the nearest-voice test also counts {len(report['voice_pool'])} other voices "
                f"({', '.join(report['voice_pool'])})" if report.get("voice_pool") else "") + ".", "",
             "| rung | WER | CER | similarity to reference | to other voices | nearest voice right | failed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for rung in rungs:
        s = report["rungs"][rung]["overall"]
        lines.append(f"| {rung} | {_fmt(s['wer'])} | {_fmt(s['cer'])} | {_fmt(s['similarity'])} | "
                     f"{_fmt(s['other'])} | {s['nearest_voice']:.0%} | {s['failed']} |")
    lines += ["", "Per voice, WER / similarity:", "",
              "| voice | " + " | ".join(rungs) + " |", "|---|" + "---:|" * len(rungs)]
    for speaker in report["speakers"]:
        cells = [f"{_fmt(report['rungs'][r]['per_speaker'][speaker]['wer'])} / "
                 f"{_fmt(report['rungs'][r]['per_speaker'][speaker]['similarity'], 2)}" for r in rungs]
        lines.append(f"| {speaker} | " + " | ".join(cells) + " |")
    for rung in rungs:
        t = report["rungs"][rung].get("timing")
        if t:
            parts = [f"batched real-time factor {_fmt(t.get('batch_rtf'), 2)} (first batch, compiling: "
                     f"{_fmt(t.get('first_batch_seconds'), 1)} s)"]
            if "single_rtf" in t:
                parts.append(f"one sentence at a time, warm: real-time factor {_fmt(t['single_rtf'], 2)}, "
                             f"first streamed audio after {_fmt(t['time_to_first_audio'], 2)} s "
                             f"(median of {t['timed_sentences']})")
            lines += ["", f"Timing of `{rung}`: " + "; ".join(parts) + "."]
    if report["skipped"]:
        reasons: dict[str, int] = {}
        for s in report["skipped"]:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines += ["", f"Skipped {len(report['skipped'])} manifest rows: "
                  + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) + "."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str | Path) -> None:
    """WER and similarity per voice, one bar per rung."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rungs, speakers = list(report["rungs"]), report["speakers"]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(speakers) * 2), 4))
    width = 0.8 / len(rungs)
    x = np.arange(len(speakers))
    for ax, metric, title in ((axes[0], "wer", "Whisper WER (lower is better)"),
                              (axes[1], "similarity", "speaker similarity to reference")):
        for k, rung in enumerate(rungs):
            vals = [report["rungs"][rung]["per_speaker"][s][metric] for s in speakers]
            ax.bar(x + k * width, [np.nan if v is None else v for v in vals], width, label=rung)
        ax.set_xticks(x + width * (len(rungs) - 1) / 2, speakers, rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``report.json`` and ``report.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "png": out / "report.png"}
    paths["md"].write_text(markdown(report))
    paths["json"].write_text(json.dumps(report, indent=1))
    plot(report, paths["png"])
    return paths
