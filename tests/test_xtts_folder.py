"""A whole XTTS-v2 folder converted and spoken with, against PyTorch references of each part.

The folder is written here as coqui ships it, at a tiny size: ``model.pth`` (``gpt.*`` from the
XTTS GPT reference of ``test_xtts_import``, ``mel_stats``, ``hifigan_decoder.waveform_decoder.*``
from the decoder reference of ``test_hifigan_import``, ``hifigan_decoder.speaker_encoder.*`` from
the ResNet reference of ``test_speaker_encoder``), ``vocab.json`` (a tokenizers BPE with XTTS's
special tokens where XTTS-v2 has them), ``config.json``, ``speakers_xtts.pth``, and the fine-tuning
files ``dvae.pth`` (the DiscreteVAE reference of ``test_dvae_import``) with ``mel_stats.pth``. After
conversion, the audio our pipeline renders for given codes equals the torch GPT's latents through
the torch decoder; conditioning from a recording equals XTTS's chunked mel through the torch
conditioner, and its decoder embedding the torch speaker encoder's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _mel_ref import torchaudio_mel  # noqa: E402
from test_dvae_import import MEL_NORMS, random_dvae  # noqa: E402
from test_hifigan_import import TINY_XTTS, TorchXttsDecoder, _randomise  # noqa: E402
from test_torch_io import _fake_module, _save_with_classes  # noqa: E402
from test_speaker_encoder import SMALL as SMALL_ENCODER, random_reference, torch_embedding  # noqa: E402
from test_xtts_import import MEL_STATS, TINY, XttsGPT, xtts_state_dict  # noqa: E402

from xtts_jax.audio.io import limit_peak, resample  # noqa: E402
from xtts_jax.convert.xtts_folder import convert_xtts_folder  # noqa: E402
from xtts_jax.errors import UserError  # noqa: E402
from xtts_jax.inference import tts as P  # noqa: E402
from xtts_jax.inference.vocoder import load_vocoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DECODER = dataclasses.replace(TINY_XTTS, in_channels=TINY.gpt.n_embd, cond_channels=SMALL_ENCODER.proj_dim)
SETTINGS = {"model": "xtts", "temperature": 0.7, "repetition_penalty": 5.0, "top_k": 40, "top_p": 0.8,
            "gpt_cond_len": 8, "gpt_cond_chunk_len": 3, "max_ref_len": 6, "languages": ["en", "es"]}
VOICES = ("Ana Florence", "Bob")


def build_vocab(path: Path, size: int = TINY.text_vocab_size) -> None:
    """Single characters and XTTS's special tokens at XTTS-v2's ids ([STOP] 0, [UNK] 1, [SPACE] 2,
    [START] 261), padded with unused tokens to the GPT's text table."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[en]", "[es]"]
    vocab = {t: i for i, t in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz',.!?-"))}
    filler = iter(f"<unused{i}>" for i in range(size))
    while len(vocab) < size:
        vocab["[START]" if len(vocab) == TINY.text_start_token else next(filler)] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials + ["[START]"])
    tokenizer.save(str(path))


def _randomise_gpt(ref):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            gain = p.ndim == 1 and ("norm" in name or "ln_" in name) and name.endswith(("weight", "gamma"))
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if gain else 0.05 * torch.randn_like(p))
        ref.gpt.wpe.weight.zero_()  # coqui: null position embeddings
    return ref.eval()


