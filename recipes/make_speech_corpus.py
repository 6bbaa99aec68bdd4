"""Synthesise a multi-speaker English speech corpus with the free engines Debian ships.

No download: flite (CMU voices kal16, awb, rms, slt), espeak-ng (formant voices with variants) and
festival (when installed) read sentences from a text file, or from the project's own generators:
``--source stories`` (the default: the embedded story generator plus a short built-in list),
``everyday`` (``xtts_jax.text.everyday``: questions, requests, times, dates, money, numbers as digits
and words, thousands of frequent words) or ``mixed`` (both interleaved, ``--everyday-share`` of them
everyday). The result is a generic manifest (see ``xtts_jax.audio.datasets``) that the DVAE and TTS
recipes read:

    out/wavs/SPEAKER/SPEAKER_00012.wav    22,050 Hz mono 16-bit, silence trimmed, peak 0.9
    out/train.jsonl                        training voices x training sentences
    out/eval.jsonl                         training voices x held-out sentences (5%)
    out/eval_voices.jsonl                  held-out voices x held-out sentences
    out/corpus.json                        voices, seed, minutes per speaker

Deterministic: a sentence's split depends only on its text, a voice's reading list only on the
seed, and the engines are deterministic. Existing files are kept, so a stopped run resumes.

    python recipes/make_speech_corpus.py --out /tmp/speech --max-sentences 400
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from xtts_jax.audio.datasets import Utterance, write_manifest
from xtts_jax.audio.io import SAMPLE_RATE, load_audio, save_audio
from xtts_jax.errors import UserError, run_cli
from xtts_jax.text.everyday import generate_sentences
from xtts_jax.text.stories import generate_stories

ENGINE_BINARY = {"flite": "flite", "espeak-ng": "espeak-ng", "festival": "text2wave"}
ENGINE_APT = {"flite": "flite", "espeak-ng": "espeak-ng", "festival": "festival festvox-kallpc16k"}


@dataclasses.dataclass(frozen=True)
class Voice:
    speaker: str  # the speaker id in the manifest
    engine: str  # a key of ENGINE_BINARY
    voice: str  # the engine's own voice name
    args: tuple[str, ...] = ()  # extra engine flags (espeak-ng pitch -p / speed -s)


# espeak-ng: `en+VARIANT` and `en-us+VARIANT` apply the variant; `en-gb+VARIANT` silently ignores it.
VOICES = (
    Voice("flite_kal", "flite", "kal16"),
    Voice("flite_awb", "flite", "awb"),
    Voice("flite_rms", "flite", "rms"),
    Voice("flite_slt", "flite", "slt"),
    Voice("espeak_f3", "espeak-ng", "en+f3"),
    Voice("espeak_m3", "espeak-ng", "en+m3", ("-p", "40")),
    Voice("espeak_klatt4", "espeak-ng", "en+klatt4"),
    Voice("espeak_annie", "espeak-ng", "en+Annie"),
    Voice("espeak_whisper", "espeak-ng", "en+whisper", ("-s", "150")),
    Voice("espeak_us_f5", "espeak-ng", "en-us+f5", ("-p", "65")),
    Voice("espeak_us_m7", "espeak-ng", "en-us+m7", ("-s", "145")),
    Voice("espeak_scot_m1", "espeak-ng", "en-gb-scotland+m1", ("-p", "30")),
    Voice("espeak_rp_f2", "espeak-ng", "en-gb-x-rp+f2", ("-s", "190")),
    Voice("espeak_croak", "espeak-ng", "en+croak"),
    Voice("espeak_m1", "espeak-ng", "en+m1"),
    Voice("espeak_m2", "espeak-ng", "en+m2", ("-p", "35")),
    Voice("espeak_f1", "espeak-ng", "en+f1"),
    Voice("espeak_f4", "espeak-ng", "en+f4", ("-p", "60")),
    Voice("espeak_klatt2", "espeak-ng", "en+klatt2"),
    Voice("espeak_klatt3", "espeak-ng", "en+klatt3", ("-s", "160")),
    Voice("espeak_andy", "espeak-ng", "en+Andy"),
    Voice("espeak_michael", "espeak-ng", "en+Michael"),
    Voice("espeak_john", "espeak-ng", "en+john", ("-p", "45")),
    Voice("espeak_max", "espeak-ng", "en+max"),
    Voice("espeak_david", "espeak-ng", "en+david", ("-s", "155")),
    Voice("espeak_us_m3", "espeak-ng", "en-us+m3", ("-p", "35")),
    Voice("espeak_us_f4", "espeak-ng", "en-us+f4", ("-s", "165")),
    Voice("espeak_alicia", "espeak-ng", "en+Alicia"),
    Voice("espeak_grandpa", "espeak-ng", "en+grandpa"),
    Voice("festival_kal", "festival", "kal_diphone"),
    # validation voices: no recipe trains on them; rendering settings are chosen on them, so that
    # espeak_us_m7 and espeak_rp_f2 stay a test
    Voice("espeak_m4", "espeak-ng", "en+m4"),
    Voice("espeak_us_m6", "espeak-ng", "en-us+m6", ("-s", "170")),
    Voice("espeak_linda", "espeak-ng", "en+linda"),
    Voice("espeak_steph", "espeak-ng", "en+steph", ("-p", "55")),
)
EVAL_VOICES = ("flite_rms", "espeak_us_m7")

# Our own sentences, written for this project, to widen the phonetic range of the story corpus.
BUILTIN_SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "Seven thousand four hundred and twelve people crowded into the stadium.",
    "Would you please pass the salt, the pepper, and the mustard?",
    "Thunder rolled across the valley while the children hurried home.",
    "She measured the width of the shelf twice before cutting the wood.",
    "Which of these three jackets looks warmest for a winter hike?",
    "Our train leaves at half past nine, so we should not be late.",
    "A gentle breeze carried the smell of fresh bread through the village.",
    "The engineer checked every valve, every pipe, and every gauge.",
    "Zebras and giraffes gathered quietly around the muddy water hole.",
    "He whispered the answer, but nobody in the hall could hear him.",
    "Judge the results by their evidence, not by their popularity.",
    "Yesterday the shop sold forty-two umbrellas in less than an hour.",
    "Choose a number between one and ten, then double it and add six.",
    "Bright orange leaves drifted down onto the quiet cobbled street.",
    "Is it true that the museum closes early on Thursdays?",
    "The violinist tuned her instrument while the audience waited.",
    "Heavy snow blocked the mountain pass for nearly a week.",
    "Few things are as pleasant as a cup of tea on a rainy afternoon.",
    "The pilot announced that we would land in about twenty minutes.",
    "Thick fog rose from the lake, hiding the boats and the pier.",
    "Exactly how much sugar does this recipe need?",
    "My neighbour's youngest son is learning to play the trumpet.",
    "Vivid paintings of ships and harbours covered the gallery walls.",
)

# a space after . ! ? (or after one closing quote), before a capital or quote; not after Mr. Mrs. Dr. St.
SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"”']))(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)\s+(?=[\"“A-Z0-9])"
)


def split_sentences(text: str, min_words: int = 3, max_words: int = 30) -> list[str]:
    """Sentences of ``text`` with ``min_words``..``max_words`` words, whitespace collapsed."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        pieces: list[str] = []
        for piece in SENTENCE_END.split(" ".join(para.split())):
            # a sentence ending inside a quotation continues until the quotation closes
            if pieces and pieces[-1].count('"') % 2 == 1:
                pieces[-1] += " " + piece
            else:
                pieces.append(piece)
        for s in pieces:
            s = s.strip()
            if min_words <= len(s.split()) <= max_words and re.search(r"[A-Za-z]", s):
                out.append(s)
    return out


