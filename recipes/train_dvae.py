"""Train the DVAE (log-mel -> audio tokens -> log-mel) on a speech manifest, through the shared trainer.

The story: read the corpus, compute per-channel mel statistics over training utterances (they
travel in the model's config), cut random segments of whole tokens (default 32 tokens = 32,768
samples), and let the shared :class:`~xtts_jax.train.trainer.Trainer` run a pure DVAE step:
masked MSE + 0.25 x commitment through the straight-through estimator, AdamW on the convs, then
the EMA codebook update and dead-code restarts (``xtts_jax.models.dvae.update_codebook``). Mel
L1 on held-out audio is the eval loss. At the end: held-out mel L1, codebook perplexity and usage
over the corpus's tokens, Griffin-Lim wavs of one held-out utterance (original mel and DVAE
reconstruction), and ``dvae.safetensors`` with its config for ``tools/encode_audio.py``.

``--init DVAE --decoder-speaker`` trains a speaker-conditioned decoder on a trained DVAE instead:
its encoder and codebook stay frozen (the codes, and a generator trained on them, stay valid), and
the decoder learns to read :func:`~xtts_jax.models.dvae.reference_features` of another recording of
the segment's speaker. Half the segments (and their references, alike) pass through a random
voice change, a warp of the mel axis and a spectral tilt, so the decoder sees many more voices
than the corpus has and must take their timbre from the reference. (``--codes-from original``
takes a changed segment's codes from the voice before the change, so the decoder must turn one
voice into another; it cloned the unheard voices less well: docs/default_model.)

    python recipes/train_dvae.py --data data/speech --preset xtts-v2 --steps 20000
    python recipes/train_dvae.py --data data/speech --init runs/dvae/dvae.safetensors --decoder-speaker \
        --steps 3000 --out runs/dvae_speaker
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
    DVAE, PRESETS, DVAEConfig, codebook_stats, dvae_loss, dvae_mel, load_dvae, nearest_code, reference_features,
    save_dvae, update_codebook, voice_means, with_reference_voices,
)
from xtts_jax.train.data import WaveSegments, WaveSegmentsWithReference
from xtts_jax.train.optim import TrainConfig, make_optimizer


@dataclasses.dataclass
class DVAETask:
    """A Task for the shared trainer: batches are waveforms ``[batch, samples]`` (a multiple of
    1,024 samples); mels are computed on device inside the step, so data stay one plain array."""

    config: DVAEConfig
    init: DVAE | None = None  # a trained DVAE to start from (its encoder and codebook kept)
    voice_warp: float = 0.1  # speaker decoder: the mel axis is scaled by 1 +- up to this
    voice_tilt: float = 1.0  # and tilted by up to this many nats from the lowest to the highest mel
    reference_dropout: float = 0.1  # share of segments whose decoder gets no reference
    codes_from: str = "changed"  # a changed segment's codes: of the "changed" voice or the "original"

    def init_model(self, key: jax.Array) -> DVAE:
        model = DVAE(self.config, key)
        if self.init is not None:
            model = eqx.tree_at(lambda m: (m.encoder, m.decoder, m.codebook), model,
                                (self.init.encoder, self.init.decoder, self.init.codebook))
        return model

    @property
    def speaker(self) -> bool:
        """Training the speaker-conditioned decoder of a frozen encoder and codebook."""
        return self.config.decoder_speaker

    def optimizer(self, cfg: TrainConfig, model: DVAE, logical=None) -> optax.GradientTransformation:
        """AdamW on every weight; for the speaker decoder, only the decoder's and its FiLM's (the
        frozen weights also get no weight decay)."""
        opt = make_optimizer(cfg, model, logical)
        if not self.speaker:
            return opt
        params = eqx.filter(model, eqx.is_array)
        frozen = jax.tree.map(lambda _: True, params)
        frozen = eqx.tree_at(lambda m: (m.decoder, m.speaker_film), frozen,
                             replace_fn=lambda sub: jax.tree.map(lambda _: False, sub))
        return optax.chain(opt, optax.masked(optax.set_to_zero(), frozen))

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

    def _speaker_inputs(self, batch: jax.Array, key: jax.Array | None
                        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Source mels (what the codes are taken from), target mels, mask and reference features of
        a :class:`WaveSegmentsWithReference` batch. With a ``key`` (training) the voice changes and
        the reference dropout are drawn; a changed segment's codes come from the changed voice, or
        with ``codes_from="original"`` from the voice before the change (the decoder must then
        turn them into the changed one from its reference alone)."""
        width = self.config.speaker_dim
        mels, mask = self._mels(batch[:, :-width])
        source, feats = mels, batch[:, -width:]
        if key is not None:
            k_on, k_warp, k_tilt, k_drop = jax.random.split(key, 4)
            n = batch.shape[0]
            on = jax.random.bernoulli(k_on, 0.5, (n,))
            alpha = jnp.where(on, 1 + jax.random.uniform(k_warp, (n,), minval=-1, maxval=1) * self.voice_warp, 1.0)
            tilt = jnp.where(on, jax.random.uniform(k_tilt, (n,), minval=-1, maxval=1) * self.voice_tilt, 0.0)
            mels, feats = jax.vmap(lambda m, f, a, t: change_voice(m, f, a, t, self.config))(mels, feats, alpha, tilt)
            feats = jnp.where(jax.random.bernoulli(k_drop, self.reference_dropout, (n, 1)), 0.0, feats)
            if self.codes_from == "changed":
                source = mels
        return source, mels, mask, feats

    def loss(self, model: DVAE, batch: jax.Array, key) -> tuple[jax.Array, dict]:
        """Eval: mel L1 in log-mel units is the loss the trainer tracks."""
        if self.speaker:
            loss, aux = speaker_decoder_loss(model, *self._speaker_inputs(batch, None))
            return aux["mel_l1"], {"loss": aux["mel_l1"], "objective": loss}
        loss, aux = dvae_loss(model, *self._mels(batch))
        stats = codebook_stats(aux["codes"], aux["token_mask"], self.config.num_tokens)
        return aux["mel_l1"], {"loss": aux["mel_l1"], "objective": loss, **stats}

    def train_step(self, state: dict, batch: jax.Array, key: jax.Array, *, static, optimizer) -> tuple[dict, dict]:
        params = state["params"]
        if self.speaker:
            inputs = self._speaker_inputs(batch, key)
            (loss, aux), grads = jax.value_and_grad(
                lambda p: speaker_decoder_loss(eqx.combine(p, static), *inputs), has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, state["opt_state"], params)
            new = {"params": optax.apply_updates(params, updates), "opt_state": opt_state,
                   "step": state["step"] + 1, "key": state["key"]}
            return new, {"loss": loss, "mel_l1": aux["mel_l1"], "grad_norm": optax.tree.norm(grads)}
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


