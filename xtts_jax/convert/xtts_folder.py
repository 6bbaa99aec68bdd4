"""Convert a whole XTTS-v2 model folder into one of ours that ``tools/synthesize.py`` speaks with.

An XTTS-v2 release folder (coqui TTS) holds:

* ``model.pth``: ``gpt.*`` (the GPT and conditioning encoder, ``convert/xtts.py``), ``mel_stats``
  (the reference mel's per-channel divisor), ``hifigan_decoder.waveform_decoder.*`` (the HiFiGAN
  that reads GPT latents, ``convert/hifigan.py``) and ``hifigan_decoder.speaker_encoder.*`` (the
  ResNet that gives that decoder its 512-d speaker embedding, ``convert/speaker_encoder.py``);
* ``vocab.json``: the text tokenizer (``text/xtts_tokenizer.py``);
* ``config.json``: sampling settings (temperature, top-k, top-p, repetition penalty) and the
  cloning settings (``gpt_cond_len``, ``gpt_cond_chunk_len``, ``max_ref_len``), as ``XttsConfig``;
* ``speakers_xtts.pth`` (optional): built-in voices, ``{name: {"gpt_cond_latent": [1, 32, 1024],
  "speaker_embedding": [1, 512, 1]}}``;
* ``dvae.pth`` and ``mel_stats.pth`` (optional, the release's fine-tuning files): the DVAE that
  made the GPT's audio tokens and its mel divisor (``convert/dvae.py``).

We write ``tts.safetensors`` (the vocabulary and settings in its metadata), ``vocoder.safetensors``,
``speaker_encoder.safetensors`` and ``speakers/NAME.npy`` (GPT conditioning ``[32, 1024]``) with
``speakers/NAME.decoder.npy`` (the decoder's ``[512]``) for each built-in voice; ``dvae.safetensors``
when the folder has ``dvae.pth``, so ``tools/encode_audio.py`` and ``recipes/train_tts.py --init``
fine-tune the converted model on new speech.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from xtts_jax.errors import UserError

# XttsConfig's defaults, used where a config.json is absent or silent (coqui TTS xtts_config.py)
XTTS_DEFAULTS = dict(temperature=0.85, length_penalty=1.0, repetition_penalty=2.0, top_k=50, top_p=0.85,
                     gpt_cond_len=12, gpt_cond_chunk_len=4, max_ref_len=10)
SAMPLING_KEYS = ("temperature", "top_k", "top_p", "repetition_penalty")


def read_xtts_settings(path: str | Path | None) -> dict:
    """Sampling and cloning settings of an XTTS ``config.json`` (None or missing: XttsConfig's)."""
    settings = dict(XTTS_DEFAULTS)
    if path is not None and Path(path).is_file():
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} is not a JSON file") from None
        if not isinstance(config, dict):
            raise UserError(f"{path} does not hold an XTTS config object")
        settings.update({k: config[k] for k in XTTS_DEFAULTS if config.get(k) is not None})
        if config.get("languages"):
            settings["languages"] = list(config["languages"])
        if config.get("sound_norm_refs"):
            raise UserError(f"{path} asks for sound_norm_refs, which this converter does not reproduce")
    return settings


def _tensor(value, what: str) -> np.ndarray:
    from xtts_jax.convert.torch_io import float32

    array = float32(value)
    if not np.all(np.isfinite(array)):
        raise UserError(f"{what} holds NaN or infinite values")
    return array


