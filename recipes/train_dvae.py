"""Train the DVAE (log-mel -> audio tokens -> log-mel) on a speech manifest, through the shared trainer.

The story: read the corpus, compute per-channel mel statistics over training utterances (they
travel in the model's config), cut random segments of whole tokens (default 32 tokens = 32,768
samples), and let the shared :class:`~xtts_jax.train.trainer.Trainer` run a pure DVAE step:
masked MSE + 0.25 x commitment through the straight-through estimator, AdamW on the convs, then
the EMA codebook update and dead-code restarts (``xtts_jax.models.dvae.update_codebook``). Mel
L1 on held-out audio is the eval loss. At the end: held-out mel L1, codebook perplexity and usage
over the corpus's tokens, Griffin-Lim wavs of one held-out utterance (original mel and DVAE
reconstruction), and ``dvae.safetensors`` with its config for ``tools/encode_audio.py``.

    python recipes/train_dvae.py --data data/speech --preset xtts-v2 --steps 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from xtts_jax.audio.datasets import load_dataset
from xtts_jax.audio.io import load_audio, save_audio
from xtts_jax.audio.mel import compute_mel_stats, griffin_lim, log_mel, log_mel_jax
from xtts_jax.errors import UserError, run_cli
from xtts_jax.models.dvae import (
    DVAE, PRESETS, DVAEConfig, codebook_stats, dvae_loss, dvae_mel, save_dvae, update_codebook,
)
from xtts_jax.train.data import WaveSegments
from xtts_jax.train.optim import TrainConfig


@dataclasses.dataclass
class DVAETask:
    """A Task for the shared trainer: batches are waveforms ``[batch, samples]`` (a multiple of
    1,024 samples); mels are computed on device inside the step, so data stay one plain array."""

    config: DVAEConfig

    def init_model(self, key: jax.Array) -> DVAE:
        return DVAE(self.config, key)

    def to_dict(self) -> dict:
        return {"dvae": self.config.to_dict()}

    def tokens_in_batch(self, shape: tuple[int, ...]) -> int:
        """Audio tokens (one per ``downsample`` mel frames) in a waveform batch: the trainer's tokens/s."""
        return shape[0] * (shape[-1] // (self.config.mel.hop_length * self.config.downsample))

    def _mels(self, wave: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self.config
        frames = wave.shape[-1] // cfg.mel.hop_length  # drop the centred STFT's extra last frame
        mels = jax.vmap(lambda w: log_mel_jax(w, cfg.mel, cfg.mel_stats))(wave)[..., :frames]
        return mels, jnp.ones(mels.shape[::2], bool)

    def loss(self, model: DVAE, batch: jax.Array, key) -> tuple[jax.Array, dict]:
        """Eval: mel L1 in log-mel units is the loss the trainer tracks."""
        loss, aux = dvae_loss(model, *self._mels(batch))
        stats = codebook_stats(aux["codes"], aux["token_mask"], self.config.num_tokens)
        return aux["mel_l1"], {"loss": aux["mel_l1"], "objective": loss, **stats}

    def train_step(self, state: dict, batch: jax.Array, key: jax.Array, *, static, optimizer) -> tuple[dict, dict]:
        params = state["params"]
        mels, mask = self._mels(batch)
        (loss, aux), grads = jax.value_and_grad(
            lambda p: dvae_loss(eqx.combine(p, static), mels, mask), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        # The codebook follows its EMA, never the optimiser (whose weight decay would shrink it).
        book_model, stats = update_codebook(eqx.combine(params, static), aux, key)
        new_params = eqx.tree_at(lambda p: p.codebook, new_params, book_model.codebook)
        metrics = {"loss": loss, "recon": aux["recon"], "commit": aux["commit"], "mel_l1": aux["mel_l1"],
                   "grad_norm": optax.tree.norm(grads), **stats}
        new = {"params": new_params, "opt_state": opt_state, "step": state["step"] + 1, "key": state["key"]}
        return new, metrics


def data_sources(data: str | Path) -> list[Path]:
    """The comma-separated sources of ``--data`` (corpus folders, manifests, dataset folders)."""
    sources = [Path(part.strip()) for part in str(data).split(",") if part.strip()]
    if not sources:
        raise UserError(f"--data {str(data)!r} names no corpus")
    return sources


def load_splits(data: str | Path, eval_data: Path | None, seed: int) -> tuple[list, list]:
    """Training and held-out utterances of every source in ``data`` (comma-separated): a corpus
    folder's ``train.jsonl`` / ``eval.jsonl``, or any dataset (LJSpeech, LibriTTS, VCTK, a manifest)
    with a seeded 2% held out of it; ``eval_data``, when given, is the held-out set instead. Several
    sources' training utterances come in one seeded order, so the first ones (the mel statistics, the
    codebook usage) draw on every source."""
    train, held = [], []
    sources = data_sources(data)
    for source in sources:
        if source.is_dir() and (source / "train.jsonl").is_file():
            train += load_dataset(source / "train.jsonl")[0]
            if eval_data is None:
                held += load_dataset(source / "eval.jsonl")[0]
            continue
        utts, _ = load_dataset(source)
        if eval_data is not None:
            train += utts
            continue
        order = np.random.default_rng(seed).permutation(len(utts))
        n_held = max(1, len(utts) // 50)
        held += [utts[i] for i in sorted(order[:n_held])]
        train += [utts[i] for i in sorted(order[n_held:])]
    if eval_data is not None:
        held, _ = load_dataset(eval_data)
    if len(sources) > 1:
        train = [train[i] for i in np.random.default_rng(seed).permutation(len(train))]
    for name, utts in (("training", train), ("held-out", held)):
        if not utts:
            raise UserError(f"no usable {name} utterances in {eval_data if name == 'held-out' and eval_data else data}.")
    return train, held


def load_waves(utts: list, sample_rate: int, limit: int | None, seed: int) -> list[np.ndarray]:
    """Decoded audio of ``utts``, or of a seeded subset of ``limit`` (not just the first speaker)."""
    if limit is not None and limit < len(utts):
        idx = np.random.default_rng(seed).choice(len(utts), limit, replace=False)
        utts = [utts[i] for i in sorted(idx)]
    return [load_audio(u.audio_path, sample_rate) for u in utts]


def corpus_metrics(model: DVAE, waves: list[np.ndarray]) -> dict:
    """Mel L1 (log-mel units) of full utterances and codebook perplexity / usage over their tokens."""
    cfg = model.cfg
    run = eqx.filter_jit(lambda m, x: m(x)[:2])
    l1, all_codes = [], []
    for w in waves:
        mel = dvae_mel(w, cfg, bucket_tokens=16)  # padded to few shapes: few compiles
        recon, codes = run(model, jnp.asarray(mel))
        n = cfg.mel.n_frames(len(w))
        err = np.abs(np.asarray(recon) - mel)[:, :n]
        if cfg.mel_stats is not None:
            err = err * cfg.mel_stats.arrays()[1]
        l1.append(err.mean())
        all_codes.append(np.asarray(codes)[: cfg.n_tokens(len(w))])
    codes = jnp.asarray(np.concatenate(all_codes))
    stats = codebook_stats(codes, jnp.ones_like(codes, bool), cfg.num_tokens)
    return {"mel_l1": float(np.mean(l1)), "perplexity": float(stats["perplexity"]),
            "usage": float(stats["usage"]), "tokens": int(codes.size), "utterances": len(waves)}


def write_listening_samples(model: DVAE, wave: np.ndarray, out_dir: str, n_iter: int = 32) -> dict:
    """Griffin-Lim of one utterance's own mel and of its DVAE reconstruction, next to the original;
    with the mel L1 (log-mel units) of each re-synthesis against the original audio."""
    cfg = model.cfg
    mel = dvae_mel(wave, cfg)
    recon = np.asarray(eqx.filter_jit(lambda m, x: m(x)[0])(model, jnp.asarray(mel)))
    reference = log_mel(wave, cfg.mel)
    out = {"original": str(save_audio(os.path.join(out_dir, "original.wav"), wave, cfg.mel.sample_rate))}
    for name, m in (("griffin_lim_mel", mel), ("griffin_lim_dvae", recon)):
        w = griffin_lim(m, cfg.mel, n_iter=n_iter, stats=cfg.mel_stats, length=len(wave))
        out[name] = str(save_audio(os.path.join(out_dir, f"{name}.wav"), w, cfg.mel.sample_rate))
        out[name + "_mel_l1"] = float(np.abs(log_mel(w, cfg.mel) - reference).mean())
    return out


@run_cli
def main(argv: list[str] | None = None) -> int:
    from xtts_jax.train.trainer import Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True,
                    help="corpus dir (train.jsonl, eval.jsonl), a manifest, or an LJSpeech/LibriTTS/VCTK folder; "
                    "several, comma-separated, are trained on together")
    ap.add_argument("--eval-data", type=Path, help="held-out manifest (default: each corpus's eval.jsonl, else 2%% of each source)")
    ap.add_argument("--eval-voices-data", type=Path,
                    help="held-out voices, scored at the end (default: DATA/eval_voices.jsonl when present)")
    ap.add_argument("--out", default="runs/dvae")
    ap.add_argument("--preset", default="xtts-v2", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--segment-tokens", type=int, default=32, help="segment length in tokens (1,024 samples each)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-utterances", type=int, default=50)
    ap.add_argument("--max-utterances", type=int, help="load at most this many training utterances")
    ap.add_argument("--usage-utterances", type=int, default=300,
                    help="training utterances whose tokens give the final codebook usage and perplexity")
    ap.add_argument("--stats-utterances", type=int, default=200, help="utterances for the mel statistics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    base = PRESETS[args.preset]
    segment = args.segment_tokens * base.mel.hop_length * base.downsample
    train_utts, held_utts = load_splits(args.data, args.eval_data, args.seed)
    train = load_waves(train_utts, base.mel.sample_rate, args.max_utterances, args.seed)
    held = load_waves(held_utts, base.mel.sample_rate, args.eval_utterances, args.seed + 1)
    stats = compute_mel_stats(log_mel(w, base.mel) for w in train[: args.stats_utterances])
    task = DVAETask(dataclasses.replace(base, mel_stats=stats))
    # As Tortoise's DVAE training: AdamW, lr 3e-4, weight decay 0.01; short warmup, cosine to lr/10.
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(500, args.steps // 10), weight_decay=0.01, betas=(0.9, 0.99),
                      grad_clip=1.0, eval_every=args.eval_every, eval_steps=4, ckpt_every=args.eval_every,
                      log_every=max(1, min(50, args.steps // 10)), seed=args.seed, out_dir=args.out)
    trainer = Trainer(task, cfg, train_data=WaveSegments(train, cfg.batch_size, segment, args.seed),
                      eval_data=WaveSegments(held, cfg.batch_size, segment, args.seed + 1),
                      meta={"recipe": "train_dvae"})
    result = trainer.fit(resume=args.resume)
    model = trainer.model(result["state"]["params"])
    save_dvae(model, os.path.join(args.out, "dvae.safetensors"))
    scores = {"heldout": corpus_metrics(model, held),
              "train": corpus_metrics(model, train[: args.usage_utterances])}
    voices = ([args.eval_voices_data] if args.eval_voices_data else
              [d / "eval_voices.jsonl" for d in data_sources(args.data) if d.is_dir()])
    voice_utts = [u for v in voices if v.is_file() for u in load_dataset(v)[0]]
    if voice_utts:  # a corpus without held-out voices writes an empty eval_voices.jsonl
        scores["heldout_voices"] = corpus_metrics(
            model, load_waves(voice_utts, base.mel.sample_rate, args.eval_utterances, args.seed + 2))
    scores["samples"] = write_listening_samples(model, held[0], os.path.join(args.out, "samples"))
    with open(os.path.join(args.out, "heldout.json"), "w") as f:
        json.dump(scores, f, indent=2)
    print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    main()
