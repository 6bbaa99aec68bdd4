"""The speech-corpus recipe: sentence handling, splits and engine checks need no engine; one
end-to-end run uses espeak-ng when the machine has it (`apt-get install espeak-ng`)."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from xtts_jax.audio.datasets import load_dataset
from xtts_jax.errors import UserError

_spec = importlib.util.spec_from_file_location(
    "make_speech_corpus", Path(__file__).resolve().parents[1] / "recipes" / "make_speech_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = corpus  # dataclasses look their module up there
_spec.loader.exec_module(corpus)


def test_split_sentences_keeps_quotes_and_titles_together():
    text = ('He said, "Stop. Wait for me!" Then he ran. Mr. Smith ate 3 pies.\n\n'
            "Too short. Is this the second paragraph? It is.")
    assert corpus.split_sentences(text) == [
        'He said, "Stop. Wait for me!"', "Then he ran.", "Mr. Smith ate 3 pies.",
        "Is this the second paragraph?",
    ]


def test_eval_split_is_about_five_percent_and_stable():
    sentences = [f"This is test sentence number {i}." for i in range(4000)]
    held = [s for s in sentences if corpus.is_eval_sentence(s, 0.05)]
    assert 0.04 < len(held) / len(sentences) < 0.06
    assert held == [s for s in reversed(sentences) if corpus.is_eval_sentence(s, 0.05)][::-1]


def test_plan_holds_out_voices_and_sentences():
    voices = list(corpus.VOICES[:4])
    sentences = [f"Sentence {i} is here." for i in range(200)]
    jobs = corpus.plan(voices, sentences, {"flite_rms"}, 0.05, per_voice=50, seed=1)
    eval_idx = {i for i, s in enumerate(sentences) if corpus.is_eval_sentence(s, 0.05)}
    assert eval_idx and all(i not in eval_idx for _, i in jobs["train"])
    assert {v.speaker for v, _ in jobs["eval_voices"]} == {"flite_rms"}
    assert "flite_rms" not in {v.speaker for v, _ in jobs["train"] + jobs["eval"]}
    per_voice = {}
    for v, i in jobs["train"]:
        per_voice.setdefault(v.speaker, []).append(i)
    assert sorted(len(x) for x in per_voice.values()) == [50, 50, 50]
    assert len({tuple(x) for x in per_voice.values()}) == 3  # each voice reads its own subset
    assert jobs == corpus.plan(voices, sentences, {"flite_rms"}, 0.05, per_voice=50, seed=1)


def test_missing_engine_names_the_apt_package(monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=r"apt-get install -y espeak-ng flite"):
        corpus.check_engines([corpus.VOICES[0], corpus.VOICES[5]])


def test_engine_commands_pass_text_through_a_file(tmp_path):
    txt, wav = tmp_path / "t.txt", tmp_path / "o.wav"
    by = {v.speaker: v for v in corpus.VOICES}
    assert corpus.engine_command(by["flite_slt"], txt, wav) == ["flite", "-voice", "slt", "-f", str(txt), "-o", str(wav)]
    cmd = corpus.engine_command(by["espeak_us_f5"], txt, wav)
    assert cmd[:3] == ["espeak-ng", "-v", "en-us+f5"] and cmd[-4:] == ["-f", str(txt), "-w", str(wav)]
    # en-gb+VARIANT would silently drop the variant; no built-in voice may use it
    assert not any(v.voice.startswith("en-gb+") for v in corpus.VOICES)
    # every built-in voice is its own speaker: no two share an id or an engine invocation
    assert len({v.speaker for v in corpus.VOICES}) == len(corpus.VOICES)
    assert len({(v.engine, v.voice, v.args) for v in corpus.VOICES}) == len(corpus.VOICES)
    # the held-out espeak-ng voices keep their variants out of training: no other voice uses m7 or f2
    held = [v for v in corpus.VOICES if v.speaker in ("espeak_us_m7", "espeak_rp_f2")]
    assert not any(v.voice.split("+")[-1] in ("m7", "f2") for v in corpus.VOICES if v not in held)


def test_cli_rejects_unknown_voice(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        corpus.main(["--out", str(tmp_path), "--voices", "robot9000"])
    assert e.value.code == 2 and "unknown voice(s) robot9000" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_end_to_end_with_espeak_is_deterministic(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("The cat sat on the warm mat. A red kite flew over the hill. "
                    "We ate soup for lunch today. Rain fell all night long. Birds sang at dawn again.")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        with pytest.raises(SystemExit) as e:
            corpus.main(["--out", str(out), "--text", str(text), "--voices", "espeak_f3,espeak_m3,espeak_croak",
                         "--eval-voices", "espeak_croak", "--eval-fraction", "0.3", "--jobs", "1"])
        assert e.value.code == 0
        runs.append(out)
    train, report = load_dataset(runs[0] / "train.jsonl")
    assert report["skipped"] == 0 and {u.speaker for u in train} == {"espeak_f3", "espeak_m3"}
    held, _ = load_dataset(runs[0] / "eval_voices.jsonl")
    assert {u.speaker for u in held} == {"espeak_croak"}
    assert len(train) + len(load_dataset(runs[0] / "eval.jsonl")[0]) == 2 * 5
    info = sf.info(str(train[0].audio_path))
    assert info.samplerate == 22050 and info.channels == 1 and 0.8 < info.duration < 6
    for u in train:
        assert u.audio_path.read_bytes() == (runs[1] / u.audio_path.relative_to(runs[0])).read_bytes()


def test_sources_plan_the_generators_sentences():
    from xtts_jax.text.everyday import generate_sentences

    assert corpus.load_sentences(None, 60, 3) == corpus.load_sentences(None, 60, 3, "stories")
    assert corpus.load_sentences(None, 60, 3)[:2] == list(corpus.BUILTIN_SENTENCES[:2])  # default unchanged
    everyday = generate_sentences(3, 60)
    assert corpus.load_sentences(None, 60, 3, "everyday") == everyday
    mixed = corpus.load_sentences(None, 40, 3, "mixed", everyday_share=0.25)
    assert [s for s in mixed if s in set(everyday)] == everyday[:10]  # a quarter, in the generator's order
    assert mixed[:3] == list(corpus.BUILTIN_SENTENCES[:3]) and mixed[3] == everyday[0]


def test_interleave_keeps_the_share_in_every_prefix():
    merged = corpus.interleave(list("abcdefgh"), list("XYZ"), 0.3)
    assert sorted(merged) == sorted("abcdefghXYZ")
    assert all(sum(c.isupper() for c in merged[:k]) == int(k * 0.3) for k in range(1, 10))


def test_cli_rejects_text_with_source_and_a_bad_share(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("One two three four.")
    for extra, message in ((["--text", str(text), "--source", "everyday"], "not both"),
                           (["--source", "mixed", "--everyday-share", "1.5"], "--everyday-share 1.5")):
        with pytest.raises(SystemExit) as e:
            corpus.main(["--out", str(tmp_path), "--voices", "flite_slt", *extra])
        assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("text2wave") is None, reason="festival not installed (apt-get install festival)")
def test_festival_voice_reads_a_sentence(tmp_path):
    voice = {v.speaker: v for v in corpus.VOICES}["festival_kal"]
    seconds = corpus.synthesise(voice, "Call me at 9:30 on March 3rd.", tmp_path / "f.wav")
    assert 1.0 < seconds < 6 and sf.info(str(tmp_path / "f.wav")).samplerate == 22050