SOURCES = ("stories", "everyday", "mixed")


def story_sentences(seed: int, max_sentences: int) -> list[str]:
    """The built-in sentences, then the sentences of the embedded story generator."""
    sources = list(BUILTIN_SENTENCES)
    for story in generate_stories(seed, max(50, max_sentences // 3)):
        sources.extend(split_sentences(story))
    return sources


def interleave(first: list[str], second: list[str], second_share: float) -> list[str]:
    """``first`` and ``second`` merged in order so that any prefix of k sentences holds
    floor(k * second_share) of ``second``'s (while both last)."""
    out, i, j = [], 0, 0
    while i < len(first) or j < len(second):
        take_second = int((len(out) + 1) * second_share) > int(len(out) * second_share)
        if j < len(second) and (take_second or i == len(first)):
            out.append(second[j])
            j += 1
        else:
            out.append(first[i])
            i += 1
    return out


def load_sentences(text_file: str | None, max_sentences: int, seed: int, source: str = "stories",
                   everyday_share: float = 0.5) -> list[str]:
    """Unique sentences, in first-seen order, from ``text_file`` or the built-in ``source``
    (one of SOURCES; ``mixed`` holds ``everyday_share`` everyday sentences)."""
    if text_file:
        path = Path(text_file)
        if not path.is_file():
            raise UserError(f"text file {path} does not exist.")
        sources = split_sentences(path.read_text(encoding="utf-8", errors="replace"))
    elif source == "stories":
        sources = story_sentences(seed, max_sentences)
    elif source == "everyday":
        sources = generate_sentences(seed, max_sentences)
    elif source == "mixed":
        sources = interleave(list(dict.fromkeys(story_sentences(seed, max_sentences))),
                             generate_sentences(seed, max_sentences), everyday_share)
    else:
        raise UserError(f"unknown sentence source {source!r}: choose from {', '.join(SOURCES)}.")
    unique = list(dict.fromkeys(sources))
    if not unique:
        raise UserError(f"no usable sentences (3 to 30 words) in {text_file or 'the built-in sources'}.")
    return unique[:max_sentences]


def is_eval_sentence(text: str, eval_fraction: float) -> bool:
    """Stable split: depends only on the sentence, so adding sentences never moves old ones."""
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < eval_fraction


def check_engines(voices: list[Voice]) -> None:
    """Raise naming the apt package of every engine the chosen voices need but the machine lacks."""
    missing = sorted({v.engine for v in voices if shutil.which(ENGINE_BINARY[v.engine]) is None})
    if missing:
        pkgs = " ".join(ENGINE_APT[e] for e in missing)
        raise UserError(f"speech engine(s) {', '.join(missing)} not installed: run `apt-get install -y {pkgs}` "
                        f"or leave their voices out with --voices.")


def engine_command(voice: Voice, text_path: Path, wav_path: Path) -> list[str]:
    """The command that reads ``text_path`` aloud into ``wav_path`` (text goes through a file, not argv)."""
    if voice.engine == "flite":
        return ["flite", "-voice", voice.voice, "-f", str(text_path), "-o", str(wav_path)]
    if voice.engine == "espeak-ng":
        return ["espeak-ng", "-v", voice.voice, *voice.args, "-f", str(text_path), "-w", str(wav_path)]
    if voice.engine == "festival":
        return ["text2wave", "-eval", f"(voice_{voice.voice})", str(text_path), "-o", str(wav_path)]
    raise UserError(f"unknown speech engine {voice.engine!r}.")


def synthesise(voice: Voice, text: str, out_path: Path) -> float:
    """Write ``text`` in ``voice`` to ``out_path`` (22,050 Hz, trimmed, peak 0.9); return seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        txt, raw = Path(tmp) / "in.txt", Path(tmp) / "raw.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        proc = subprocess.run(engine_command(voice, txt, raw), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not raw.is_file():
            raise UserError(f"{voice.engine} voice {voice.voice} failed: {proc.stderr.strip()[:200]}")
        wave = load_audio(raw, SAMPLE_RATE)
    wave, _ = librosa.effects.trim(wave, top_db=40, frame_length=1024, hop_length=256)
    pad = np.zeros(int(0.1 * SAMPLE_RATE), np.float32)  # 100 ms of silence either side
    wave = np.concatenate([pad, 0.9 * wave / max(float(np.abs(wave).max()), 1e-4), pad])
    save_audio(out_path, wave)
    return len(wave) / SAMPLE_RATE


def plan(voices, sentences, eval_voices, eval_fraction, per_voice, seed):
    """``{split: [(voice, sentence index), ...]}``; each training voice reads a seeded subset."""
    eval_idx = [i for i, s in enumerate(sentences) if is_eval_sentence(s, eval_fraction)]
    held_out = set(eval_idx)
    train_idx = [i for i in range(len(sentences)) if i not in held_out]
    jobs = {"train": [], "eval": [], "eval_voices": []}
    for v in voices:
        if v.speaker in eval_voices:
            jobs["eval_voices"] += [(v, i) for i in eval_idx]
            continue
        rng = random.Random(f"{seed}:{v.speaker}")
        chosen = train_idx if per_voice <= 0 else sorted(rng.sample(train_idx, min(per_voice, len(train_idx))))
        jobs["train"] += [(v, i) for i in chosen]
        jobs["eval"] += [(v, i) for i in eval_idx]
    return jobs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--text", help="text file to read sentences from (instead of --source)")
    p.add_argument("--source", choices=SOURCES,
                   help="built-in sentences: stories (default), everyday, or mixed (both interleaved)")
    p.add_argument("--everyday-share", type=float, default=0.5,
                   help="with --source mixed: the share of everyday sentences (default 0.5)")
    p.add_argument("--max-sentences", type=int, default=400)
    p.add_argument("--per-voice", type=int, default=0, help="training sentences per voice (0: all)")
    p.add_argument("--voices", help="comma-separated speaker ids (default: all whose engine is installed)")
    p.add_argument("--eval-voices", default=",".join(EVAL_VOICES), help="speakers held out for evaluation")
    p.add_argument("--eval-fraction", type=float, default=0.05,
                   help="share of sentences held out from training in every voice (1: an evaluation set only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    return p.parse_args(argv)


@run_cli
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.text and args.source:
        raise UserError(f"give --text {args.text} or --source {args.source}, not both.")
    if not 0 < args.everyday_share < 1:
        raise UserError(f"--everyday-share {args.everyday_share} must lie strictly between 0 and 1.")
    by_name = {v.speaker: v for v in VOICES}
    if args.voices:
        names = [n.strip() for n in args.voices.split(",") if n.strip()]
        if unknown := [n for n in names if n not in by_name]:
            raise UserError(f"unknown voice(s) {', '.join(unknown)}: choose from {', '.join(by_name)}.")
        voices = [by_name[n] for n in names]
        check_engines(voices)
    else:  # every voice whose engine is here; say which engines are skipped
        voices = [v for v in VOICES if shutil.which(ENGINE_BINARY[v.engine])]
        for e in sorted({v.engine for v in VOICES} - {v.engine for v in voices}):
            print(f"note: {e} not installed (apt-get install -y {ENGINE_APT[e]}); its voices are skipped")
        check_engines(voices or list(VOICES))
    if not 0 < args.eval_fraction <= 1:
        raise UserError(f"--eval-fraction {args.eval_fraction} must lie in (0, 1]; 1 holds out every sentence.")
    source = args.source or "stories"
    sentences = load_sentences(args.text, args.max_sentences, args.seed, source, args.everyday_share)
    eval_voices = {n.strip() for n in args.eval_voices.split(",") if n.strip()}
    jobs = plan(voices, sentences, eval_voices, args.eval_fraction, args.per_voice, args.seed)
    out = Path(args.out)

    def run(job):
        voice, i = job
        path = out / "wavs" / voice.speaker / f"{voice.speaker}_{i:05d}.wav"
        if not path.is_file():
            synthesise(voice, sentences[i], path)
        return Utterance(path, sentences[i], voice.speaker)

    seconds: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for split, split_jobs in jobs.items():
            utts = list(pool.map(run, split_jobs))
            write_manifest(utts, out / f"{split}.jsonl")
            for u in utts:
                seconds[u.speaker] = seconds.get(u.speaker, 0.0) + sf.info(str(u.audio_path)).duration
            print(f"{split}: {len(utts)} utterances")
    minutes = {s: round(t / 60, 2) for s, t in sorted(seconds.items())}
    for s, m in minutes.items():
        print(f"  {s:<18} {m:7.2f} min{'  (held out)' if s in eval_voices else ''}")
    print(f"total {sum(minutes.values()):.1f} min over {len(minutes)} speakers, {len(sentences)} sentences")
    summary = {"seed": args.seed, "eval_fraction": args.eval_fraction, "sentences": len(sentences),
               "source": args.text or source, "everyday_share": args.everyday_share if source == "mixed" else None,
               "voices": [dataclasses.asdict(v) for v in voices], "eval_voices": sorted(eval_voices),
               "minutes_per_speaker": minutes, "sample_rate": SAMPLE_RATE}
    (out / "corpus.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    main()
