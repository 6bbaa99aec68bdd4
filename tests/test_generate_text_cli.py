"""tools/generate_text.py end to end: a trainer export and a Hugging Face folder, and bad input."""

import subprocess
import sys
from pathlib import Path

import jax

from xtts_jax.convert.hf_gpt2 import save_hf_gpt2
from xtts_jax.inference.sampling import SamplingConfig, generate
from xtts_jax.models.gpt import GPT
from xtts_jax.models.gpt_config import get_config
from xtts_jax.text.tokenizer import EOT_ID, decode, encode
from xtts_jax.train.checkpoint import export_safetensors
from xtts_jax.train.lm import LMTask

TOOL = Path(__file__).resolve().parents[1] / "tools" / "generate_text.py"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300)


def test_greedy_output_matches_in_process_generation(tmp_path):
    cfg = get_config("nano", block_size=32)
    model = GPT(cfg, key=jax.random.key(4))
    export_safetensors(model, str(tmp_path / "model.safetensors"), {"config": {"task": LMTask(cfg).to_dict()}})
    save_hf_gpt2(model, tmp_path / "hf")
    want = generate(model, [encode("Once upon a time")], jax.random.key(0),
                    SamplingConfig(temperature=0.0, max_new_tokens=10, stop_token=EOT_ID))[0]
    for source in (["--checkpoint", str(tmp_path)], ["--hf", str(tmp_path / "hf")]):
        out = run(*source, "--prompt", "Once upon a time", "--temperature", "0", "--max-new-tokens", "10")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == "Once upon a time" + decode(want).splitlines()[0]


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path):
    out = run("--checkpoint", str(tmp_path / "nope.safetensors"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr
    (tmp_path / "hf").mkdir()
    out = run("--hf", str(tmp_path / "hf"))
    assert out.returncode == 2 and "no config.json" in out.stderr and "Traceback" not in out.stderr


def test_prompt_words_outside_a_compact_vocabulary_are_refused_by_name(tmp_path):
    """A corpus-compacted model cannot read a word its corpus never had: refused by name, never dropped."""
    from xtts_jax.text.vocab import VocabMap

    vocab = VocabMap(tuple(sorted(set(encode("Once upon a time there was a cat.")) | {EOT_ID})))
    cfg = get_config("nano", block_size=32, vocab_size=vocab.size)
    export_safetensors(GPT(cfg, key=jax.random.key(4)), str(tmp_path / "model.safetensors"),
                       {"config": {"task": LMTask(cfg, vocab).to_dict()}})
    ok = run("--checkpoint", str(tmp_path), "--prompt", "Once upon a time", "--max-new-tokens", "3")
    assert ok.returncode == 0, ok.stderr
    out = run("--checkpoint", str(tmp_path), "--prompt", "Once upon a time a zebra 🦓 was there")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{vocab.size}-token vocabulary lacks 'zebra', '🦓' (at " in lines[0], out.stderr


def test_broken_checkpoint_files_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "random.safetensors").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "folder.safetensors").mkdir()
    for name, want in (("random", "is not a safetensors file"), ("empty", "is not a safetensors file (it is empty)"),
                       ("folder", "folder.safetensors/model.safetensors does not exist")):
        out = run("--checkpoint", str(tmp_path / f"{name}.safetensors"))
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and want in lines[0], out.stderr
