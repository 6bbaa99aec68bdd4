"""Train the code recogniser (``models/recognizer.py``) that picks the best of several sampled
candidates, through the shared trainer.

The story: read the token files ``tools/encode_audio.py`` wrote (STEM.bin + STEM.jsonl), read each
sentence with the generator's own tokenizer (``--tts``: its phonemes), keep the spoken tokens in
order as CTC labels for the utterance's real DVAE codes, and minimise the CTC loss per label on
length-bucketed batches. At the end: ``recognizer.safetensors`` (config in its metadata) and the
held-out token error rate of its best-path reading, so

    python tools/pack_model.py ... --recognizer OUT/recognizer.safetensors --candidates 4

ships it beside the generator. A batch row is float32 (ids are exact in float32):
``[code_len, label_len, codes..., labels...]`` with labels padded to ``--label-width``.

    python recipes/train_recognizer.py --tokens data/broad/tokens/train --steps 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.errors import UserError, run_cli
from xtts_jax.inference import tts as pipeline
from xtts_jax.models import recognizer as rec
from xtts_jax.models.alignment import spoken_tokens
from xtts_jax.train.optim import TrainConfig
from xtts_jax.train.sharding import devices_per_cpu_core
from xtts_jax.train.trainer import Trainer

TTS_DEMO = Path(__file__).resolve().parents[1] / "xtts_jax" / "assets" / "tts_demo" / "tts.safetensors"


def load_utterances(stems: list[str], tts_cfg, limit: int | None = None,
                    spell_fraction: float = 0.0) -> tuple[list[list[int]], list[list[int]]]:
    """(codes, labels) of every utterance of the stems whose codes can hold its labels under CTC
    (one frame per label, one more between repeats); ``limit`` utterances from each stem.
    ``spell_fraction``: the share of words read as letters, as the generator's training reads them
    (so a recogniser that aligns its training text knows the letters' sounds)."""
    spoken = spoken_tokens(tts_cfg)
    codes_out, labels_out = [], []
    for stem in stems:
        if not Path(stem + ".jsonl").is_file() or not Path(stem + ".bin").is_file():
            raise UserError(f"token files {stem}.jsonl / {stem}.bin do not exist; write them with tools/encode_audio.py")
        codes = np.fromfile(stem + ".bin", np.uint16)
        for line in open(stem + ".jsonl").readlines()[:limit]:
            r = json.loads(line)
            try:
                rng = np.random.default_rng([len(codes_out), 4321]) if spell_fraction else None
                text = (pipeline.text_tokens(r["text"], tts_cfg, spell_fraction=spell_fraction, rng=rng)
                        if r["text"].strip() else [])
            except UserError:  # a sentence the generator cannot read is no training example
                continue
            labels = [t for t in text if spoken[t]]
            c = codes[r["offset"]: r["offset"] + r["length"]].tolist()
            need = len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))
            if labels and len(c) >= need and max(c) < tts_cfg.num_audio_codes:
                codes_out.append(c)
                labels_out.append(labels)
    if not codes_out:
        raise UserError(f"{', '.join(stems)} hold no utterance the recogniser can train on")
    return codes_out, labels_out