def change_voice(mel: jax.Array, feats: jax.Array, alpha: jax.Array, tilt: jax.Array, cfg: DVAEConfig
                 ) -> tuple[jax.Array, jax.Array]:
    """A random new voice for one normalised mel ``[n_mels, frames]`` and its reference features
    alike: the plain log-mel's channel axis read at ``alpha`` times each channel (a vocal tract of
    another length, as VTLP) and a spectral tilt of ``tilt`` nats from the lowest to the highest
    channel; ``alpha`` 1 and ``tilt`` 0 change nothing."""
    n = cfg.n_mels
    mean, std = (jnp.asarray(a[:, 0]) for a in cfg.mel_stats.arrays())
    src = jnp.clip(jnp.arange(n) * alpha, 0, n - 1)
    lo = jnp.floor(src).astype(jnp.int32)
    hi, w = jnp.minimum(lo + 1, n - 1), src - lo

    def remap(x):  # along the first (channel) axis
        wb = w.reshape((n,) + (1,) * (x.ndim - 1))
        return x[lo] * (1 - wb) + x[hi] * wb

    slope = tilt * (jnp.arange(n) / (n - 1) - 0.5)
    plain = remap(mel * std[:, None] + mean[:, None]) + slope[:, None]
    f_mean = remap(feats[:n] * std + mean) + slope
    f_std = remap(feats[n:] * std)
    return (plain - mean[:, None]) / std[:, None], jnp.concatenate([(f_mean - mean) / std, f_std / std])


