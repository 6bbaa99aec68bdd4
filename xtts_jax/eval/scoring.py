"""Scores of rendered rungs: Whisper error rates and speaker similarity, per utterance, per voice
and over all.

Speaker similarity of an output is its cosine to the embedding of the item's reference clip (the
other clip of the same voice that conditioned the model, never the clip itself). To place it, the
same output is also compared with the reference clips of every voice in the evaluation: ``other``
is its mean cosine to the other voices, ``nearest_ok`` whether its own voice scores highest
(voice score: mean cosine to that voice's reference clips, leaving out the output's own
recording). A voice pool (``pool_embeddings``: the training voices, say) adds voices that only
compete for ``nearest_ok``: an output must be nearer its own voice than any voice of the
evaluation and of the pool.
"""

from __future__ import annotations

import collections

import numpy as np

from xtts_jax.audio.io import load_audio
from xtts_jax.eval.asr import error_rates
from xtts_jax.eval.speaker import cosine


def reference_embeddings(items, embedder) -> dict[str, dict[str, np.ndarray]]:
    """``{voice: {clip path: embedding}}`` of every reference clip, each embedded once."""
    out: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    for it in items:
        path = str(it.reference_path)
        if path not in out[it.speaker]:
            e = embedder(load_audio(path, 16000), 16000)
            if e is not None:
                out[it.speaker][path] = e
    return out


def pool_embeddings(rows, embedder, exclude, per_voice: int) -> dict[str, dict[str, np.ndarray]]:
    """``{voice: {clip path: embedding}}`` of the first ``per_voice`` clips of every voice in
    ``rows`` (manifest utterances) that is not in ``exclude``."""
    out: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    for u in rows:
        if u.speaker in exclude or len(out[u.speaker]) >= per_voice:
            continue
        e = embedder(load_audio(str(u.audio_path), 16000), 16000)
        if e is not None:
            out[u.speaker][str(u.audio_path)] = e
    return {v: clips for v, clips in out.items() if clips}


def score_rung(items, rendered, asr, embedder, refs, pool=None) -> list[dict]:
    """One record per item: transcript, WER/CER, similarity to the reference, to the other voices,
    and whether the nearest voice is the right one (among ``refs``' voices and ``pool``'s). A
    missing waveform is scored as silence (every word deleted, no similarity) and carries its
    failure."""
    records = []
    for i, (it, wave) in enumerate(zip(items, rendered.waves)):
        rec = {"speaker": it.speaker, "text": it.text, "audio_path": str(it.audio_path),
               "reference_path": str(it.reference_path)}
        if wave is None:
            rec.update(transcript="", failure=rendered.failures.get(i, "no audio"), seconds=0.0,
                       **error_rates([it.text], [""]), similarity=None, other=None, nearest_ok=False)
            records.append(rec)
            continue
        rec["transcript"] = asr(wave, rendered.sample_rate)
        rec["seconds"] = len(wave) / rendered.sample_rate
        rec.update(error_rates([it.text], [rec["transcript"]]))
        e = embedder(wave, rendered.sample_rate)
        own = refs[it.speaker].get(str(it.reference_path))
        if e is None or own is None:
            rec.update(similarity=None, other=None, nearest_ok=False)
        else:
            voice_score = {v: np.mean([cosine(e, r) for p, r in clips.items() if p != str(it.audio_path)] or [np.nan])
                           for v, clips in {**(pool or {}), **refs}.items()}
            others = [s for v, s in voice_score.items() if v != it.speaker and v in refs and np.isfinite(s)]
            best = max((s, v) for v, s in voice_score.items() if np.isfinite(s))[1]
            rec.update(similarity=cosine(e, own), other=float(np.mean(others)) if others else None,
                       nearest_ok=bool(best == it.speaker))
        records.append(rec)
    return records


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def summarize(records: list[dict]) -> dict:
    """Corpus WER/CER (edits over all reference words of the group), mean similarities, nearest-voice
    accuracy and count."""
    rates = error_rates([r["text"] for r in records], [r["transcript"] for r in records])
    return {**rates, "similarity": _mean(r["similarity"] for r in records),
            "other": _mean(r["other"] for r in records),
            "nearest_voice": float(np.mean([r["nearest_ok"] for r in records])),
            "utterances": len(records), "failed": sum("failure" in r for r in records)}


def summarize_by_speaker(records: list[dict]) -> dict[str, dict]:
    by = collections.defaultdict(list)
    for r in records:
        by[r["speaker"]].append(r)
    return {s: summarize(rs) for s, rs in sorted(by.items())}