def _round16(n: int) -> int:
    """``n`` rounded up to a multiple of 16: few padded widths, so few compiled step programs."""
    return -(-n // 16) * 16


class Batches:
    """Rows for a step, pure in (seed, step): one of ``buckets`` length buckets drawn uniformly,
    codes padded to the bucket's longest (a multiple of 16), labels to ``label_width``."""

    def __init__(self, codes, labels, batch_size: int, seed: int, label_width: int, buckets: int = 8):
        self.codes, self.labels, self.batch_size, self.seed, self.label_width = codes, labels, batch_size, seed, label_width
        order = np.argsort([len(c) for c in codes], kind="stable")
        self.buckets = [b for b in np.array_split(order, max(1, min(buckets, len(order) // batch_size))) if len(b)]
        self.widths = [_round16(max(len(codes[i]) for i in b)) for b in self.buckets]

    def __call__(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        b = int(rng.integers(len(self.buckets)))
        idx = self.buckets[b][rng.integers(0, len(self.buckets[b]), self.batch_size)]
        codes, code_len = rec.pad_rows([self.codes[i] for i in idx], self.widths[b])
        labels, label_len = rec.pad_rows([self.labels[i] for i in idx], self.label_width)
        rows = np.concatenate([code_len[:, None], label_len[:, None], codes, labels], axis=1).astype(np.float32)
        share = self.batch_size // jax.process_count()
        return rows[jax.process_index() * share:(jax.process_index() + 1) * share]


@dataclasses.dataclass
class RecognizerTask:
    config: rec.RecognizerConfig
    label_width: int

    def init_model(self, key: jax.Array) -> rec.CodeRecognizer:
        return rec.CodeRecognizer(self.config, key=key)

    def to_dict(self) -> dict:
        return {"recognizer": self.config.to_dict(), "label_width": self.label_width}

    def tokens_in_batch(self, shape: tuple[int, ...]) -> int:
        return shape[0] * (shape[1] - 2 - self.label_width)  # code positions, padding included

    def loss(self, model: rec.CodeRecognizer, batch: jax.Array, key) -> tuple[jax.Array, dict]:
        ints = lambda a: jnp.round(a).astype(jnp.int32)  # noqa: E731
        width = batch.shape[1] - 2 - self.label_width
        per_label = rec.ctc_per_label(model, ints(batch[:, 2:2 + width]), ints(batch[:, 0]),
                                      ints(batch[:, 2 + width:]), ints(batch[:, 1]))
        loss = jnp.mean(per_label)
        return loss, {"loss": loss}


def token_error_rate(model: rec.CodeRecognizer, codes, labels, batch_size: int = 64) -> float:
    """Edits of the best-path readings over all reference labels (jiwer on the id sequences)."""
    import jiwer

    forward = jax.jit(jax.vmap(model))
    refs, hyps = [], []
    for b in range(0, len(codes), batch_size):
        c, n = rec.pad_rows(codes[b:b + batch_size], _round16(max(map(len, codes[b:b + batch_size]))))
        logp = np.asarray(forward(jnp.asarray(c), jnp.asarray(n)))
        for row, length, ref in zip(logp, n, labels[b:b + batch_size]):
            refs.append(" ".join(map(str, ref)))
            hyps.append(" ".join(map(str, rec.greedy_labels(row, int(length), model.config.blank))))
    return float(jiwer.wer(refs, hyps))


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", required=True, help="token file stems from tools/encode_audio.py, separated by commas")
    ap.add_argument("--eval-tokens", help="held-out stems (default: eval beside each --tokens stem)")
    ap.add_argument("--tts", default=str(TTS_DEMO), help="the generator whose text tokens are the labels "
                    "(default: the shipped model)")
    ap.add_argument("--n-embd", type=int, default=rec.RecognizerConfig.n_embd)
    ap.add_argument("--n-layer", type=int, default=rec.RecognizerConfig.n_layer)
    ap.add_argument("--kernel-size", type=int, default=rec.RecognizerConfig.kernel_size)
    ap.add_argument("--out", default="runs/recognizer")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--length-buckets", type=int, default=8)
    ap.add_argument("--max-utterances", type=int, help="load at most this many utterances of each stem")
    ap.add_argument("--spell-fraction", type=float, default=0.0,
                    help="share of training words read as letters (tools/align_tokens.py aligns text spelled so)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    if argv is None:  # a command-line run owns its process: one JAX device per CPU core
        devices_per_cpu_core(args.batch_size)
    stems = [s.strip() for s in args.tokens.split(",") if s.strip()]
    if not stems:
        raise UserError(f"--tokens {args.tokens!r} names no token files")
    eval_stems = ([s.strip() for s in args.eval_tokens.split(",") if s.strip()] if args.eval_tokens
                  else sorted({str(Path(s).with_name("eval")) for s in stems}))
    if args.steps < 1 or args.batch_size < 1 or args.length_buckets < 1:
        raise UserError("--steps, --batch-size and --length-buckets must be at least 1")
    tts_cfg = pipeline.load_tts(args.tts).config
    cfg = rec.RecognizerConfig(num_audio_codes=tts_cfg.num_audio_codes, num_labels=tts_cfg.text_vocab_size,
                               n_embd=args.n_embd, n_layer=args.n_layer, kernel_size=args.kernel_size)
    if not 0 <= args.spell_fraction < 1:
        raise UserError(f"--spell-fraction {args.spell_fraction} must lie in [0, 1)")
    train = load_utterances(stems, tts_cfg, args.max_utterances, args.spell_fraction)
    held = load_utterances(eval_stems, tts_cfg)
    label_width = _round16(max(map(len, train[1] + held[1])))
    print(f"{len(train[0])} training and {len(held[0])} held-out utterances; labels <= {label_width}")

    task = RecognizerTask(cfg, label_width)
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                       warmup_steps=args.warmup_steps, eval_every=args.eval_every, eval_steps=4,
                       ckpt_every=args.ckpt_every, sample_every=0, seed=args.seed, out_dir=args.out)
    trainer = Trainer(task, tcfg, train_data=Batches(*train, args.batch_size, args.seed, label_width, args.length_buckets),
                      eval_data=Batches(*held, args.batch_size, args.seed + 1, label_width, args.length_buckets))
    result = trainer.fit(resume=args.resume)
    model = trainer.model(result["state"]["params"])
    ter = token_error_rate(model, *held)
    path = Path(args.out) / "recognizer.safetensors"
    rec.save_recognizer(model, str(path), {"val_loss": result.get("val_loss"), "token_error_rate": ter,
                                           "steps": args.steps, "text_tokenizer": tts_cfg.tokenizer})
    print(f"held-out CTC loss per label {result.get('val_loss')}, token error rate {ter:.3f}; wrote {path}")
    return 0


if __name__ == "__main__":
    main()