def speaker_decoder_loss(model: DVAE, source: jax.Array, mels: jax.Array, frame_mask: jax.Array, feats: jax.Array
                         ) -> tuple[jax.Array, dict]:
    """Masked MSE against ``mels`` of the speaker-conditioned decoder given ``feats`` and the frozen
    encoder's codes of ``source``."""
    z = jax.lax.stop_gradient(jax.vmap(model.encode_latents)(source))
    embed = jax.lax.stop_gradient(model.codebook.embed)
    q = embed[jax.vmap(lambda zz: nearest_code(embed, zz))(z)]
    recon = jax.vmap(model.decode_latents)(q, feats)
    fmask = frame_mask[:, None, :].astype(jnp.float32)
    err = recon - mels
    denom = jnp.maximum(fmask.sum() * model.cfg.n_mels, 1)
    scale = jnp.asarray(model.cfg.mel_stats.arrays()[1])
    mel_l1 = jnp.sum(jnp.abs(err) * scale * fmask) / denom
    return jnp.sum(err * err * fmask) / denom, {"mel_l1": mel_l1}


def utterance_features(waves: list[np.ndarray], cfg: DVAEConfig) -> np.ndarray:
    """:func:`reference_features` of each utterance alone, ``[utterances, 2 * n_mels]``."""
    return np.stack([reference_features([log_mel(w, cfg.mel, cfg.mel_stats)], cfg) for w in waves])


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


def subset(utts: list, limit: int | None, seed: int) -> list:
    """``utts``, or a seeded subset of ``limit`` of them (not just the first speaker's)."""
    if limit is not None and limit < len(utts):
        idx = np.random.default_rng(seed).choice(len(utts), limit, replace=False)
        utts = [utts[i] for i in sorted(idx)]
    return utts


def load_waves(utts: list, sample_rate: int) -> list[np.ndarray]:
    """Decoded audio of ``utts``."""
    return [load_audio(u.audio_path, sample_rate) for u in utts]