def read_builtin_speakers(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``speakers_xtts.pth`` -> {name: (GPT conditioning ``[N, d]``, decoder embedding ``[e]``)}."""
    from xtts_jax.convert.torch_io import torch_load

    speakers = torch_load(path)
    if not isinstance(speakers, dict) or not speakers:
        raise UserError(f"{path} holds no speakers")
    out = {}
    for name, entry in speakers.items():
        if not isinstance(entry, dict) or not {"gpt_cond_latent", "speaker_embedding"} <= set(entry):
            raise UserError(f"speaker {name!r} in {path} lacks gpt_cond_latent / speaker_embedding")
        latents = _tensor(entry["gpt_cond_latent"], f"speaker {name!r}")
        embedding = _tensor(entry["speaker_embedding"], f"speaker {name!r}")
        out[str(name)] = (latents.reshape(latents.shape[-2], latents.shape[-1]), embedding.reshape(-1))
    return out


def speaker_file_name(name: str) -> str:
    """A file name for a voice name: path separators and control characters become ``_``."""
    return re.sub(r"[\x00-\x1f/\\]", "_", name).strip() or "_"


def convert_xtts_folder(source: str | Path, out: str | Path, decoder_config=None, speaker_encoder_config=None,
                        log=print) -> dict:
    """Convert ``source`` (an XTTS-v2 folder, or a ``model.pth`` with the other files beside it)
    into the folder ``out``; returns a summary. ``decoder_config`` / ``speaker_encoder_config``
    override XTTS-v2's sizes (tests convert small models)."""
    from xtts_jax.convert.hifigan import load_xtts_hifigan_decoder
    from xtts_jax.convert.torch_io import torch_load
    from xtts_jax.convert.speaker_encoder import load_xtts_speaker_encoder, save_speaker_encoder
    from xtts_jax.convert.xtts import MEL_STATS, describe, infer_config, load_xtts_gpt, read_xtts_state
    from xtts_jax.models.hifigan import fold_weight_norm
    from xtts_jax.models.tts import save_tts
    from xtts_jax.text.xtts_tokenizer import XttsTokenizer
    from xtts_jax.weights import export_safetensors

    source = Path(source)
    folder = source if source.is_dir() else source.parent
    model_path = source / "model.pth" if source.is_dir() else source
    vocab_path = folder / "vocab.json"
    for path, what in ((model_path, "XTTS checkpoint"), (vocab_path, "XTTS tokenizer (vocab.json)")):
        if not path.is_file():
            raise UserError(f"{what} {path} does not exist")
    settings = read_xtts_settings(folder / "config.json")
    tokenizer = XttsTokenizer.from_file(vocab_path)
    state = torch_load(model_path)  # read once: the GPT, decoder and speaker encoder share it

    gpt_state = read_xtts_state(state)
    cfg = infer_config(gpt_state)
    if tokenizer.vocab_size != cfg.text_vocab_size:
        raise UserError(f"vocab.json has {tokenizer.vocab_size} tokens, the checkpoint's text table "
                        f"{cfg.text_vocab_size}")
    if (tokenizer.start_id, tokenizer.stop_id) != (cfg.text_start_token, cfg.text_stop_token):
        raise UserError(f"vocab.json's [START]/[STOP] are {tokenizer.start_id}/{tokenizer.stop_id}, "
                        f"the model's {cfg.text_start_token}/{cfg.text_stop_token}")
    if cfg.conditioning is not None:  # XTTS's cloning settings travel with the conditioner's config
        cfg = dataclasses.replace(cfg, conditioning=dataclasses.replace(
            cfg.conditioning, max_seconds=float(settings["gpt_cond_len"]),
            chunk_seconds=float(settings["gpt_cond_chunk_len"]), max_ref_seconds=float(settings["max_ref_len"])))
    tts = load_xtts_gpt(gpt_state, cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # as coqui's HF generate call: its stand-in prompt (id 1s, then the audio start) counts as seen
    sampling = {**{k: settings[k] for k in SAMPLING_KEYS}, "seen_tokens": [1, cfg.audio_start_token]}
    meta = {"source": f"XTTS-v2 {model_path.name}", "xtts_tokenizer": vocab_path.read_text(encoding="utf-8"),
            "sampling": sampling, "languages": settings.get("languages", sorted(tokenizer.languages))}
    save_tts(tts, str(out / "tts.safetensors"), meta)
    log(describe(tts.config))

    decoder = fold_weight_norm(load_xtts_hifigan_decoder(state, decoder_config))
    export_safetensors(decoder, str(out / "vocoder.safetensors"),
                       {"hifigan": decoder.config.to_dict(), "source": f"XTTS-v2 {model_path.name}"})
    log(f"decoder: HiFiGAN, {decoder.config.in_channels}-d latents in, {decoder.config.sample_rate} Hz out, "
        f"{decoder.config.cond_channels}-d speaker embedding")
    encoder = load_xtts_speaker_encoder(state, speaker_encoder_config)
    save_speaker_encoder(encoder, str(out / "speaker_encoder.safetensors"))
    log("speaker encoder: ResNet, 16 kHz audio in, "
        f"{encoder.config.proj_dim}-d embedding out")

    has_dvae = (folder / "dvae.pth").is_file()
    if has_dvae:
        from xtts_jax.convert.dvae import load_xtts_dvae, read_mel_norms
        from xtts_jax.models.dvae import save_dvae

        if (folder / "mel_stats.pth").is_file():
            norms = read_mel_norms(folder / "mel_stats.pth")
        elif MEL_STATS in gpt_state:  # GPTTrainer reads one mel_norm_file for the DVAE and the conditioning
            norms = gpt_state[MEL_STATS]
        else:
            raise UserError(f"{folder / 'dvae.pth'} needs the mel divisor it was trained with: mel_stats.pth")
        dvae = load_xtts_dvae(folder / "dvae.pth", norms)
        if dvae.cfg.num_tokens != cfg.num_audio_codes:
            raise UserError(f"dvae.pth has {dvae.cfg.num_tokens} codes, the GPT predicts {cfg.num_audio_codes}")
        save_dvae(dvae, str(out / "dvae.safetensors"))
        log(f"DVAE: {dvae.cfg.num_tokens} codes, {dvae.cfg.n_mels} mels at {dvae.cfg.mel.sample_rate} Hz "
            f"(for fine-tuning: tools/encode_audio.py --dvae {out / 'dvae.safetensors'})")

    voices = []
    speakers_path = folder / "speakers_xtts.pth"
    if speakers_path.is_file():
        (out / "speakers").mkdir(exist_ok=True)
        for name, (latents, embedding) in read_builtin_speakers(speakers_path).items():
            if latents.shape[1] != cfg.gpt.n_embd or embedding.size != decoder.config.cond_channels:
                raise UserError(f"speaker {name!r} has shapes {latents.shape} / {embedding.shape}, the model needs "
                                f"(N, {cfg.gpt.n_embd}) / ({decoder.config.cond_channels},)")
            stem = speaker_file_name(name)
            np.save(out / "speakers" / f"{stem}.npy", latents)
            np.save(out / "speakers" / f"{stem}.decoder.npy", embedding)
            voices.append(stem)
        log(f"speakers: {len(voices)} built-in voices")
    return {"out": str(out), "voices": voices, "sampling": sampling, "languages": meta["languages"], "dvae": has_dvae}

