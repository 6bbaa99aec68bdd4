"""Forced alignment of token files: which spoken text token each audio code belongs to.

    python tools/align_tokens.py --checkpoint runs/ctc/tts.safetensors \
        --tokens data/pilot/tokens/train,data/pilot/tokens/eval
    python tools/align_tokens.py --recognizer runs/recognizer/recognizer.safetensors \
        --tts <a phoneme generator, for its tokenizer> --tokens ...

Reads token files (tools/encode_audio.py) and one of two readers of the phonemes in the codes: a
generator trained with the CTC aid (``recipes/train_tts.py --ctc-weight``: its head reads the
phonemes being spoken from the audio latents, run teacher-forced on every utterance), or a code
recogniser (``recipes/train_recognizer.py``: CTC straight from the codes, minutes to train, so a
generator can start on alignments without a first generator). Takes the most probable CTC path of
the sentence's spoken tokens through the reader's posteriors (``alignment.ctc_forced_align``). Writes
STEM.align.jsonl beside each STEM: one line per aligned utterance, ``{"row": line of STEM.jsonl,
"text": text ids, "pointer": text index per audio position}`` (``pointer.pointer_from_frames``),
which ``recipes/train_tts.py --text-pointer`` trains on. The text is tokenized as training
tokenizes it (``--spell-fraction`` of the words spelled as letters), and the alignment file keeps
it, so the pointer and the text cannot disagree. Utterances with fewer codes than spoken tokens
cannot be aligned and are left out (counted).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TTS_DEMO = ROOT / "xtts_jax" / "assets" / "tts_demo" / "tts.safetensors"

from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference import tts as pipeline  # noqa: E402
from xtts_jax.train.tts_data import load_split  # noqa: E402
from xtts_jax.models import recognizer as rec  # noqa: E402
from xtts_jax.models.alignment import ctc_forced_align, spoken_tokens  # noqa: E402
from xtts_jax.models.pointer import pointer_from_frames  # noqa: E402


def ctc_log_probs(model, split, batch_size: int = 16):
    """Per utterance of ``split``, the CTC head's log-probabilities [codes, text_vocab + 1] at the
    positions that predict the codes (the audio start .. the last code but one)."""
    n = len(split.text)
    order = np.argsort([len(t) * 1000 + len(a) for t, a in zip(split.text, split.audio)])
    out: list[np.ndarray | None] = [None] * n

    @jax.jit
    def run(mel, text, text_len, audio, audio_len):
        def one(m, t, tl, a, al):
            latents = model(model.conditioner(m), t, a, tl, al).latents
            return jax.nn.log_softmax(model.head(latents, model.ctc_head), -1)

        return jax.vmap(one)(mel, text, text_len, audio, audio_len)

    round32 = lambda x: -(-x // 32) * 32  # noqa: E731  (few shapes: few compiles)
    for lo in range(0, n, batch_size):
        idx = order[lo:lo + batch_size]
        tw, aw = round32(max(len(split.text[i]) for i in idx)), round32(max(len(split.audio[i]) for i in idx))
        pad = batch_size - len(idx)
        text = np.zeros((batch_size, tw), np.int32)
        audio = np.zeros((batch_size, aw), np.int32)
        for r, i in enumerate(idx):
            text[r, :len(split.text[i])], audio[r, :len(split.audio[i])] = split.text[i], split.audio[i]
        lens_t = np.array([len(split.text[i]) for i in idx] + [1] * pad, np.int32)
        lens_a = np.array([len(split.audio[i]) for i in idx] + [1] * pad, np.int32)
        mel = split.ref_mel[np.concatenate([idx, np.repeat(idx[:1], pad)])]
        lp = np.asarray(run(jnp.asarray(mel), jnp.asarray(text), jnp.asarray(lens_t), jnp.asarray(audio),
                            jnp.asarray(lens_a)))
        for r, i in enumerate(idx):
            out[i] = lp[r, : len(split.audio[i]) - 2]  # positions 0..n-1 predict codes 1..n
    return out


def recognizer_log_probs(model: rec.CodeRecognizer, split, batch_size: int = 64):
    """Per utterance of ``split``, the code recogniser's log-probabilities [codes, labels + 1]."""
    codes = [a[1:-1] for a in split.audio]  # without the start and stop tokens
    order = np.argsort([len(c) for c in codes])
    forward = jax.jit(jax.vmap(model))
    out: list[np.ndarray | None] = [None] * len(codes)
    for lo in range(0, len(codes), batch_size):
        idx = order[lo:lo + batch_size]
        rows = [codes[i] for i in idx] + [codes[idx[0]]] * (batch_size - len(idx))  # one batch shape
        c, n = rec.pad_rows(rows, -(-max(map(len, rows)) // 32) * 32)
        lp = np.asarray(forward(jnp.asarray(c), jnp.asarray(n)))
        for r, i in enumerate(idx):
            out[i] = lp[r, :len(codes[i])]
    return out


def align_split(log_probs, split, cfg) -> tuple[list[list[int]], int]:
    """(pointer per utterance, or [] where the codes are too few for the spoken tokens; how many)."""
    spoken = spoken_tokens(cfg)
    pointers, failed = [], 0
    for text, lp in zip(split.text, log_probs):
        text = np.asarray(text)
        try:
            frames, _ = ctc_forced_align(lp, text[spoken[text]], blank=cfg.text_vocab_size)
        except ValueError:
            pointers.append([])
            failed += 1
            continue
        pointers.append(pointer_from_frames(text, spoken, frames).tolist())
    return pointers, failed


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    reader = ap.add_mutually_exclusive_group(required=True)
    reader.add_argument("--checkpoint", help="a tts.safetensors trained with --ctc-weight (a CTC head)")
    reader.add_argument("--recognizer", help="a recognizer.safetensors (recipes/train_recognizer.py)")
    ap.add_argument("--tts", default=str(TTS_DEMO), help="with --recognizer: the phoneme generator whose tokenizer "
                    "the recogniser was trained on (default: the shipped model)")
    ap.add_argument("--tokens", required=True, help="token file stems (STEM.bin, STEM.jsonl), comma-separated")
    ap.add_argument("--spell-fraction", type=float, default=0.05,
                    help="share of words spelled as letters, as recipes/train_tts.py (training stems; 0 for held-out)")
    ap.add_argument("--limit", type=int, help="align at most this many utterances of each stem")
    args = ap.parse_args(argv)
    if not 0 <= args.spell_fraction < 1:
        raise UserError(f"--spell-fraction {args.spell_fraction} must lie in [0, 1)")
    if args.checkpoint:
        model = pipeline.load_tts(args.checkpoint)  # a missing or broken file is one sentence
        cfg = model.config
        if model.ctc_head is None or cfg.tokenizer != "phonemes":
            raise UserError(f"{args.checkpoint} has no CTC head over phonemes; train one with recipes/train_tts.py "
                            f"--text-vocab phonemes --ctc-weight 0.2")
        read = lambda split: ctc_log_probs(model, split)  # noqa: E731
    else:
        recognizer = rec.load_recognizer(args.recognizer)
        # the generator's tokenizer and sizes, read as plain text (no alignments needed to load)
        cfg = dataclasses.replace(pipeline.load_tts(args.tts).config, text_pointer=False)
        if (cfg.tokenizer != "phonemes" or recognizer.config.num_labels != cfg.text_vocab_size
                or recognizer.config.num_audio_codes != cfg.num_audio_codes):
            raise UserError(f"{args.recognizer} reads {recognizer.config.num_audio_codes} codes into "
                            f"{recognizer.config.num_labels} labels; {args.tts} has {cfg.num_audio_codes} codes and a "
                            f"{cfg.tokenizer} vocabulary of {cfg.text_vocab_size}: train the recogniser with --tts {args.tts}")
        read = lambda split: recognizer_log_probs(recognizer, split)  # noqa: E731
    mel = cfg.conditioning.mel_config if args.checkpoint else None
    for stem in [s.strip() for s in args.tokens.split(",") if s.strip()]:
        t0, rows = time.perf_counter(), []
        ref_frames = mel.n_frames(3 * mel.sample_rate) if args.checkpoint else 0
        split = load_split(stem, cfg, ref_frames, args.limit, None, "en", args.spell_fraction, rows_out=rows,
                           ref_mel=bool(args.checkpoint))  # the recogniser reads the codes alone
        pointers, failed = align_split(read(split), split, cfg)
        with open(stem + ".align.jsonl", "w") as f:
            for row, text, ptr in zip(rows, split.text, pointers):
                if ptr:
                    f.write(json.dumps({"row": row, "text": [int(t) for t in text], "pointer": ptr}) + "\n")
        frames = sum(len(p) - 2 for p in pointers if p)
        tokens = sum(len(set(p[:-2])) for p in pointers if p)
        print(f"{stem}.align.jsonl: {len(split.text) - failed} of {len(split.text)} utterances aligned "
              f"({failed} too short for their text); {frames / max(tokens, 1):.2f} codes per spoken token; "
              f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    main()
