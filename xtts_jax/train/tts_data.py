"""The generator's training data: token files (tools/encode_audio.py) as utterances of text ids,
audio ids and a reference mel, and the length-bucketed batches ``recipes/train_tts.py`` trains on.

A batch row is float32 (token ids are exact in float32): ``[text_len, audio_len, text..., audio...,
(pointer...,) reference mel...]``, so the data stay one plain array, as the trainer wants; a
text-pointer model's rows carry the text index each audio position reads (``models/pointer.py``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from xtts_jax.audio.io import load_audio
from xtts_jax.audio.mel import LOG_CLAMP, log_mel
from xtts_jax.errors import UserError
from xtts_jax.inference import tts as pipeline
from xtts_jax.models import tts as tts_lib


@dataclasses.dataclass
class Split:
    text: list[list[int]]
    audio: list[list[int]]
    speaker: list[str]
    ref_mel: np.ndarray  # [N, n_mels, frames]: the first ref_seconds of each clip
    # text-pointer models: per utterance the text index each audio position reads (models/pointer.py)
    pointer: list[list[int]] = dataclasses.field(default_factory=list)


def load_split(stem: str, cfg: tts_lib.TTSConfig, ref_frames: int, limit: int | None, tokenizer=None,
               language: str = "en", spell_fraction: float = 0.0, rows_out: list[int] | None = None,
               ref_mel: bool = True) -> Split:
    """The utterances of STEM that fit ``cfg``, with the reference mel the conditioning encoder reads
    (``cfg.conditioning``'s mel settings and norms). ``tokenizer``: an XTTS-v2 checkpoint's, reading
    the text as ``language``. A text-pointer ``cfg`` takes each utterance's text and pointer from
    STEM.align.jsonl (tools/align_tokens.py) and leaves out utterances it lacks. ``rows_out``: gets
    the STEM.jsonl line of every utterance kept. ``ref_mel=False``: no audio is read (the split's
    ``ref_mel`` is empty), for readers of the codes alone."""
    stem = str(stem)
    if not Path(stem + ".jsonl").is_file() or not Path(stem + ".bin").is_file():
        raise UserError(f"token files {stem}.jsonl / {stem}.bin do not exist; write them with tools/encode_audio.py")
    codes = np.fromfile(stem + ".bin", np.uint16)
    rows = [json.loads(line) for line in open(stem + ".jsonl") if line.strip()][:limit]
    aligned = {}
    if cfg.text_pointer:
        if not Path(stem + ".align.jsonl").is_file():
            raise UserError(f"{stem}.align.jsonl does not exist: a text-pointer model trains on forced "
                            f"alignments; write them with tools/align_tokens.py")
        aligned = {a["row"]: a for a in map(json.loads, open(stem + ".align.jsonl")) if a}
    if ref_mel:
        mel = cfg.conditioning.mel_config
        norms = np.asarray(cfg.conditioning.mel_norms or [1.0] * mel.n_mels, np.float32)[:, None]
        floor = np.log(LOG_CLAMP) / norms
    out = Split([], [], [], np.zeros((0,)))
    mels = []
    for line, r in enumerate(rows):
        audio = codes[r["offset"]: r["offset"] + r["length"]].tolist()
        if cfg.text_pointer:  # the text the alignment was made on; its pointer covers [start, codes, stop]
            a = aligned.get(line)
            text = a["text"] if a and len(a["pointer"]) == len(audio) + 2 else None
        else:
            try:
                rng = np.random.default_rng([len(out.text), 1234]) if spell_fraction else None  # fixed per row
                text = (pipeline.text_tokens(r["text"], cfg, tokenizer, language, spell_fraction, rng)
                        if r["text"].strip() else None)
            except UserError:  # a sentence longer than the text positions: skipped
                text = None
        if text is None or len(audio) + 2 > cfg.audio_positions or max(audio, default=0) >= cfg.num_audio_codes:
            continue
        if cfg.text_pointer:
            out.pointer.append(aligned[line]["pointer"])
        if rows_out is not None:
            rows_out.append(line)
        if ref_mel:
            m = log_mel(load_audio(r["audio_path"], mel.sample_rate)[: (ref_frames - 1) * mel.hop_length], mel)
            mels.append(np.concatenate([m / norms, np.broadcast_to(floor, (mel.n_mels, ref_frames - m.shape[1]))], 1))
        out.text.append(text)
        out.audio.append([cfg.audio_start_token, *audio, cfg.audio_stop_token])
        out.speaker.append(r["speaker"])
    if not out.text:
        raise UserError(f"{stem} holds no utterance that fits the model")
    out.ref_mel = np.stack(mels) if ref_mel else np.zeros((len(out.text), 0, 0), np.float32)
    return out


def load_splits(stems: list[str], cfg: tts_lib.TTSConfig, ref_frames: int, limit: int | None, tokenizer=None,
                language: str = "en", spell_fraction: float = 0.0) -> Split:
    """:func:`load_split` of every stem, one after another (``limit`` utterances from each)."""
    parts = [load_split(s, cfg, ref_frames, limit, tokenizer, language, spell_fraction) for s in stems]
    if len(parts) == 1:
        return parts[0]
    return Split([t for p in parts for t in p.text], [a for p in parts for a in p.audio],
                 [k for p in parts for k in p.speaker], np.concatenate([p.ref_mel for p in parts]),
                 [q for p in parts for q in p.pointer])


def token_dvae(stems: list[str]) -> str | None:
    """The DVAE that encoded the token files (STEM.json's ``dvae_path``); all stems must name the same one.

    Two paths name the same DVAE when their files hold the same bytes (a copy beside a run), so token
    files encoded through a copy mix with the originals; otherwise the paths themselves must agree.
    """
    paths = {json.loads(Path(s + ".json").read_text()).get("dvae_path") if Path(s + ".json").is_file() else None
             for s in stems}
    if len(paths) > 1 and len({_file_identity(p) for p in paths}) > 1:
        raise UserError(f"the token files {', '.join(stems)} were encoded by different DVAEs "
                        f"({', '.join(sorted(str(p) for p in paths))}); their codes do not mix")
    return sorted(paths, key=str)[0]


def _file_identity(path: str | None) -> str | None:
    """The sha256 of the file at ``path`` when it exists, else the path itself."""
    from xtts_jax.text.tokenizer import file_sha256

    return file_sha256(path) if path is not None and Path(path).is_file() else path


def corpus_text_ids(stem: str, limit: int | None) -> set[int]:
    """Every GPT-2 id the sentences of STEM.jsonl use (the first ``limit`` rows)."""
    from xtts_jax.text import tokenizer

    path = Path(str(stem) + ".jsonl")
    if not path.is_file():
        raise UserError(f"token files {path} do not exist; write them with tools/encode_audio.py")
    rows = [json.loads(line) for line in open(path) if line.strip()][:limit]
    return {i for r in rows for i in tokenizer.encode(r["text"], allow_eot=False)}


class Batches:
    """Rows of ``split`` for a step: pure in (seed, step), this process's share of the global batch.

    Utterances are sorted by length (text + audio) into ``buckets`` of equal size; a step draws one
    bucket (uniformly, so every utterance is equally likely) and pads its text and its audio only to
    that bucket's longest (multiples of 16), at the price of a compile per bucket. A bucket's layout
    (text width, audio width) is registered in ``layouts`` under its row width, which names it
    uniquely (a clash widens the audio, else the text, by 16), so :meth:`TTSTask.unpack` reads it from the shape.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, text_width: int, audio_width: int,
                 buckets: int = 1, layouts: dict[int, tuple[int, int]] | None = None):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        by_speaker: dict[str, list[int]] = {}
        for i, s in enumerate(split.speaker):
            by_speaker.setdefault(s, []).append(i)
        self.by_speaker = by_speaker
        order = np.argsort([len(t) + len(a) for t, a in zip(split.text, split.audio)], kind="stable")
        self.buckets = [b for b in np.array_split(order, max(1, min(buckets, len(order) // batch_size))) if len(b)]
        fixed = 2 + split.ref_mel[0].size
        audio_copies = 2 if split.pointer else 1  # a pointer row holds a second audio-wide segment
        self.layouts = {} if layouts is None else layouts
        self.widths: list[tuple[int, int]] = []  # (text, audio) per bucket
        round16 = lambda rows: -(-max(len(r) for r in rows) // 16) * 16  # noqa: E731
        for b in self.buckets:
            if len(self.buckets) == 1:
                tw, aw = text_width, audio_width
            else:
                tw = min(text_width, round16([split.text[i] for i in b]))
                aw = min(audio_width, round16([split.audio[i] for i in b]))
            while self.layouts.get(fixed + tw + audio_copies * aw, (tw, aw)) != (tw, aw):  # a clash: grow
                if aw + 16 <= audio_width:
                    aw += 16
                else:
                    tw += 16
            self.layouts[fixed + tw + audio_copies * aw] = (tw, aw)
            self.widths.append((tw, aw))

    def row(self, i: int, rng: np.random.Generator, text_width: int, audio_width: int) -> np.ndarray:
        s = self.split
        others = [j for j in self.by_speaker[s.speaker[i]] if j != i] or [i]  # another clip when one exists
        ref = s.ref_mel[others[rng.integers(len(others))]]
        text = np.full(text_width, s.text[i][-1], np.float32)
        audio = np.full(audio_width, s.audio[i][-1], np.float32)
        text[: len(s.text[i])], audio[: len(s.audio[i])] = s.text[i], s.audio[i]
        parts = [[len(s.text[i]), len(s.audio[i])], text, audio]
        if s.pointer:  # padding reads the text's stop, as the stop token's position does
            parts.append(np.pad(s.pointer[i], (0, audio_width - len(s.pointer[i])), mode="edge"))
        return np.concatenate([*parts, ref.reshape(-1)]).astype(np.float32)

    def __call__(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        b = int(rng.integers(len(self.buckets)))
        idx = self.buckets[b][rng.integers(0, len(self.buckets[b]), self.batch_size)]
        rows = np.stack([self.row(int(i), rng, *self.widths[b]) for i in idx])
        share = self.batch_size // jax.process_count()
        return rows[jax.process_index() * share:(jax.process_index() + 1) * share]