@pytest.fixture(scope="module")
def xtts(tmp_path_factory):
    """(torch references, the XTTS-like folder, the converted folder)."""
    src, out = tmp_path_factory.mktemp("XTTS-v2"), tmp_path_factory.mktemp("converted")
    gpt = _randomise_gpt(XttsGPT(TINY))
    decoder = _randomise(TorchXttsDecoder(DECODER, "new"), seed=5)
    encoder = random_reference(SMALL_ENCODER, seed=6)
    state = {**xtts_state_dict(gpt), "mel_stats": torch.tensor(MEL_STATS)}
    state.update({"hifigan_decoder." + k: v for k, v in decoder.state_dict().items()})
    state.update({"hifigan_decoder.speaker_encoder." + k: v for k, v in encoder.state_dict().items()})
    # as coqui's release, the training config is pickled beside the weights (an XttsConfig object)
    config_class = type("XttsConfig", (), {"__init__": lambda self: setattr(self, "temperature", 0.75)})
    modules = {"TTS.tts.configs.xtts_config": _fake_module("TTS.tts.configs.xtts_config", XttsConfig=config_class)}
    _save_with_classes(src / "model.pth", modules, lambda m: {"model": state, "config": config_class()})
    build_vocab(src / "vocab.json")
    (src / "config.json").write_text(json.dumps(SETTINGS))
    gen = torch.Generator().manual_seed(7)
    speakers = {name: {"gpt_cond_latent": torch.randn(1, TINY.conditioning.num_latents, TINY.gpt.n_embd, generator=gen),
                       "speaker_embedding": torch.nn.functional.normalize(
                           torch.randn(1, SMALL_ENCODER.proj_dim, 1, generator=gen), dim=1)} for name in VOICES}
    torch.save(speakers, src / "speakers_xtts.pth")
    dvae = random_dvae(seed=8, num_tokens=TINY.num_audio_codes)
    torch.save(dvae.state_dict(), src / "dvae.pth")
    torch.save(torch.from_numpy(MEL_NORMS), src / "mel_stats.pth")
    summary = convert_xtts_folder(src, out, decoder_config=DECODER, speaker_encoder_config=SMALL_ENCODER,
                                  log=lambda *a: None)
    return dict(gpt=gpt, decoder=decoder, encoder=encoder, speakers=speakers, dvae=dvae, src=src, out=out,
                summary=summary)


