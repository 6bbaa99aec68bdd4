"""Train a HiFiGAN vocoder (log-mel -> waveform) on a speech manifest, through the shared trainer.

The story: read the corpus, cut random 8,192-sample segments (the paper's segment), and let the
shared :class:`~xtts_jax.train.trainer.Trainer` run a pure GAN step: update the discriminators
(MPD + MSD, least-squares) on real and generated audio, then the generator against the updated
discriminators with adversarial + 2 x feature matching + 45 x mel L1 (Kong et al. 2020, Sec. 2.4;
AdamW, betas 0.8/0.99, lr 2e-4). Held-out mel L1 is the eval loss; at each eval a sample wav and
its mel plot land in ``out/samples``. At the end the folded generator is exported with its
configs (``generator.safetensors``), and held-out mel L1 is compared with Griffin-Lim's.

    python recipes/train_hifigan.py --data data/speech --preset v1 --steps 20000
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
from xtts_jax.audio.mel import MelConfig, griffin_lim, log_mel, log_mel_jax
from xtts_jax.errors import UserError, run_cli
from xtts_jax.models import hifigan_discriminators as disc
from xtts_jax.models.hifigan import HifiganConfig, HifiganGenerator, fold_weight_norm, preset
from xtts_jax.train.data import WaveSegments
from xtts_jax.train.optim import TrainConfig, make_optimizer


@eqx.filter_jit
def _render(generator: HifiganGenerator, mel: jax.Array) -> jax.Array:
    return generator(mel)  # the generator is an argument: one compile per mel length, any weights


class HifiganGAN(eqx.Module):
    generator: HifiganGenerator
    discriminators: disc.HifiganDiscriminators


@dataclasses.dataclass
class HifiganTask:
    """A Task for the shared trainer: batches are waveforms ``[batch, segment]``; mels are computed
    inside the step from them, so data stay one plain array."""

    gen_config: HifiganConfig
    disc_config: disc.DiscriminatorConfig
    mel: MelConfig
    sample_dir: str | None = None
    sample_wave: np.ndarray | None = None

    def __post_init__(self):
        if self.gen_config.hop_length != self.mel.hop_length or self.gen_config.in_channels != self.mel.n_mels:
            raise UserError(f"generator hop {self.gen_config.hop_length} / inputs {self.gen_config.in_channels} "
                            f"do not match the mel's hop {self.mel.hop_length} / {self.mel.n_mels} mels.")
        # the mel loss is full-band, as the paper (its fmax_for_loss is None)
        self.loss_mel = dataclasses.replace(self.mel, fmax=self.mel.sample_rate / 2)
        self._samples = 0

    def init_model(self, key: jax.Array) -> HifiganGAN:
        gkey, dkey = jax.random.split(key)
        return HifiganGAN(HifiganGenerator(self.gen_config, key=gkey),
                          disc.HifiganDiscriminators(self.disc_config, key=dkey))

    def tokens_in_batch(self, shape: tuple[int, ...]) -> int:
        """Mel frames rendered per batch: what the trainer's tokens/s counts for the vocoder."""
        return shape[0] * (shape[-1] // self.mel.hop_length)

    def to_dict(self) -> dict:
        return {"generator": self.gen_config.to_dict(), "discriminator": dataclasses.asdict(self.disc_config),
                "mel": dataclasses.asdict(self.mel)}

    def optimizer(self, cfg: TrainConfig, model: HifiganGAN, logical=None) -> optax.GradientTransformation:
        """Two AdamW optimizers, one per network; their states live side by side in ``opt_state``."""
        self.g_opt = make_optimizer(cfg, model.generator)
        self.d_opt = make_optimizer(cfg, model.discriminators)

        def init(params):
            return {"generator": self.g_opt.init(params.generator),
                    "discriminators": self.d_opt.init(params.discriminators)}

        def update(grads, state, params):
            g, gs = self.g_opt.update(grads.generator, state["generator"], params.generator)
            d, ds = self.d_opt.update(grads.discriminators, state["discriminators"], params.discriminators)
            return HifiganGAN(g, d), {"generator": gs, "discriminators": ds}

        return optax.GradientTransformation(init, update)

    def _features(self, wave):
        """Generator input ``[B, n_mels, segment / hop]`` and the mel-loss target."""
        frames = wave.shape[-1] // self.mel.hop_length
        # centred STFT: frame i sits at sample i * hop; the last frame is past the segment
        mel_in = jax.vmap(lambda w: log_mel_jax(w, self.mel))(wave)[..., :frames]
        return mel_in, jax.vmap(lambda w: log_mel_jax(w, self.loss_mel))(wave)

    def train_step(self, state: dict, batch: jax.Array, key: jax.Array, *, static, optimizer) -> tuple[dict, dict]:
        """One discriminator update, then one generator update against the updated discriminators."""
        params, opt = state["params"], state["opt_state"]
        g_static, d_static = static.generator, static.discriminators
        mel_in, mel_real = self._features(batch)

        def generate(g_params):
            return jax.vmap(eqx.combine(g_params, g_static))(mel_in)[:, : batch.shape[-1]]

        def d_loss(d_params, fake):
            d = jax.vmap(eqx.combine(d_params, d_static))
            return disc.discriminator_loss(d(batch)[0], d(fake)[0])

        fake = jax.lax.stop_gradient(generate(params.generator))
        loss_d, d_grads = jax.value_and_grad(d_loss)(params.discriminators, fake)
        d_updates, d_opt = self.d_opt.update(d_grads, opt["discriminators"], params.discriminators)
        d_params = optax.apply_updates(params.discriminators, d_updates)

        def g_loss(g_params):
            d = jax.vmap(eqx.combine(d_params, d_static))
            wave = generate(g_params)
            outs, fmaps = d(wave)
            _, real_fmaps = jax.lax.stop_gradient(d(batch))
            adv = disc.generator_adversarial_loss(outs)
            fm = disc.feature_matching_loss(real_fmaps, fmaps)
            mel = disc.mel_l1(mel_real, jax.vmap(lambda w: log_mel_jax(w, self.loss_mel))(wave))
            total = adv + disc.LAMBDA_FM * fm + disc.LAMBDA_MEL * mel
            return total, {"loss_g_adv": adv, "loss_fm": fm, "mel_l1": mel}

        (loss_g, metrics), g_grads = jax.value_and_grad(g_loss, has_aux=True)(params.generator)
        g_updates, g_opt = self.g_opt.update(g_grads, opt["generator"], params.generator)
        g_params = optax.apply_updates(params.generator, g_updates)
        new = {"params": HifiganGAN(g_params, d_params), "step": state["step"] + 1, "key": state["key"],
               "opt_state": {"generator": g_opt, "discriminators": d_opt}}
        return new, dict(metrics, loss=loss_g, loss_d=loss_d, grad_norm_g=optax.tree.norm(g_grads))

    def loss(self, model: HifiganGAN, batch: jax.Array, key) -> tuple[jax.Array, dict]:
        """Eval: mel L1 (the vocoder's own mel config) between held-out audio and its re-synthesis."""
        frames = batch.shape[-1] // self.mel.hop_length
        mel = jax.vmap(lambda w: log_mel_jax(w, self.mel))(batch)
        wave = jax.vmap(model.generator)(mel[..., :frames])[:, : batch.shape[-1]]
        l1 = disc.mel_l1(mel, jax.vmap(lambda w: log_mel_jax(w, self.mel))(wave))
        return l1, {"loss": l1}

    def sample(self, model: HifiganGAN, key) -> list[str]:
        """Re-synthesise one held-out utterance: a wav and a plot of both mels in ``sample_dir``."""
        if self.sample_dir is None or self.sample_wave is None:
            return []
        self._samples += 1
        mel = log_mel(self.sample_wave, self.mel)
        wave = np.asarray(_render(fold_weight_norm(model.generator), jnp.asarray(mel)))
        os.makedirs(self.sample_dir, exist_ok=True)
        stem = os.path.join(self.sample_dir, f"sample_{self._samples:03d}")
        save_audio(stem + ".wav", wave, self.mel.sample_rate)
        plot_mels(stem + ".png", mel, log_mel(wave[: len(self.sample_wave)], self.mel))
        return [stem + ".wav"]


def plot_mels(path: str, real: np.ndarray, generated: np.ndarray) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, m, title in zip(axes, (real, generated), ("held-out audio", "HiFiGAN")):
        ax.imshow(m, origin="lower", aspect="auto", vmin=-11.5, vmax=max(float(real.max()), 0.0))
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _manifest(data: Path, name: str) -> Path:
    return data / name if data.is_dir() else data


def load_waves(path: Path, sample_rate: int, limit: int | None = None) -> list[np.ndarray]:
    utts, _ = load_dataset(path)
    return [load_audio(u.audio_path, sample_rate) for u in utts[:limit]]


def heldout_mel_l1(task: HifiganTask, generator: HifiganGenerator, waves: list[np.ndarray]) -> dict:
    """Mean mel L1 over held-out utterances for HiFiGAN and for Griffin-Lim (the no-vocoder baseline)."""
    hifi, gl = [], []
    for w in waves:
        mel = log_mel(w, task.mel)
        y = np.asarray(_render(generator, jnp.asarray(mel)))[: len(w)]
        hifi.append(np.abs(log_mel(y, task.mel) - mel).mean())
        g = griffin_lim(mel, task.mel, length=len(w))
        gl.append(np.abs(log_mel(g, task.mel) - mel).mean())
    return {"hifigan_mel_l1": float(np.mean(hifi)), "griffin_lim_mel_l1": float(np.mean(gl)), "n": len(waves)}


@run_cli
def main(argv: list[str] | None = None) -> int:
    from xtts_jax.train.trainer import Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="corpus dir (train.jsonl, eval.jsonl) or a manifest")
    ap.add_argument("--eval-data", type=Path, help="held-out manifest (default: DATA/eval.jsonl)")
    ap.add_argument("--out", default="runs/hifigan")
    ap.add_argument("--preset", default="v1", help="generator preset: v1, v2, v3, tiny")
    ap.add_argument("--disc-width-divisor", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--segment", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-utterances", type=int, default=20)
    ap.add_argument("--train-utterances", type=int, help="use only the first N training utterances")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    mel = MelConfig()
    gen_cfg = dataclasses.replace(preset(args.preset), in_channels=mel.n_mels, sample_rate=mel.sample_rate)
    if args.segment % mel.hop_length:
        raise UserError(f"--segment {args.segment} must be a multiple of the hop {mel.hop_length}.")
    train = load_waves(_manifest(args.data, "train.jsonl"), mel.sample_rate, args.train_utterances)
    held = load_waves(args.eval_data or _manifest(args.data, "eval.jsonl"), mel.sample_rate, args.eval_utterances)
    task = HifiganTask(gen_cfg, disc.DiscriminatorConfig(width_divisor=args.disc_width_divisor), mel,
                       sample_dir=os.path.join(args.out, "samples"), sample_wave=held[0])
    # Paper: AdamW(0.8, 0.99), lr 2e-4, no clipping; weight decay 0.01 is torch's AdamW default.
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 4,
                      warmup_steps=0, weight_decay=0.01, betas=(0.8, 0.99), grad_clip=0.0,
                      eval_every=args.eval_every, eval_steps=4, ckpt_every=args.eval_every,
                      sample_every=args.eval_every, log_every=50, seed=args.seed, out_dir=args.out)
    trainer = Trainer(task, cfg, train_data=WaveSegments(train, cfg.batch_size, args.segment, args.seed),
                      eval_data=WaveSegments(held, cfg.batch_size, args.segment, args.seed + 1),
                      meta={"recipe": "train_hifigan"})
    result = trainer.fit(resume=args.resume)
    model = trainer.model(result["state"]["params"])
    generator = fold_weight_norm(model.generator)
    from xtts_jax.weights import export_safetensors
    export_safetensors(generator, os.path.join(args.out, "generator.safetensors"),
                       {"hifigan": task.to_dict()["generator"], "mel": task.to_dict()["mel"]})
    scores = heldout_mel_l1(task, generator, held)
    with open(os.path.join(args.out, "heldout.json"), "w") as f:
        json.dump(scores, f, indent=2)
    print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    main()
