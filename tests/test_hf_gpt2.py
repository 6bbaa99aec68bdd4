"""Our GPT against transformers' GPT2LMHeadModel: logits, weight round trip, bad checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file, save_file  # noqa: E402

from xtts_jax.convert.hf_gpt2 import load_hf_gpt2, save_hf_gpt2  # noqa: E402
from xtts_jax.errors import UserError  # noqa: E402


def _hf_model(tmp_path, tie=True, activation="gelu_new", **kw):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=48, vocab_size=203,
                                  activation_function=activation, tie_word_embeddings=tie, **kw)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # random, non-trivial biases and norms so every tensor matters
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


@pytest.mark.parametrize("tie,activation", [(True, "gelu_new"), (False, "relu")])
@pytest.mark.parametrize("scan", [True, False])
def test_logits_match_transformers(tmp_path, tie, activation, scan):
    hf, folder = _hf_model(tmp_path, tie=tie, activation=activation)
    ours = load_hf_gpt2(folder, scan_layers=scan, compute_dtype="float32")
    tokens = np.random.default_rng(0).integers(0, 203, size=(2, 48))
    with torch.no_grad():
        want = hf(torch.tensor(tokens)).logits.numpy()
    got = np.asarray(jax.vmap(ours)(jnp.asarray(tokens)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_round_trip_reproduces_tensors(tmp_path):
    _, folder = _hf_model(tmp_path)
    save_hf_gpt2(load_hf_gpt2(folder), tmp_path / "out")
    before, after = load_file(folder / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(before) == sorted(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    # and transformers loads what we wrote
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out")
    assert reloaded.config.n_layer == 3


def test_pytorch_bin_with_bare_keys(tmp_path):
    hf, folder = _hf_model(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((folder / "config.json").read_text())
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    torch.save(state, bare / "pytorch_model.bin")
    ours = load_hf_gpt2(bare)
    tokens = np.arange(20) % 203
    with torch.no_grad():
        want = hf(torch.tensor(tokens[None])).logits[0].numpy()
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(tokens))), want, atol=1e-4, rtol=0)


def test_missing_key_and_wrong_shape_are_named(tmp_path):
    _, folder = _hf_model(tmp_path)
    state = load_file(folder / "model.safetensors")
    missing = dict(state)
    del missing["transformer.h.1.mlp.c_fc.bias"]
    save_file(missing, str(folder / "model.safetensors"))
    with pytest.raises(UserError, match=r"missing 'transformer.h.1.mlp.c_fc.bias'"):
        load_hf_gpt2(folder)
    state["transformer.h.2.attn.c_proj.weight"] = np.zeros((64, 32), np.float32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(UserError, match=r"'transformer.h.2.attn.c_proj.weight' has shape \(64, 32\), expected \(64, 64\)"):
        load_hf_gpt2(folder)


def test_unsupported_config_is_refused(tmp_path):
    _, folder = _hf_model(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["activation_function"] = "quick_gelu"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="activation_function 'quick_gelu'"):
        load_hf_gpt2(folder)
