"""Train the XTTS-style generator on DVAE audio tokens, through the shared trainer.

The story: read the token files ``tools/encode_audio.py`` wrote (OUT.bin + OUT.jsonl), turn each
utterance into text tokens ``[start, BPE..., stop]`` and audio tokens ``[start, codes..., stop]``,
and give every example the log-mel of a *different* clip of the same speaker (its first
``--ref-seconds``, as XTTS-v2 conditions on another recording) for the conditioning encoder. The
shared :class:`~xtts_jax.train.trainer.Trainer` minimises XTTS-v2's loss (0.01 x text CE + audio
CE, padding masked), evaluates on the held-out split, and every ``--sample-every`` steps writes a
wav of a held-out sentence (sampled tokens -> DVAE -> Griffin-Lim). At the end: ``tts.safetensors``
(config in its metadata), the DVAE beside it, and one speaker embedding per held-out voice, so

    python tools/synthesize.py --checkpoint OUT/tts.safetensors --speaker OUT/speakers/VOICE.npy --text "Hi."

works. A batch row is float32 (token ids are exact in float32): ``[text_len, audio_len, text...,
audio..., reference mel...]``, so the data stay one plain array, as the trainer wants.

    python recipes/train_tts.py --tokens data/speech/tokens/train --preset small
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from xtts_jax.audio.io import save_audio
from xtts_jax.errors import UserError, run_cli
from xtts_jax.inference import tts as pipeline
from xtts_jax.inference.sampling import SamplingConfig
from xtts_jax.inference.vocoder import Vocoder
from xtts_jax.models import tts as tts_lib
from xtts_jax.models.cpu_kernels import training_dtype
from xtts_jax.models.dvae import load_dvae
from xtts_jax.train.optim import TrainConfig
from xtts_jax.train.sharding import devices_per_cpu_core
from xtts_jax.train.trainer import Trainer


from xtts_jax.train.tts_data import (  # noqa: F401 (tests and tools read them here too)
    Batches, Split, corpus_text_ids, load_split, load_splits, token_dvae)


@functools.lru_cache(maxsize=1)  # init_model is traced more than once; read the file once
def load_gpt(path: str):
    """(GPT, its rows' GPT-2 ids or None) from a Hugging Face GPT-2 folder or a text LM run's
    ``model.safetensors`` (recipes/tinystories_pretrain.py via the shared trainer; config in its metadata)."""
    from xtts_jax.convert.hf_gpt2 import load_hf_gpt2

    if Path(path).is_dir():
        return load_hf_gpt2(path), None
    from xtts_jax.train.lm import load_lm

    if not Path(path).exists():
        raise UserError(f"--init-gpt {path} is neither a Hugging Face folder nor a file")
    gpt, lm = load_lm(path)
    return gpt, (None if lm.vocab is None else list(lm.vocab.ids))


@functools.lru_cache(maxsize=1)
def load_init(path: str) -> tts_lib.TTS:
    """A whole TTS checkpoint (``tts.safetensors`` of this recipe or tools/convert_xtts.py)."""
    return pipeline.load_tts(path)  # a missing, folder or broken file is one sentence naming it


@dataclasses.dataclass
class TTSTask:
    config: tts_lib.TTSConfig
    text_width: int
    audio_width: int
    ref_frames: int
    init_gpt: str | None = None
    init: str | None = None  # a TTS checkpoint whose weights start the run (fine-tuning)
    ctc_weight: float = 0.0  # weight of the CTC alignment aid (models/alignment.py); needs config.ctc_head
    align_prior: float = 0.0  # weight of the diagonal attention prior (models/alignment.py), training steps only
    align_prior_layers: int = 1
    compute_dtype: str | None = None  # the GPT's matmul dtype while training (GPTConfig.compute_dtype); None: the model's
    sampler: object = None  # called by the trainer's sample hook (audio, not text)
    # row width -> (text width, audio width) of length-bucketed batches (Batches.layouts); a row
    # width not listed holds text_width text tokens and the rest audio
    layouts: dict[int, tuple[int, int]] = dataclasses.field(default_factory=dict)

    def init_model(self, key: jax.Array) -> tts_lib.TTS:
        if self.init:
            model = tts_lib.with_heads(load_init(self.init), key, self.config.ctc_head, self.config.text_pointer)
        else:
            model = tts_lib.TTS(self.config, key=key)
            if self.init_gpt:
                model = tts_lib.init_from_gpt(model, *load_gpt(self.init_gpt))
        return model if self.compute_dtype is None else tts_lib.with_compute_dtype(model, self.compute_dtype)

    def logical_axes(self, model):
        return tts_lib.logical_axes(model)

    def to_dict(self) -> dict:
        return {"tts": self.config.to_dict(), "text_width": self.text_width, "audio_width": self.audio_width,
                "ref_frames": self.ref_frames}

    def batch_widths(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """A row is [2 lengths, text, audio, (pointer,) mel]; (text width, audio width) vary by length bucket."""
        if shape[1] in self.layouts:
            return self.layouts[shape[1]]
        rest = shape[1] - 2 - self.text_width - self.config.conditioning.n_mels * self.ref_frames
        return self.text_width, rest // (2 if self.config.text_pointer else 1)

    def tokens_in_batch(self, shape: tuple[int, ...]) -> int:
        """Text and audio token slots per batch (padding included): the trainer's tokens/s."""
        return shape[0] * sum(self.batch_widths(shape))

    def unpack(self, batch: jax.Array):
        """(text_len, audio_len, text, audio, mel, pointer or None) of a batch of rows."""
        tw, aw = self.batch_widths(batch.shape)
        ints = lambda a: jnp.round(a).astype(jnp.int32)  # noqa: E731
        end = 2 + tw + aw * (2 if self.config.text_pointer else 1)
        pointer = ints(batch[:, 2 + tw + aw:end]) if self.config.text_pointer else None
        mel = batch[:, end:].reshape(batch.shape[0], self.config.conditioning.n_mels, self.ref_frames)
        return (ints(batch[:, 0]), ints(batch[:, 1]), ints(batch[:, 2:2 + tw]), ints(batch[:, 2 + tw:2 + tw + aw]), mel,
                pointer)

    def loss(self, model: tts_lib.TTS, batch: jax.Array, key) -> tuple[jax.Array, dict]:
        text_len, audio_len, text, audio, mel, pointer = self.unpack(batch)
        cond = jax.vmap(model.conditioner)(mel)
        keys = jax.random.split(key, batch.shape[0]) if key is not None else None
        # the prior guides training steps only: the held-out loss (key None) is the model's own
        prior = ({"prior_weight": self.align_prior, "prior_layers": self.align_prior_layers}
                 if key is not None and self.align_prior else {})

        def one(c, t, tl, a, al, k, p):
            return tts_lib.tts_loss(model, c, t, tl, a, al, key=k, ctc_weight=self.ctc_weight, pointer=p, **prior)

        _, metrics = jax.vmap(one)(cond, text, text_len, audio, audio_len, keys, pointer)
        metrics = jax.tree.map(jnp.mean, metrics)
        return metrics["loss"], metrics

    def sample(self, model, key) -> list[str]:
        return self.sampler(model, key) if self.sampler else []


def listening_sample(split: Split, dvae, out_dir: Path):
    """A sample hook: one held-out sentence in a held-out clip's voice, written as a wav."""
    count = [0]

    def sample(model, key) -> list[str]:
        synth = pipeline.Synthesizer(model, Vocoder.griffin_lim(dvae.cfg.mel), dvae)
        cond = np.asarray(model.conditioner(jnp.asarray(split.ref_mel[1 % len(split.text)])))
        n = len(split.audio[0])
        sampling = SamplingConfig(**pipeline.XTTS_SAMPLING, max_new_tokens=min(2 * n, synth.max_new_tokens()))
        codes = synth.codes([split.text[0]], [cond], key, sampling)[0]
        path = out_dir / "samples" / f"sample_{count[0]:03d}.wav"
        count[0] += 1
        save_audio(path, np.clip(synth.render(codes, cond, split.text[0]), -1, 1), synth.sample_rate)
        return [f"wrote {path}: {len(codes)} tokens (reference clip has {n - 2})"]

    return sample


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", required=True, help="token file stem from tools/encode_audio.py (STEM.bin, "
                    "STEM.jsonl); several corpora encoded by the same DVAE: stems separated by commas")
    ap.add_argument("--eval-tokens", help="held-out stems (default: eval beside each --tokens stem)")
    ap.add_argument("--dvae", help="dvae.safetensors (default: the one STEM.json names)")
    ap.add_argument("--preset", default="small", choices=sorted(tts_lib.PRESETS))
    ap.add_argument("--text-vocab", default="gpt2", choices=["gpt2", "corpus", "phonemes"],
                    help="text table: all 50,257 GPT-2 ids, only those the training sentences use "
                    "(a small demo model; other words are then refused with a clear error), or phonemes "
                    "(CMUdict phonemes and letters: any English sentence)")
    ap.add_argument("--spell-fraction", type=float, default=0.05,
                    help="with --text-vocab phonemes: share of training words spelled as letters, which "
                    "teaches the model to read words the dictionary lacks")
    ap.add_argument("--speaker-dim", type=int, default=0,
                    help="width of the speaker vectors at the interface (0: the model's n_embd); wider "
                    "vectors are projected, so a small model takes 1024-d vectors as XTTS-v2")
    ap.add_argument("--init-gpt", help="a Hugging Face GPT-2 folder or a text LM run's model.safetensors "
                    "whose blocks and text tables start the model")
    ap.add_argument("--init", help="a tts.safetensors to fine-tune: its config (size, text vocabulary, "
                    "conditioning) and weights start the run; --preset and --text-vocab are then ignored")
    ap.add_argument("--ctc-weight", type=float, default=0.0,
                    help="weight of a CTC loss that makes the audio latents read the next phonemes, an "
                    "alignment aid (models/alignment.py); 0: off. Adds a small head, kept in the checkpoint")
    ap.add_argument("--align-prior", type=float, default=0.0,
                    help="weight of a diagonal prior on the attention from audio to text in the first "
                    "--align-prior-layers layers during training (models/alignment.py); 0: off. The "
                    "held-out loss and sampling run without it")
    ap.add_argument("--align-prior-layers", type=int, default=1)
    ap.add_argument("--text-pointer", action="store_true",
                    help="train a text-pointer model (models/pointer.py): each audio position reads the text "
                    "token it speaks, from STEM.align.jsonl beside every token file (tools/align_tokens.py)")
    ap.add_argument("--compute-dtype", choices=["auto", "float32", "bfloat16"],
                    help="the generator's matmul dtype while training (default: bfloat16 on a CPU with "
                         "AVX512-BF16/AMX, 1.6x the step with the same losses, README Benchmarks; else the model's, "
                         "auto: float32 on CPU, bfloat16 on GPU/TPU); the saved checkpoint keeps the dtype it had")
    ap.add_argument("--language", default="en", help="language of the training text, for a checkpoint with "
                    "XTTS-v2's multilingual tokenizer (--init of a converted XTTS-v2)")
    ap.add_argument("--out", default="runs/tts")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--sample-every", type=int, default=1000)
    ap.add_argument("--ckpt-every", type=int, default=1000)
    ap.add_argument("--length-buckets", type=int, default=8,
                    help="batches drawn from this many length buckets, text and audio each padded to "
                    "the bucket's longest (a compile per bucket)")
    ap.add_argument("--ref-seconds", type=float, default=3.0, help="reference clip length (XTTS-v2: 3-6 s)")
    ap.add_argument("--max-utterances", type=int, help="load at most this many training utterances")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    if argv is None:  # a command-line run owns its process: one JAX device per CPU core (a test's may not)
        devices_per_cpu_core(args.batch_size)
        from xtts_jax import compile_cache

        compile_cache.enable(min_seconds=1.0)  # a resumed or repeated run loads its step programs

    out = Path(args.out)
    stems = [s.strip() for s in args.tokens.split(",") if s.strip()]
    if not stems:
        raise UserError(f"--tokens {args.tokens!r} names no token files")
    eval_stems = ([s.strip() for s in args.eval_tokens.split(",") if s.strip()] if args.eval_tokens
                  else [str(Path(s).with_name("eval")) for s in stems])
    dvae_path = args.dvae or token_dvae(stems)
    if not dvae_path or not Path(dvae_path).is_file():
        raise UserError(f"DVAE weights {dvae_path} not found; pass --dvae")
    dvae = load_dvae(dvae_path)
    text_tokenizer = None
    if args.init:
        if args.init_gpt:
            raise UserError("--init and --init-gpt both start the model; pass one")
        cfg = load_init(args.init).config
        if cfg.num_audio_codes != dvae.cfg.num_tokens:
            raise UserError(f"--init {args.init} predicts {cfg.num_audio_codes} audio codes, "
                            f"the DVAE {dvae_path} has {dvae.cfg.num_tokens}")
        text_tokenizer = pipeline.load_text_tokenizer(args.init, cfg)
        if text_tokenizer is not None:  # an unknown language: one error now, not every row skipped
            from xtts_jax.text.xtts_tokenizer import language_code

            language_code(args.language)
        print(f"fine-tuning {args.init}")
    else:
        cfg = dataclasses.replace(tts_lib.get_config(args.preset), num_audio_codes=dvae.cfg.num_tokens)
    if args.text_vocab == "corpus" and not args.init:
        cfg = tts_lib.with_text_vocab(cfg, set().union(*(corpus_text_ids(s, args.max_utterances) for s in stems)))
        print(f"compact text vocabulary: {cfg.text_vocab_size} GPT-2 ids")
    if args.text_vocab == "phonemes" and not args.init:
        cfg = tts_lib.with_phonemes(cfg)
    if not 0 <= args.spell_fraction < 1:
        raise UserError(f"--spell-fraction {args.spell_fraction} must lie in [0, 1)")
    if args.speaker_dim and not args.init:
        cfg = tts_lib.with_speaker_dim(cfg, args.speaker_dim)
    if not 0 <= args.ctc_weight < 100:
        raise UserError(f"--ctc-weight {args.ctc_weight} must lie in [0, 100)")
    if args.ctc_weight:
        cfg = dataclasses.replace(cfg, ctc_head=True)
    if args.text_pointer:
        if cfg.tokenizer != "phonemes":
            raise UserError("--text-pointer needs a phoneme model (--text-vocab phonemes): its alignments are of phonemes")
        cfg = dataclasses.replace(cfg, text_pointer=True)
    if not 0 <= args.align_prior < 100 or not 0 <= args.align_prior_layers <= cfg.gpt.n_layer:
        raise UserError(f"--align-prior {args.align_prior} must lie in [0, 100) and --align-prior-layers "
                        f"{args.align_prior_layers} in [0, {cfg.gpt.n_layer}]")
    ref_mel = cfg.conditioning.mel_config
    ref_frames = ref_mel.n_frames(int(args.ref_seconds * ref_mel.sample_rate))
    train = load_splits(stems, cfg, ref_frames, args.max_utterances, text_tokenizer, args.language,
                        args.spell_fraction if cfg.tokenizer == "phonemes" else 0.0)
    held = load_splits(eval_stems, cfg, ref_frames, None, text_tokenizer, args.language)
    # rows padded to a multiple of 16 positions, but never past the model's (XTTS-v2: 402 and 605)
    width = lambda rows, limit: min(limit, -(-max(len(r) for r in rows) // 16) * 16)  # noqa: E731
    text_width = width(train.text + held.text, cfg.text_positions)
    audio_width = width(train.audio + held.audio, cfg.audio_positions)
    print(f"{len(train.text)} training and {len(held.text)} held-out utterances; "
          f"text <= {text_width} tokens, audio <= {audio_width} tokens")

    dtype = training_dtype(args.compute_dtype)
    print(f"training computes in {dtype or cfg.gpt.compute_dtype} (the saved checkpoint: {cfg.gpt.compute_dtype})")
    task = TTSTask(cfg, text_width, audio_width, ref_frames, args.init_gpt, args.init, args.ctc_weight,
                   args.align_prior, args.align_prior_layers, dtype, listening_sample(held, dvae, out))
    if args.length_buckets < 1:
        raise UserError(f"--length-buckets {args.length_buckets} must be >= 1")
    train_batches = Batches(train, args.batch_size, args.seed, text_width, audio_width, args.length_buckets,
                            task.layouts)
    eval_batches = Batches(held, args.batch_size, args.seed + 1, text_width, audio_width, args.length_buckets,
                           task.layouts)
    print("padded (text, audio) widths per length bucket: " + ", ".join(f"{t}+{a}" for t, a in train_batches.widths))
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                       warmup_steps=args.warmup_steps, eval_every=args.eval_every, eval_steps=4,
                       ckpt_every=args.ckpt_every, sample_every=args.sample_every, seed=args.seed, out_dir=str(out))
    trainer = Trainer(task, tcfg, train_data=train_batches, eval_data=eval_batches)
    result = trainer.fit(resume=args.resume)
    model = tts_lib.with_compute_dtype(trainer.model(result["state"]["params"]), cfg.gpt.compute_dtype)

    meta = {"val_loss": result.get("val_loss"), "steps": args.steps}
    if args.init:  # keep what the checkpoint carries (tokenizer, sampling, cloning settings); count all steps
        from xtts_jax.weights import read_safetensors_metadata

        kept = {k: v for k, v in read_safetensors_metadata(args.init).items() if k not in ("tts", "val_loss")}
        meta = {**kept, "val_loss": result.get("val_loss"), "fine_tuned_from": args.init,
                "steps": int(kept.get("steps") or 0) + args.steps}
    pipeline.save_tts(model, str(out / "tts.safetensors"), meta)
    shutil.copyfile(dvae_path, out / "dvae.safetensors")  # synthesize.py finds it beside the checkpoint
    (out / "speakers").mkdir(parents=True, exist_ok=True)
    for speaker in sorted(set(held.speaker)):
        i = held.speaker.index(speaker)
        np.save(out / "speakers" / f"{speaker}.npy", np.asarray(model.conditioner(jnp.asarray(held.ref_mel[i])), np.float32))
    print(f"held-out loss {result.get('val_loss')}; wrote {out / 'tts.safetensors'} and {len(set(held.speaker))} speaker embeddings")
    return 0


if __name__ == "__main__":
    main()
