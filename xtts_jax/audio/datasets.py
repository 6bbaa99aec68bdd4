"""Speech datasets as lists of :class:`Utterance`, and a validation pass that never stops a run.

Readers know the layouts of LJSpeech (``metadata.csv`` + ``wavs/``), LibriTTS
(``speaker/chapter/utt.wav`` + ``utt.normalized.txt``), VCTK (``txt/`` + ``wav48*/``) and our
generic manifest (CSV or JSONL with ``audio_path, text, speaker``). Readers only parse; rows they
cannot parse are counted in the report. :func:`validate` then looks at every file's header and
drops, counting each reason, what is missing, unreadable, empty, too short or long, has too many
channels or a sample rate far below the target, or has no text.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Iterable

from xtts_jax.audio.io import audio_info
from xtts_jax.errors import UserError

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ("audio_path", "text", "speaker")
SKIP_REASONS = (
    "bad_row", "missing_text", "missing_file", "unreadable", "empty", "too_many_channels",
    "low_sample_rate", "too_short", "too_long",
)


@dataclasses.dataclass(frozen=True)
class Utterance:
    audio_path: Path
    text: str
    speaker: str


def _new_report() -> collections.Counter:
    return collections.Counter()


# --- readers -------------------------------------------------------------------------------------


def read_ljspeech(root: str | Path, report: collections.Counter | None = None) -> list[Utterance]:
    """LJSpeech: ``metadata.csv`` rows ``id|raw text|normalized text``, audio in ``wavs/id.wav``.

    Uses the normalised transcript (numbers spelled out) when present. The file is split on
    ``|`` by hand because its texts hold unbalanced quotes that a CSV parser would join.
    """
    root = Path(root)
    report = _new_report() if report is None else report
    meta = root / "metadata.csv"
    utts = []
    for line in _read_lines(meta):
        cols = line.split("|")
        if len(cols) < 2 or not cols[0].strip():
            report["bad_row"] += 1
            continue
        text = cols[2] if len(cols) > 2 and cols[2].strip() else cols[1]
        utts.append(Utterance(root / "wavs" / f"{cols[0].strip()}.wav", text.strip(), "LJ"))
    return utts


def read_libritts(root: str | Path, report: collections.Counter | None = None) -> list[Utterance]:
    """LibriTTS: every ``*.wav`` under ``root`` with its ``.normalized.txt``; speaker = grandparent folder."""
    root = Path(root)
    utts = []
    for wav in sorted(root.rglob("*.wav")):
        txt = wav.with_name(wav.stem + ".normalized.txt")
        text = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else ""
        utts.append(Utterance(wav, text, wav.parent.parent.name))
    return utts


def read_vctk(root: str | Path, report: collections.Counter | None = None) -> list[Utterance]:
    """VCTK: ``txt/SPK/ID.txt`` with audio ``wav48/SPK/ID.wav`` (0.80) or
    ``wav48_silence_trimmed/SPK/ID_mic1.flac`` (0.92; mic1 preferred, mic2 as fallback)."""
    root = Path(root)
    audio_dirs = sorted(d for d in root.glob("wav48*") if d.is_dir())
    utts = []
    for txt in sorted((root / "txt").glob("*/*.txt")):
        spk, uid = txt.parent.name, txt.stem
        candidates = [
            d / spk / f"{uid}{tail}" for d in audio_dirs
            for tail in (".wav", "_mic1.flac", "_mic2.flac", ".flac")
        ]
        audio = next((c for c in candidates if c.is_file()), None)
        if audio is None:  # kept so that validation counts it as missing
            audio = (audio_dirs[0] if audio_dirs else root / "wav48") / spk / f"{uid}.wav"
        text = txt.read_text(encoding="utf-8", errors="replace").strip()
        utts.append(Utterance(audio, text, spk))
    return utts


def read_manifest(path: str | Path, report: collections.Counter | None = None) -> list[Utterance]:
    """Generic manifest: CSV/TSV with a header or JSONL, fields ``audio_path, text, speaker``.

    Relative audio paths are taken relative to the manifest's folder; a missing speaker is
    ``"unknown"``.
    """
    path = Path(path)
    report = _new_report() if report is None else report
    rows: list[dict] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line in _read_lines(path):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                report["bad_row"] += 1
                continue
            rows.append(row)
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with _open(path) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            if reader.fieldnames is None or "audio_path" not in reader.fieldnames:
                raise UserError(f"manifest {path} needs a header row with an audio_path column.")
            rows = list(reader)
    utts = []
    for row in rows:
        audio = str(row.get("audio_path") or "").strip()
        if not audio:
            report["bad_row"] += 1
            continue
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        speaker = str(row.get("speaker") or "").strip() or "unknown"
        utts.append(Utterance(audio_path, str(row.get("text") or "").strip(), speaker))
    return utts


def write_manifest(utts: Iterable[Utterance], path: str | Path) -> Path:
    """Write a generic manifest (JSONL or CSV by suffix); audio paths relative to its folder when under it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in utts:
        try:
            audio = u.audio_path.resolve().relative_to(path.parent.resolve()).as_posix()
        except ValueError:
            audio = str(u.audio_path)
        rows.append({"audio_path": audio, "text": u.text, "speaker": u.speaker})
    with open(path, "w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".jsonl":
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return path


READERS = {"ljspeech": read_ljspeech, "libritts": read_libritts, "vctk": read_vctk, "manifest": read_manifest}


def detect_kind(path: str | Path) -> str:
    """Which reader fits ``path`` (a manifest file or a dataset folder)."""
    path = Path(path)
    if path.is_file():
        if path.name == "metadata.csv" and "|" in path.read_text(encoding="utf-8", errors="replace")[:4096]:
            return "ljspeech"
        return "manifest"
    if not path.is_dir():
        raise UserError(f"dataset path {path} does not exist.")
    if (path / "metadata.csv").is_file():
        return "ljspeech"
    if (path / "txt").is_dir() and any(path.glob("wav48*")):
        return "vctk"
    if next(path.rglob("*.normalized.txt"), None) is not None:
        return "libritts"
    raise UserError(f"cannot tell which dataset {path} is: expected metadata.csv, txt/ + wav48*/, or *.normalized.txt files.")


def read_dataset(path: str | Path, kind: str = "auto", report: collections.Counter | None = None) -> list[Utterance]:
    """Read any supported dataset; ``kind`` is one of ``auto`` or :data:`READERS`' names."""
    path = Path(path)
    kind = detect_kind(path) if kind == "auto" else kind
    if kind not in READERS:
        raise UserError(f"unknown dataset kind {kind!r}: choose auto, {', '.join(READERS)}.")
    if kind == "ljspeech" and path.is_file():
        path = path.parent
    return READERS[kind](path, report)


# --- validation ----------------------------------------------------------------------------------


def validate(
    utts: Iterable[Utterance],
    min_seconds: float = 0.5,
    max_seconds: float = 20.0,
    min_sample_rate: int = 16000,
    max_channels: int = 2,
    report: collections.Counter | None = None,
) -> tuple[list[Utterance], dict]:
    """Keep the usable utterances; return them with a report of counts per skip reason.

    Reads only file headers (fast over a whole corpus). ``min_sample_rate`` guards against audio
    resampled up from telephone rates, which would teach the model an empty top band.
    """
    report = _new_report() if report is None else report
    kept, seconds, examples = [], 0.0, []
    speakers = collections.Counter()
    for u in utts:
        reason = _problem(u, min_seconds, max_seconds, min_sample_rate, max_channels)
        if isinstance(reason, str):
            report[reason] += 1
            if len(examples) < 10:
                examples.append((str(u.audio_path), reason))
            continue
        kept.append(u)
        seconds += reason
        speakers[u.speaker] += reason
    skipped = sum(report[r] for r in SKIP_REASONS)
    if skipped:
        log.warning("skipped %d of %d utterances: %s", skipped, skipped + len(kept),
                    ", ".join(f"{r} {report[r]}" for r in SKIP_REASONS if report[r]))
    out = {r: report[r] for r in SKIP_REASONS}
    out.update(kept=len(kept), skipped=skipped, total=skipped + len(kept), kept_seconds=seconds,
               seconds_per_speaker=dict(sorted(speakers.items())), examples=examples)
    return kept, out


def load_dataset(path: str | Path, kind: str = "auto", **validate_kwargs) -> tuple[list[Utterance], dict]:
    """Read and validate in one call: ``(usable utterances, report)``."""
    report = _new_report()
    return validate(read_dataset(path, kind, report), report=report, **validate_kwargs)


def _problem(u: Utterance, min_s: float, max_s: float, min_sr: int, max_ch: int) -> str | float:
    """A skip reason, or the duration in seconds when the utterance is usable."""
    if not u.text.strip():
        return "missing_text"
    if not u.audio_path.is_file():
        return "missing_file"
    try:
        sr, channels, seconds = audio_info(u.audio_path)
    except UserError:
        return "unreadable"
    if seconds <= 0:
        return "empty"
    if channels > max_ch:
        return "too_many_channels"
    if sr < min_sr:
        return "low_sample_rate"
    if seconds < min_s:
        return "too_short"
    if seconds > max_s:
        return "too_long"
    return seconds


def _open(path: Path):
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist.")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _read_lines(path: Path) -> list[str]:
    with _open(path) as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]