@pytest.fixture(scope="module")
def synth(xtts):
    ckpt = xtts["out"] / "tts.safetensors"
    model = P.load_tts(ckpt)
    return P.Synthesizer(model, load_vocoder(xtts["out"] / "vocoder.safetensors"),
                         tokenizer=P.load_text_tokenizer(ckpt, model.config), language="en")


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_conversion_carries_settings_voices_and_mel_stats(xtts, synth):
    assert xtts["summary"]["voices"] == list(VOICES)
    assert xtts["summary"]["sampling"] == {**{k: SETTINGS[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty")},
                                           "seen_tokens": [1, TINY.audio_start_token]}
    defaults = P.sampling_defaults(xtts["out"] / "tts.safetensors")
    assert defaults["repetition_penalty"] == 5.0 and defaults["seen_tokens"] == (1, TINY.audio_start_token)
    cond = synth.model.config.conditioning
    assert (cond.max_seconds, cond.chunk_seconds, cond.max_ref_seconds) == (8.0, 3.0, 6.0)
    assert cond.chunking == "xtts" and cond.mel_norms == MEL_STATS and cond.mel_config.n_fft == 2048
    for name, entry in xtts["speakers"].items():
        np.testing.assert_array_equal(np.load(xtts["out"] / "speakers" / f"{name}.npy"), entry["gpt_cond_latent"][0].numpy())
        np.testing.assert_array_equal(np.load(xtts["out"] / "speakers" / f"{name}.decoder.npy"),
                                      entry["speaker_embedding"].reshape(-1).numpy())


def test_text_row_is_xtts_tokens_between_start_and_stop(xtts, synth):
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(xtts["src"] / "vocab.json"))
    assert synth.text_row("Hello, world.") == [261, *vocab.encode("[en]hello,[SPACE]world.").ids, 0]
    # XTTS's English cleaning spells numbers out before the BPE
    assert synth.text_row("42 cats.") == [261, *vocab.encode("[en]forty-two[SPACE]cats.").ids, 0]
    with pytest.raises(UserError, match="♥"):
        synth.text_row("I ♥ cats.")
    # a sentence over English's 250-character limit is sampled in word-wrapped pieces, as coqui splits it
    pieces = synth.sentences("Go. " + "the cat sat on the mat, " * 20)
    assert pieces[0] == "Go." and len(pieces) == 3 and all(len(p) <= 250 for p in pieces)
    assert " ".join(pieces[1:]) == ("the cat sat on the mat, " * 20).strip()


def test_rendered_audio_equals_torch_xtts(xtts, synth):
    """Codes -> GPT latents at [start, codes...] -> HiFiGAN with the decoder's speaker embedding."""
    name = VOICES[0]
    cond = np.load(xtts["out"] / "speakers" / f"{name}.npy")
    speaker = np.load(xtts["out"] / "speakers" / f"{name}.decoder.npy")
    row = synth.text_row("Hello, world.")
    codes = [3, 17, 5, 30, 0, 12, 12, 9]
    got = synth.render(codes, cond, row, speaker)
    with torch.no_grad():
        audio = torch.tensor([[TINY.audio_start_token, *codes]])
        _, _, latents = xtts["gpt"](torch.from_numpy(cond)[None], torch.tensor([row]), audio)
        want = xtts["decoder"](latents, torch.from_numpy(speaker)[None, :, None])[0, 0].numpy()
    assert got.shape == want.shape and 0.05 < want.std() < 0.9
    assert _max_diff(got, want) <= 1e-4, _max_diff(got, want)
    # XTTS's speed: latents interpolated by 1 / speed (torch's linear interpolation) before the decoder
    faster = dataclasses.replace(synth, speed=1.5).render(codes, cond, row, speaker)
    with torch.no_grad():
        stretched = torch.nn.functional.interpolate(latents.transpose(1, 2), scale_factor=1 / 1.5, mode="linear")
        want = xtts["decoder"](stretched.transpose(1, 2), torch.from_numpy(speaker)[None, :, None])[0, 0].numpy()
    assert faster.shape == want.shape and len(faster) < len(got) and _max_diff(faster, want) <= 1e-4
    # sampling gives codes the renderer accepts, and the same seed the same codes
    import jax

    sampling = P.SamplingConfig(**P.sampling_defaults(xtts["out"] / "tts.safetensors"), max_new_tokens=12)
    first = synth.codes([row], [cond], jax.random.key(0), sampling)
    assert first == synth.codes([row], [cond], jax.random.key(0), sampling)
    assert all(0 <= c <= TINY.audio_start_token for c in first[0])  # coqui's sampler may draw the start token


def coqui_greedy_codes(gpt, cond: np.ndarray, row: list[int], penalty: float) -> list[int]:
    """Greedy audio tokens the way coqui's ``GPT.generate`` asks HF ``generate`` for them, with full
    recomputation in place of a cache: the stand-in prompt (id 1 for every conditioning and text
    position, then the audio start) counts for the repetition penalty; at most
    ``max_gen_mel_tokens = gpt_max_audio_tokens - 1 - 2`` new tokens, where the mel position table
    has ``gpt_max_audio_tokens + 3`` rows; the start token is not masked; stop ends it."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    start, stop = TINY.audio_start_token, TINY.audio_stop_token
    max_gen = (TINY.audio_positions - 3) - 1 - 2
    stand_in = [1] * (len(cond) + len(row)) + [start]
    penalise, codes = RepetitionPenaltyLogitsProcessor(penalty), []
    with torch.no_grad():
        for _ in range(max_gen):
            _, logits, _ = gpt(torch.from_numpy(cond)[None], torch.tensor([row]), torch.tensor([[start, *codes]]))
            scores = penalise(torch.tensor([stand_in + codes]), logits[:, -1])
            codes.append(int(scores.argmax()))
            if codes[-1] == stop:
                return codes[:-1]
    return codes


def test_generation_follows_coqui(xtts, synth, tmp_path):
    """A converted checkpoint samples as coqui: at most 602 steps at XTTS-v2's size (here 40 - 6)
    and the audio start token drawable (it then stays in the codes the latents pass reads)."""
    import copy

    import equinox as eqx
    import jax

    assert synth.max_new_tokens() == TINY.audio_positions - 6 == 34
    # a folder converted before the config carried these settings gets them when loaded
    from xtts_jax.weights import export_safetensors

    old = {k: v for k, v in synth.model.config.to_dict().items() if k not in ("max_new_audio_tokens", "sample_audio_start")}
    loaded = P.load_tts(xtts["out"] / "tts.safetensors")  # synth.model is in the inference layout
    export_safetensors(loaded, str(tmp_path / "old.safetensors"), {"tts": old, "source": "XTTS-v2 model.pth"})
    assert P.load_tts(tmp_path / "old.safetensors").config == synth.model.config
    # a stop token that never wins and a start token that sometimes does, in both models
    gpt = copy.deepcopy(xtts["gpt"])
    with torch.no_grad():
        gpt.mel_head.bias[TINY.audio_stop_token] = -30.0
        gpt.mel_head.bias[TINY.audio_start_token] = 2.5
    bias = synth.model.audio_head.bias.at[TINY.audio_stop_token].set(-30.0).at[TINY.audio_start_token].set(2.5)
    biased = dataclasses.replace(synth, model=eqx.tree_at(lambda m: m.audio_head.bias, synth.model, bias))
    cond = np.load(xtts["out"] / "speakers" / f"{VOICES[0]}.npy")
    row = synth.text_row("Hello, world.")
    settings = {**P.sampling_defaults(xtts["out"] / "tts.safetensors"), "temperature": 0.0}
    got = biased.codes([row], [cond], jax.random.key(0), P.SamplingConfig(**settings, max_new_tokens=10_000))[0]
    want = coqui_greedy_codes(gpt, cond, row, settings["repetition_penalty"])
    assert len(want) == 34 and 0 < want.count(TINY.audio_start_token) < 34, want
    assert got == want
    # a drawn start token goes to the latents pass as coqui's: embedded as the start token
    speaker = np.load(xtts["out"] / "speakers" / f"{VOICES[0]}.decoder.npy")
    with torch.no_grad():
        _, _, latents = gpt(torch.from_numpy(cond)[None], torch.tensor([row]), torch.tensor([[TINY.audio_start_token, *got]]))
        wave = xtts["decoder"](latents, torch.from_numpy(speaker)[None, :, None])[0, 0].numpy()
    assert _max_diff(biased.render(got, cond, row, speaker), limit_peak(wave)) <= 1e-4


def test_conditioning_from_a_recording_equals_torch_xtts(xtts, synth, tmp_path):
    import soundfile as sf

    sr = 22050
    rng = np.random.default_rng(3)
    t = np.arange(int(7.2 * sr)) / sr
    wave = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t)))
    sf.write(tmp_path / "ref.wav", wave.astype(np.float32), sr, subtype="FLOAT")
    ckpt = xtts["out"] / "tts.safetensors"
    got = P.speaker_from_wavs(synth.model, [str(tmp_path / "ref.wav")])
    # XTTS: cut to max_ref_len 6 s, then gpt_cond_len 8 s, chunks of 3 s: [0, 3), [3, 6)
    cut = wave.astype(np.float32)[:6 * sr]
    norms = torch.tensor(MEL_STATS, dtype=torch.float64)[:, None]
    with torch.no_grad():
        chunks = [(torchaudio_mel(cut[i:i + 3 * sr], torch, n_mels=TINY.conditioning.n_mels) / norms).float()
                  for i in (0, 3 * sr)]
        want = torch.stack([xtts["gpt"].style(c[None])[0] for c in chunks]).mean(0).numpy()
    assert _max_diff(got, want) <= 1e-4, _max_diff(got, want)
    emb = P.decoder_speaker_from_wavs(ckpt, synth.model, [str(tmp_path / "ref.wav")])
    want_emb = torch_embedding(xtts["encoder"], resample(cut, sr, 16000))
    assert emb.shape == (SMALL_ENCODER.proj_dim,) and _max_diff(emb, want_emb) <= 1e-4


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _run(name, argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        _tool(name)(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_synthesize_cli_speaks_with_a_converted_folder(xtts, tmp_path, capsys):
    import soundfile as sf

    ckpt = str(xtts["out"] / "tts.safetensors")
    base = ["--checkpoint", ckpt, "--text", "Hello there. We are here!", "--max-new-tokens", "10"]
    code, out, err = _run("synthesize", base + ["--speaker", "Ana Florence", "-o", str(tmp_path / "a.wav")], capsys)
    assert code == 0, err
    wave, rate = sf.read(tmp_path / "a.wav")
    assert rate == DECODER.sample_rate and len(wave) > 0 and np.all(np.isfinite(wave))
    assert "with hifigan" in err and "real-time factor" in out
    sf.write(tmp_path / "ref.wav", (0.1 * np.random.default_rng(0).standard_normal(30000)).astype(np.float32), 22050)
    code, _, err = _run("synthesize", base + ["--speaker-wav", str(tmp_path / "ref.wav"), "-o", str(tmp_path / "b.wav")],
                        capsys)
    assert code == 0, err
    # speaker_embedding.py writes the decoder's embedding beside the GPT latents; synthesize finds it there
    emb = tmp_path / "voice" / "emb.npy"
    code, out, err = _run("speaker_embedding", [str(tmp_path / "ref.wav"), "--checkpoint", ckpt, "-o", str(emb)], capsys)
    assert code == 0 and "emb.decoder.npy" in out, err
    assert np.load(emb).shape == (TINY.conditioning.num_latents, TINY.gpt.n_embd)
    assert np.load(tmp_path / "voice" / "emb.decoder.npy").shape == (SMALL_ENCODER.proj_dim,)
    code, _, err = _run("synthesize", base + ["--speaker", str(emb), "-o", str(tmp_path / "e.wav")], capsys)
    assert code == 0, err
    for argv, message in ((["--speaker", "Bob", "--language", "xx"], "language"),
                          (["--speaker", "Nobody"], "Ana Florence, Bob"),
                          (["--speaker", str(xtts["out"] / "speakers" / "Bob.npy"), "--decoder-speaker",
                            str(tmp_path / "none.npy")], "does not exist")):
        code, _, err = _run("synthesize", base + argv + ["-o", str(tmp_path / "c.wav")], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and lines[-1].startswith("error: ") and message in lines[-1], err


def test_convert_cli_and_bad_folders(xtts, tmp_path, capsys):
    code, out, err = _run("convert_xtts", ["--checkpoint", str(xtts["src"]), "-o", str(tmp_path / "gpt.safetensors")],
                          capsys)
    assert code == 0 and P.load_tts(tmp_path / "gpt.safetensors").config.tokenizer == "xtts", err
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "model.pth").write_bytes((xtts["src"] / "model.pth").read_bytes())
    small = tmp_path / "small_vocab"
    small.mkdir()
    (small / "model.pth").write_bytes((xtts["src"] / "model.pth").read_bytes())
    build_vocab(small / "vocab.json", size=280)
    for source, message in ((lonely, "vocab.json"), (small, "280 tokens"), (tmp_path / "none", "does not exist")):
        code, _, err = _run("convert_xtts", ["--checkpoint", str(source), "-o", str(tmp_path / "o")], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
    # a GPT-only conversion carries no tokenizer: synthesize says how to convert instead of failing later
    code, _, err = _run("synthesize", ["--checkpoint", str(tmp_path / "gpt.safetensors"), "--text", "Hi.", "--speaker",
                                       str(xtts["out"] / "speakers" / "Bob.npy"), "-o", str(tmp_path / "d.wav")], capsys)
    assert code == 2 and "carries no tokenizer" in err


def test_fine_tuning_a_converted_folder_on_new_speech(xtts, tmp_path, capsys):
    """The converted DVAE gives the torch DVAE's codes for a recording; tools/encode_audio.py with it,
    then recipes/train_tts.py --init, train the converted XTTS on a tiny corpus and keep its
    tokenizer, sampling and cloning settings."""
    import soundfile as sf

    from _mel_ref import torchaudio_mel as mel_ref
    from xtts_jax.audio.datasets import Utterance, write_manifest
    from xtts_jax.models.dvae import dvae_mel, load_dvae
    from xtts_jax.train.checkpoint import read_safetensors_metadata

    assert xtts["summary"]["dvae"]
    dvae = load_dvae(str(xtts["out"] / "dvae.safetensors"))
    sr, rng = 22050, np.random.default_rng(4)
    wave = (0.2 * np.sin(2 * np.pi * 200 * np.arange(int(0.74 * sr)) / sr) + 0.02 * rng.standard_normal(int(0.74 * sr)))
    wave = wave.astype(np.float32)[: 63 * 256]  # 64 frames: no padding, so every code must agree
    with torch.no_grad():
        mel = (mel_ref(wave, torch, n_fft=1024) / torch.from_numpy(MEL_NORMS).double()[:, None]).float()
        want = xtts["dvae"].get_codebook_indices(mel[None])[0].numpy()
    np.testing.assert_array_equal(np.asarray(dvae.encode(dvae_mel(wave, dvae.cfg))), want)

    texts = ["the cat sat.", "a dog ran.", "we go home.", "the sun is up."]
    utts = {"train": [], "eval": []}
    for i, text in enumerate(texts * 2):
        path = tmp_path / f"{i}.wav"
        n = int((0.5 + 0.05 * i) * sr)
        sf.write(path, (0.2 * np.sin(2 * np.pi * (150 + 40 * i) * np.arange(n) / sr)).astype(np.float32), sr)
        utts["eval" if i % 4 == 3 else "train"].append(Utterance(path, text, f"s{i % 2}"))
    for split, rows in utts.items():
        code, _, err = _run("encode_audio", ["--dvae", str(xtts["out"] / "dvae.safetensors"), "--data",
                                             str(write_manifest(rows, tmp_path / f"{split}.jsonl")),
                                             "--out", str(tmp_path / "tokens" / split)], capsys)
        assert code == 0, err
    from _scripts import load_script

    recipe = load_script("train_tts_xtts", "recipes/train_tts.py")
    with pytest.raises(SystemExit) as e:
        recipe.main(["--tokens", str(tmp_path / "tokens" / "train"), "--init", str(xtts["out"] / "tts.safetensors"),
                     "--steps", "1", "--batch-size", "2", "--lr", "1e-4", "--eval-every", "1", "--sample-every", "0",
                     "--ckpt-every", "0", "--length-buckets", "1", "--ref-seconds", "0.4",
                     "--out", str(tmp_path / "tuned")])
    assert e.value.code == 0, capsys.readouterr().err
    assert "6 training and 2 held-out utterances" in capsys.readouterr().out
    tuned = tmp_path / "tuned" / "tts.safetensors"
    assert P.load_tts(tuned).config == P.load_tts(xtts["out"] / "tts.safetensors").config
    before, after = (read_safetensors_metadata(str(p)) for p in (xtts["out"] / "tts.safetensors", tuned))
    for key in ("xtts_tokenizer", "sampling", "languages"):
        assert after[key] == before[key]
    assert np.load(tmp_path / "tuned" / "speakers" / "s1.npy").shape == (TINY.conditioning.num_latents, TINY.gpt.n_embd)
    with pytest.raises(SystemExit) as e:
        recipe.main(["--tokens", str(tmp_path / "tokens" / "train"), "--init", str(tuned), "--language", "xx"])
    assert e.value.code == 2 and "unknown language 'xx'" in capsys.readouterr().err