def corpus_metrics(model: DVAE, waves: list[np.ndarray], speakers: list[str] | None = None) -> dict:
    """Mel L1 (log-mel units) of full utterances and codebook perplexity / usage over their tokens.
    A speaker-conditioned decoder given ``speakers`` reads the features of the next utterance of
    the same speaker (the utterance itself when its speaker has no other)."""
    cfg = model.cfg
    feats = [None] * len(waves)
    if cfg.decoder_speaker and speakers is not None:
        own = utterance_features(waves, cfg)
        for i, s in enumerate(speakers):
            same = [j for j in range(len(waves)) if speakers[j] == s]
            feats[i] = jnp.asarray(own[same[(same.index(i) + 1) % len(same)]])

    @eqx.filter_jit
    def run(m, x, f):
        codes = m.encode(x)
        return m.decode(codes, f), codes

    l1, all_codes = [], []
    for w, f in zip(waves, feats):
        mel = dvae_mel(w, cfg, bucket_tokens=16)  # padded to few shapes: few compiles
        recon, codes = run(model, jnp.asarray(mel), f)
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
    ap.add_argument("--init", help="start from this trained dvae.safetensors (its config and mel statistics; "
                    "--preset is ignored)")
    ap.add_argument("--decoder-speaker", action="store_true",
                    help="with --init: train a speaker-conditioned decoder on its frozen encoder and codebook")
    ap.add_argument("--voice-warp", type=float, default=0.1, help="speaker decoder: largest mel-axis scaling (+-)")
    ap.add_argument("--voice-tilt", type=float, default=1.0, help="speaker decoder: largest spectral tilt, nats (+-)")
    ap.add_argument("--codes-from", choices=("changed", "original"), default="changed",
                    help="speaker decoder: a voice-changed segment's codes come from the changed voice or the original")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    if args.decoder_speaker and not args.init:
        raise UserError("--decoder-speaker trains on a trained DVAE's codes: give --init DVAE.safetensors")

    init = load_dvae(args.init) if args.init else None
    if init is not None and init.decoder_only:
        raise UserError(f"--init {args.init} holds only a DVAE decoder (a packed model); give the full DVAE")
    base = init.cfg if init is not None else PRESETS[args.preset]
    base = dataclasses.replace(base, reference_voices=0, reference_strength=1.0)  # rendering settings: set at export
    if args.decoder_speaker:
        base = dataclasses.replace(base, decoder_speaker=True)
    segment = args.segment_tokens * base.mel.hop_length * base.downsample
    train_utts, held_utts = load_splits(args.data, args.eval_data, args.seed)
    train_utts = subset(train_utts, args.max_utterances, args.seed)
    held_utts = subset(held_utts, args.eval_utterances, args.seed + 1)
    train = load_waves(train_utts, base.mel.sample_rate)
    held = load_waves(held_utts, base.mel.sample_rate)
    stats = base.mel_stats or compute_mel_stats(log_mel(w, base.mel) for w in train[: args.stats_utterances])
    task = DVAETask(dataclasses.replace(base, mel_stats=stats), init, args.voice_warp, args.voice_tilt,
                    codes_from=args.codes_from)
    train_voices = None  # a speaker decoder keeps its training voices' mean features (models/dvae.py: steer_reference)
    if task.speaker:
        def segments(waves, utts, feats, seed):
            return WaveSegmentsWithReference(waves, [u.speaker for u in utts], feats, args.batch_size, segment, seed)
        train_feats = utterance_features(train, task.config)
        train_voices = voice_means(train_feats, [u.speaker for u in train_utts])
        train_data = segments(train, train_utts, train_feats, args.seed)
        eval_data = segments(held, held_utts, utterance_features(held, task.config), args.seed + 1)
    else:
        train_data = WaveSegments(train, args.batch_size, segment, args.seed)
        eval_data = WaveSegments(held, args.batch_size, segment, args.seed + 1)
    # As Tortoise's DVAE training: AdamW, lr 3e-4, weight decay 0.01; short warmup, cosine to lr/10.
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(500, args.steps // 10), weight_decay=0.01, betas=(0.9, 0.99),
                      grad_clip=1.0, eval_every=args.eval_every, eval_steps=4, ckpt_every=args.eval_every,
                      log_every=max(1, min(50, args.steps // 10)), seed=args.seed, out_dir=args.out)
    trainer = Trainer(task, cfg, train_data=train_data, eval_data=eval_data, meta={"recipe": "train_dvae"})
    result = trainer.fit(resume=args.resume)
    model = trainer.model(result["state"]["params"])
    if train_voices is not None:
        model = with_reference_voices(model, train_voices)
    save_dvae(model, os.path.join(args.out, "dvae.safetensors"))
    speakers = lambda utts: [u.speaker for u in utts]  # noqa: E731
    scores = {"heldout": corpus_metrics(model, held, speakers(held_utts)),
              "train": corpus_metrics(model, train[: args.usage_utterances], speakers(train_utts)[: args.usage_utterances])}
    voices = ([args.eval_voices_data] if args.eval_voices_data else
              [d / "eval_voices.jsonl" for d in data_sources(args.data) if d.is_dir()])
    voice_utts = [u for v in voices if v.is_file() for u in load_dataset(v)[0]]
    if voice_utts:  # a corpus without held-out voices writes an empty eval_voices.jsonl
        voice_utts = subset(voice_utts, args.eval_utterances, args.seed + 2)
        scores["heldout_voices"] = corpus_metrics(
            model, load_waves(voice_utts, base.mel.sample_rate), speakers(voice_utts))
        if task.speaker:  # what the references bring: the same voices with the unconditioned decoder
            scores["heldout_voices_no_reference"] = corpus_metrics(
                model, load_waves(voice_utts, base.mel.sample_rate))
    scores["samples"] = write_listening_samples(model, held[0], os.path.join(args.out, "samples"))
    with open(os.path.join(args.out, "heldout.json"), "w") as f:
        json.dump(scores, f, indent=2)
    print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    main()
