"""Synthesis pipeline: sentence splitting, batched == one at a time, seeds, streaming, speaker files."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.inference import tts as P
from xtts_jax.inference.sampling import SamplingConfig
from xtts_jax.inference import streaming
from xtts_jax.inference.streaming import stream_codes
from xtts_jax.inference.vocoder import Vocoder
from xtts_jax.models.dvae import DVAE, PRESETS as DVAE_PRESETS
from xtts_jax.models.tts import get_config

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=12, penalize_prompt=False)
XTTS = SamplingConfig(**P.XTTS_SAMPLING, max_new_tokens=12)


def random_dvae(seed=0) -> DVAE:
    rng = np.random.default_rng(seed)
    shapes = eqx.filter_eval_shape(lambda: DVAE(DVAE_PRESETS["tiny"], jax.random.key(0)))
    return jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape, np.float32))
                        if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)


@pytest.fixture(scope="module")
def synth():
    model = P.random_tts(get_config("tiny"), seed=1, std=0.08)  # sharper than 0.02: no greedy ties
    dvae = random_dvae()
    return P.Synthesizer(model, Vocoder.griffin_lim(dvae.cfg.mel, n_iter=4), dvae)


@pytest.fixture(scope="module")
def conds():
    rng = np.random.default_rng(2)
    return [rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((1, 64)).astype(np.float32)]


def test_sentences_and_text_tokens(synth):
    assert P.split_sentences("  Hi there.  How are\nyou?! Fine; ok") == ["Hi there.", "How are you?!", "Fine;", "ok"]
    assert P.split_sentences(" \n ") == []
    # wrapped at word boundaries to a character limit (XTTS-v2's per-language split), never cut mid-word
    long = "one two three four five six seven, eight nine ten."
    assert P.split_sentences(f"Short. {long}", max_chars=20) == ["Short.", "one two three four", "five six seven,", "eight nine ten."]
    cfg = synth.model.config
    assert P.text_tokens("Hello", cfg) == [cfg.text_start_token, 15496, cfg.text_stop_token]
    with pytest.raises(UserError, match="longer than"):
        P.text_tokens("word " * 70, cfg)
    with pytest.raises(UserError, match="empty"):
        synth.synthesize(["Fine.", "  "], [None, None], jax.random.key(0), GREEDY)


def test_compact_text_vocab_maps_and_refuses_unknown_words():
    from xtts_jax.models.tts import TTSConfig, with_text_vocab
    from xtts_jax.text import tokenizer

    ids = tokenizer.encode("The cat sat on the mat.")
    cfg = with_text_vocab(get_config("tiny"), ids)
    assert cfg.text_vocab == tuple(sorted(set(ids) | {tokenizer.EOT_ID}))
    assert cfg.text_vocab_size == len(cfg.text_vocab)
    assert cfg.text_vocab[cfg.text_start_token] == tokenizer.EOT_ID == cfg.text_vocab[cfg.text_stop_token]
    row = P.text_tokens("The mat sat.", cfg)
    # renumbered rows map back to exactly the BPE ids of the sentence
    assert [cfg.text_vocab[i] for i in row[1:-1]] == tokenizer.encode("The mat sat.")
    assert max(row) < cfg.text_vocab_size
    with pytest.raises(UserError, match="lacks 'dog'"):
        P.text_tokens("The dog sat.", cfg)
    # as typed, never BPE byte pieces: an emoji is one name (not two U+FFFD halves), a word made of
    # unknown pieces is the whole word without the punctuation the vocabulary has ("'b', 'ob', ''" before)
    for sentence, names in (("The cat 😀 sat.", "'😀'"), ("The bob sat on the mat. Zed's cat.", "'bob', \"Zed's\"")):
        with pytest.raises(UserError) as e:
            P.text_tokens(sentence, cfg)
        assert f"lacks {names} (at " in str(e.value), str(e.value)
    # the quoted context is where the first unknown word is, not the sentence's first 40 characters
    long = "The cat sat" + " on the mat" * 6 + " on the dog."
    with pytest.raises(UserError, match=r"lacks 'dog' \(at \.\.\.'[^']*on the dog\.'\)"):
        P.text_tokens(long, cfg)
    assert TTSConfig.from_dict(cfg.to_dict()) == cfg  # the list survives the JSON metadata
    with pytest.raises(UserError, match="text_vocab lists"):
        dataclasses.replace(cfg, text_vocab=cfg.text_vocab[:-1])


def test_batched_synthesis_equals_one_at_a_time(synth, conds):
    texts = ["The cat sat. It was warm outside today!", "Yes."]
    key = jax.random.key(0)
    both = synth.synthesize(texts, conds, key, GREEDY)
    alone = [synth.synthesize([t], [c], key, GREEDY)[0] for t, c in zip(texts, conds)]
    for a, b in zip(both, alone):
        np.testing.assert_array_equal(a, b)
    # two sentences joined with a gap: longer than the one-sentence text
    gap = int(synth.gap_seconds * synth.sample_rate)
    first = synth.synthesize(["The cat sat."], conds[:1], key, GREEDY)[0]
    np.testing.assert_array_equal(both[0][: len(first)], first)
    np.testing.assert_array_equal(both[0][len(first): len(first) + gap], 0)


def test_seed_gives_the_same_audio(synth, conds):
    a = synth.synthesize(["Hello world."], conds[:1], jax.random.key(7), XTTS)[0]
    b = synth.synthesize(["Hello world."], conds[:1], jax.random.key(7), XTTS)[0]
    np.testing.assert_array_equal(a, b)
    rows = [P.text_tokens("Hello world.", synth.model.config)]
    c1 = synth.codes(rows, conds[:1], jax.random.key(7), XTTS)
    c2 = synth.codes(rows, conds[:1], jax.random.key(8), XTTS)
    assert c1 != c2


@pytest.mark.parametrize("sampling", [GREEDY, XTTS], ids=["greedy", "xtts-sampling"])
def test_stream_yields_the_same_tokens_as_batch(synth, conds, sampling):
    row = P.text_tokens("Streaming works.", synth.model.config)
    want = synth.codes([row], conds[:1], jax.random.key(0), sampling)[0]
    pieces = list(stream_codes(synth.model, conds[0], row, jax.random.key(0), sampling, chunk_tokens=5))
    assert [len(p) for p, _ in pieces][:-1] == [5] * (len(pieces) - 1) and pieces[-1][1]
    assert sum((p for p, _ in pieces), []) == want
    if sampling is XTTS:
        return
    audio = list(synth.stream("Streaming works.", conds[0], jax.random.key(0), GREEDY, chunk_tokens=5))
    assert len(audio) >= 2
    assert sum(len(a) for a in audio) == len(synth.render(want, conds[0], row))


def test_stream_renders_windows_close_to_the_whole_sentence(synth, conds, monkeypatch):
    """Windowed streaming renders O(length) tokens in all, and its audio matches the one-shot render
    (same length, log-mel close): each window starts ``context_tokens`` before the new samples."""
    from xtts_jax.audio.mel import log_mel

    sampling = dataclasses.replace(GREEDY, max_new_tokens=40, stop_token=None)
    row = P.text_tokens("A longer sentence streams in many chunks.", synth.model.config)
    codes = synth.codes([row], conds[:1], jax.random.key(1), sampling)[0]
    whole = synth.render(codes, conds[0], row)
    rendered = []
    real = P.render_dvae_codes
    monkeypatch.setattr(streaming, "render_dvae_codes", lambda d, v, c, s=None, **kw: rendered.append(len(c)) or real(d, v, c, s, **kw))
    pieces = list(synth.stream("A longer sentence streams in many chunks.", conds[0], jax.random.key(1), sampling,
                               chunk_tokens=4, context_tokens=6))
    streamed = np.concatenate(pieces)
    assert len(codes) == 40 and len(streamed) == len(whole)
    assert max(rendered) <= 4 + 6 + 1 < len(codes)  # never the whole sentence again
    # Griffin-Lim of windows is as faithful to the DVAE's log-mel as Griffin-Lim of the sentence
    dvae = synth.dvae
    target = np.asarray(P._dvae_mel(dvae, jnp.asarray(codes, jnp.int32)))
    mean, std = dvae.cfg.mel_stats.arrays() if dvae.cfg.mel_stats is not None else (0.0, 1.0)
    target = target * std + mean
    err = {k: np.abs(log_mel(w, dvae.cfg.mel)[:, :target.shape[1]] - target[:, :len(w) // 256 + 1]).mean()
           for k, w in (("streamed", streamed), ("whole", whole))}
    assert err["streamed"] <= 1.2 * err["whole"]


def test_speaker_embedding_files(tmp_path):
    good = np.ones((3, 64), np.float32)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "vec.npy", good[0])
    assert P.load_speaker_embedding(tmp_path / "good.npy", 64).shape == (3, 64)
    assert P.load_speaker_embedding(tmp_path / "vec.npy", 64).shape == (1, 64)
    bad = {"shape": np.ones((3, 63), np.float32), "float32": np.ones(64, np.float64),
           "NaN": np.full(64, np.nan, np.float32), "objects": np.array([{"a": 1}], dtype=object)}
    for why, arr in bad.items():
        np.save(tmp_path / "bad.npy", arr, allow_pickle=True)
        with pytest.raises(UserError, match=why):
            P.load_speaker_embedding(tmp_path / "bad.npy", 64)
    with pytest.raises(UserError, match="does not exist"):
        P.load_speaker_embedding(tmp_path / "none.npy", 64)
    # each refusal says what the file itself is
    np.save(tmp_path / "seven.npy", np.ones(7, np.float32))
    (tmp_path / "text.npy").write_text("not numbers at all\n")
    np.savez(tmp_path / "archive.npz", a=good)
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "good.npy").read_bytes()[:-40])
    (tmp_path / "folder.npy").mkdir()
    for name, why in (("seven", r"got \(7,\)$"), ("text", "is not a .npy file"), ("archive", "is an .npz archive"),
                      ("cut", "damaged"), ("folder", "is a directory, not a file")):
        with pytest.raises(UserError, match=why):
            P.load_speaker_embedding(tmp_path / f"{name}.npy", 64)


def test_speaker_from_wav(synth, tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(3)
    sf.write(tmp_path / "ref.wav", 0.1 * rng.standard_normal(22050).astype(np.float32), 22050)
    emb = P.speaker_from_wavs(synth.model, [str(tmp_path / "ref.wav")])
    cfg = synth.model.config.conditioning
    assert emb.shape == (cfg.num_latents, cfg.n_embd) and emb.dtype == np.float32
    # the perceiver ends in an RMSNorm with unit gains: every latent has RMS 1
    np.testing.assert_allclose(np.sqrt(np.mean(emb**2, axis=1)), 1.0, rtol=1e-4)
    no_cond = dataclasses.replace(synth, model=eqx.tree_at(lambda m: m.conditioner, synth.model, None))
    with pytest.raises(UserError, match="no conditioning encoder"):
        P.speaker_from_wavs(no_cond.model, [str(tmp_path / "ref.wav")])


def test_latent_vocoder_reads_the_model_latents(synth, conds):
    """A HiFiGAN that reads GPT latents (XTTS-v2's decoder layout) renders one latent per audio
    input position [start, codes...], stretched 4x to mel frames, then upsampled to samples."""
    from xtts_jax.models.hifigan import PRESETS as HIFI, HifiganGenerator

    cfg = dataclasses.replace(HIFI["tiny"], in_channels=64, upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8),
                              input_interpolation=(4.0,), conv_pre_weight_norm=False, conv_post_weight_norm=False)
    rng = np.random.default_rng(4)
    shapes = eqx.filter_eval_shape(lambda: HifiganGenerator(cfg, key=jax.random.key(0)))
    gen = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape, np.float32))
                       if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)
    latent_synth = dataclasses.replace(synth, vocoder=Vocoder.hifigan(gen), dvae=None)
    row = P.text_tokens("Hi.", synth.model.config)
    wave = latent_synth.render([3, 4, 5], conds[0], row)
    assert wave.shape == (4 * 4 * 4 * 4,) and np.all(np.isfinite(wave))
    # other conditioning, other latents, other audio
    assert not np.allclose(wave, latent_synth.render([3, 4, 5], conds[0] * 0, row))


class _Scripted:
    """A mel decoder that hands the real one's audio through ``effects`` in turn (a factor, or an
    exception to raise), so tests can make a sentence loud, silent or fail."""

    def __init__(self, real: Vocoder, *effects):
        self.real, self.effects = real, list(effects)
        self.features, self.backend, self.sample_rate, self.speaker_dim = "mel", "scripted", real.sample_rate, 0

    def decode(self, features, speaker=None):
        effect = self.effects.pop(0) if len(self.effects) > 1 else self.effects[0]
        if isinstance(effect, Exception):
            raise effect
        return effect * self.real.decode(features, speaker)


def test_long_text_reports_progress_while_rendering(synth, conds, monkeypatch):
    """Rendering is reported as it goes (every batch_size sentences), not only sampling: a long
    text is never minutes of silence after the last 'sampled' line."""
    events = []
    real = synth.render
    monkeypatch.setattr(synth, "render", lambda *a: events.append("render") or real(*a))
    text = " ".join(["The cat sat.", "It was warm."] * 10)
    synth.synthesize([text], conds[:1], jax.random.key(0), GREEDY, batch_size=8, progress=events.append)
    renders = [n for n, e in enumerate(events) if e == "render"]
    assert len(renders) == 20
    during = [e for e in events[renders[0]:renders[-1]] if e != "render"]
    assert [e.split(",")[0] for e in during] == ["rendered 8/20 sentences", "rendered 16/20 sentences"], events
    assert events[-1].startswith("rendered 20/20 sentences, ") and events[-1].endswith(" s of audio")


def test_a_loud_decoder_is_scaled_below_full_scale_not_clipped(synth, conds):
    """A decoder that overshoots (10x a Griffin-Lim render) gives the same waveform scaled to a
    peak of 0.99 (``audio.io.PEAK``), batch and streamed: nothing reaches full scale, where
    clipping cut it before."""
    key = jax.random.key(0)
    quiet = synth.synthesize(["The cat sat."], conds[:1], key, GREEDY)[0]
    loud_synth = dataclasses.replace(synth, vocoder=_Scripted(synth.vocoder, 10.0))
    loud = loud_synth.synthesize(["The cat sat."], conds[:1], key, GREEDY)[0]
    assert 10 * np.abs(quiet).max() > 1.5  # it would have been clipped
    assert loud.shape == quiet.shape
    np.testing.assert_allclose(np.abs(loud).max(), 0.99, rtol=1e-6)
    assert np.corrcoef(loud, quiet)[0, 1] > 0.9999
    pieces = list(loud_synth.stream("The cat sat.", conds[0], key, GREEDY, chunk_tokens=4))
    assert max(np.abs(p).max() for p in pieces) <= 0.99 + 1e-6
    assert sum(map(len, pieces)) == len(loud)


def test_silent_and_failed_sentences_are_reported_not_dropped(synth, conds, monkeypatch):
    """A sentence with no audio tokens, one that renders as silence and one the decoder fails on
    are each named in a warning; the others still render."""
    from xtts_jax.errors import UserError as DecodeError

    scripted = dataclasses.replace(synth, vocoder=_Scripted(synth.vocoder, 0.0, DecodeError("bad frames"), 1.0))
    monkeypatch.setattr(scripted, "codes", lambda rows, *a: [[], [1, 2, 3], [4, 5, 6], [7, 8, 9]][:len(rows)])
    text = "One. Two is quiet. Three fails. Four works."
    messages = []
    (wave,) = scripted.synthesize([text], conds[:1], jax.random.key(0), GREEDY, progress=messages.append)
    warned = [m for m in messages if m.startswith("warning:")]
    assert len(warned) == 3, messages
    assert "sentence 1/4 ('One.') got no audio tokens" in warned[0]
    assert "sentence 2/4 ('Two is quiet.') rendered as silence" in warned[1]
    assert "sentence 3/4 ('Three fails.') failed to render and is left out: bad frames" in warned[2]
    gap = int(synth.gap_seconds * synth.sample_rate)
    assert len(wave) == 3 * gap + 2 * (3 * 4 - 1) * 256  # sentences 2 and 4: 3 tokens, 12 frames, 11 hops each
    with pytest.warns(UserWarning, match="sentence 3/4"):
        scripted.vocoder.effects = [0.0, DecodeError("bad frames"), 1.0]
        scripted.synthesize([text], conds[:1], jax.random.key(0), GREEDY)
