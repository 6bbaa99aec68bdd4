"""Import an XTTS-v2 GPT checkpoint and compare with a PyTorch XTTS GPT (max |diff| <= 1e-4, fp32).

The reference is written here from the published architecture (coqui-ai TTS ``xtts/gpt.py``: a
transformers ``GPT2Model`` driven with ``inputs_embeds`` and zero position embeddings, own text and
mel embeddings and positions, ``final_norm``, two heads; ``xtts/latent_encoder.py``'s conditioning
encoder; ``xtts/perceiver_encoder.py``'s resampler), given random weights at a tiny size, saved
as coqui saves ``model.pth`` (``{"model": state_dict}``, ``gpt.*`` keys) and read back.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nn = torch.nn

from xtts_jax.convert.xtts import infer_config, load_xtts_gpt, tortoise_groups  # noqa: E402
from xtts_jax.errors import UserError  # noqa: E402
from xtts_jax.inference.tts import load_tts  # noqa: E402
from xtts_jax.models.conditioning import XTTS_MEL, ConditioningConfig  # noqa: E402
from xtts_jax.models.gpt_config import GPTConfig  # noqa: E402
from xtts_jax.models.tts import PRESETS, TTSConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# head width 64, as XTTS-v2, so that the config can be inferred from shapes alone
MEL_STATS = tuple(float(x) for x in np.linspace(1.5, 4.0, 20, dtype=np.float32))  # Xtts's mel_stats buffer
TINY = TTSConfig(gpt=GPTConfig(n_layer=2, n_head=2, n_embd=128), text_vocab_size=300, text_start_token=261,
                 text_stop_token=0, text_positions=24, audio_positions=40, num_audio_codes=32, tokenizer="xtts",
                 max_new_audio_tokens=34, sample_audio_start=True,  # coqui's generation: 40 - 3 - 1 - 2 steps
                 conditioning=ConditioningConfig(n_mels=20, n_embd=128, n_head=2, n_blocks=2, num_groups=32,
                                                 num_latents=8, perceiver_depth=2, perceiver_heads=2,
                                                 perceiver_head_dim=64, ff_mult=2, chunking="xtts",
                                                 mel=dataclasses.replace(XTTS_MEL, n_mels=20), mel_norms=MEL_STATS))


class AttentionBlock(nn.Module):
    """coqui's XTTS ``latent_encoder.AttentionBlock``: the residual is the GroupNorm *output*
    (``from_norm``); Tortoise's ``arch_utils.AttentionBlock`` adds the input (``from_norm=False``)."""

    def __init__(self, d, heads):
        super().__init__()
        self.norm, self.heads, self.from_norm = nn.GroupNorm(tortoise_groups(d), d), heads, True
        self.qkv, self.proj_out = nn.Conv1d(d, 3 * d, 1), nn.Conv1d(d, d, 1)

    def forward(self, x):  # [B, C, T]
        xn = self.norm(x)
        qkv = self.qkv(xn)
        b, width, t = qkv.shape
        ch = width // (3 * self.heads)
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, t).split(ch, dim=1)  # per head: q, k, v channels
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
        h = self.proj_out(torch.einsum("bts,bcs->bct", w, v).reshape(b, -1, t))
        return (xn if self.from_norm else x) + h


class ConditioningEncoder(nn.Module):
    def __init__(self, c: ConditioningConfig):
        super().__init__()
        self.init = nn.Conv1d(c.n_mels, c.n_embd, 1)
        self.attn = nn.Sequential(*[AttentionBlock(c.n_embd, c.n_head) for _ in range(c.n_blocks)])

    def forward(self, mel):
        return self.attn(self.init(mel))


class PerceiverAttention(nn.Module):
    def __init__(self, d, heads, dim_head):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(d, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(d, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, d, bias=False)

    def forward(self, x, context):
        context = torch.cat([x, context], dim=1)  # cross_attn_include_queries: latents first
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        k, v = self.to_kv(context).chunk(2, dim=-1)
        out = torch.softmax(split(self.to_q(x)) @ split(k).transpose(-1, -2) / math.sqrt(k.shape[-1] // self.heads), -1)
        return self.to_out((out @ split(v)).transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return torch.nn.functional.gelu(gate) * x


class Perceiver(nn.Module):
    def __init__(self, c: ConditioningConfig):
        super().__init__()
        d, ff = c.n_embd, int(c.n_embd * c.ff_mult * 2 / 3)
        self.latents = nn.Parameter(torch.zeros(c.num_latents, d))
        self.layers = nn.ModuleList([nn.ModuleList([
            PerceiverAttention(d, c.perceiver_heads, c.perceiver_head_dim),
            nn.Sequential(nn.Linear(d, 2 * ff), GEGLU(), nn.Linear(ff, d))]) for _ in range(c.perceiver_depth)])
        self.norm = nn.Module()
        self.norm.gamma = nn.Parameter(torch.ones(d))

    def forward(self, context):  # [B, T, d]
        x = self.latents.expand(context.shape[0], -1, -1)
        for attn, ff in self.layers:
            x = attn(x, context) + x
            x = ff(x) + x
        return torch.nn.functional.normalize(x, dim=-1) * math.sqrt(x.shape[-1]) * self.norm.gamma


class Positions(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.emb = nn.Embedding(n, d)

    def forward(self, ids):
        return self.emb(torch.arange(ids.shape[1]))


class XttsGPT(nn.Module):
    def __init__(self, cfg: TTSConfig):
        super().__init__()
        d, g = cfg.gpt.n_embd, cfg.gpt
        self.conditioning_encoder = ConditioningEncoder(cfg.conditioning)
        self.conditioning_perceiver = Perceiver(cfg.conditioning)
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, d)
        self.mel_embedding = nn.Embedding(cfg.audio_vocab_size, d)
        self.text_pos_embedding = Positions(cfg.text_positions, d)
        self.mel_pos_embedding = Positions(cfg.audio_positions, d)
        self.gpt = transformers.GPT2Model(transformers.GPT2Config(
            vocab_size=1, n_positions=cfg.text_positions + cfg.audio_positions + 64, n_embd=d, n_layer=g.n_layer,
            n_head=g.n_head, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0))
        self.final_norm = nn.LayerNorm(d)
        self.text_head = nn.Linear(d, cfg.text_vocab_size)
        self.mel_head = nn.Linear(d, cfg.audio_vocab_size)

    def style(self, mel):  # [B, n_mels, T] -> [B, N, d]
        return self.conditioning_perceiver(self.conditioning_encoder(mel).transpose(1, 2))

    def forward(self, cond, text, audio):
        emb = torch.cat([cond, self.text_embedding(text) + self.text_pos_embedding(text),
                         self.mel_embedding(audio) + self.mel_pos_embedding(audio)], dim=1)
        h = self.final_norm(self.gpt(inputs_embeds=emb).last_hidden_state[:, cond.shape[1]:])
        n = text.shape[1]
        return self.text_head(h[:, :n]), self.mel_head(h[:, n:]), h[:, n:]


def xtts_state_dict(ref: XttsGPT) -> dict:
    """coqui's layout: everything under ``gpt.``; the GPT2Model's wte and wpe are not stored."""
    return {"gpt." + k: v.clone() for k, v in ref.state_dict().items() if k not in ("gpt.wte.weight", "gpt.wpe.weight")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.manual_seed(0)
    ref = XttsGPT(TINY).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            gain = p.ndim == 1 and ("norm" in name or "ln_" in name) and name.endswith(("weight", "gamma"))
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if gain else 0.05 * torch.randn_like(p))
        ref.gpt.wpe.weight.zero_()  # coqui: null position embeddings
    path = tmp_path_factory.mktemp("xtts") / "model.pth"
    extra = {"hifigan_decoder.waveform_decoder.conv_pre.weight": torch.zeros(4, 3, 7)}  # read elsewhere
    extra["mel_stats"] = torch.tensor(MEL_STATS)
    torch.save({"model": {**xtts_state_dict(ref), **extra}, "config": {}}, path)
    return ref, path


@pytest.fixture(scope="module")
def imported(reference):
    return load_xtts_gpt(reference[1])


def _inputs():
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(1, TINY.conditioning.n_mels, 30)).astype(np.float32)
    text = np.array([[TINY.text_start_token, *rng.integers(1, 300, 9), TINY.text_stop_token]])
    audio = np.array([[TINY.audio_start_token, *rng.integers(0, 32, 14), TINY.audio_stop_token]])
    return mel, text, audio


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_config_inferred_from_shapes(imported):
    assert imported.config == TINY


def test_text_and_audio_logits_and_latents_match_torch(reference, imported):
    ref, _ = reference
    mel, text, audio = _inputs()
    with torch.no_grad():
        cond = ref.style(torch.from_numpy(mel))
        want = [t[0].numpy() for t in ref(cond, torch.from_numpy(text), torch.from_numpy(audio))]
    got = eqx.filter_jit(lambda m, c, t, a: m(c, t, a))(imported, cond[0].numpy(), text[0], audio[0])
    for name, g, w in zip(("text logits", "audio logits", "latents"), got, want):
        assert g.shape == w.shape, name
        assert _max_diff(g, w) <= 1e-4, f"{name}: max |diff| {_max_diff(g, w):.2e}"


def _conditioning_diff(ref, imported, from_norm: bool) -> float:
    mel = _inputs()[0]
    for block in ref.conditioning_encoder.attn:
        block.from_norm = from_norm
    with torch.no_grad():
        want = ref.style(torch.from_numpy(mel))[0].numpy()
    for block in ref.conditioning_encoder.attn:
        block.from_norm = True
    got = eqx.filter_jit(lambda m, x: m.conditioner(x))(imported, mel[0])
    assert got.shape == want.shape
    return _max_diff(got, want)


def test_conditioning_latents_match_xtts(reference, imported):
    """Key mapping, conv transposes, per-head qkv layout, XTTS's residual from the norm, perceiver."""
    assert _conditioning_diff(*reference[:1], imported, from_norm=True) <= 1e-4
    # Tortoise's residual (from the block input) is a different function: the comparison can fail
    assert _conditioning_diff(*reference[:1], imported, from_norm=False) > 1e-2


def test_xtts_v2_config_inferred_from_published_shapes():
    """The full-size layout, built on torch's meta device (no memory), infers our xtts-v2 preset."""
    full = dataclasses.replace(PRESETS["xtts-v2"], text_vocab_size=6681, text_start_token=261, text_stop_token=0,
                               tokenizer="xtts", conditioning=dataclasses.replace(
                                   PRESETS["xtts-v2"].conditioning, mel=XTTS_MEL, chunking="xtts"),
                               max_new_audio_tokens=602, sample_audio_start=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in xtts_state_dict(XttsGPT(full)).items()}
    assert shapes["gpt.text_embedding.weight"] == (6681, 1024) and shapes["gpt.mel_embedding.weight"] == (1026, 1024)
    inferred = infer_config({k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()})
    assert inferred == full
    # coqui caps XTTS-v2 at max_gen_mel_tokens = gpt_max_audio_tokens 605 - 1 - 2 = 602 steps; ours at 606 otherwise
    assert inferred.generation_limit == 602 and PRESETS["xtts-v2"].generation_limit == 606


def _state(reference) -> dict:
    return {**xtts_state_dict(reference[0]), "mel_stats": torch.tensor(MEL_STATS)}


def test_bad_checkpoints(reference, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_xtts_gpt(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_xtts_gpt(tmp_path / "text.pth")
    torch.save({"model": {"hifigan_decoder.conv.weight": torch.zeros(2)}}, tmp_path / "vocoder.pth")
    with pytest.raises(UserError, match="not an XTTS checkpoint"):
        load_xtts_gpt(tmp_path / "vocoder.pth")
    state = _state(reference)
    del state["gpt.final_norm.bias"]
    with pytest.raises(UserError, match="gpt.final_norm.bias"):
        load_xtts_gpt(state)
    with pytest.raises(UserError, match=r"text_pos_embedding.*shape \(24, 128\)"):
        load_xtts_gpt(_state(reference), dataclasses.replace(TINY, text_positions=30))
    with pytest.raises(UserError, match="num_groups"):
        load_xtts_gpt(_state(reference), dataclasses.replace(
            TINY, conditioning=dataclasses.replace(TINY.conditioning, num_groups=8)))
    state = {**_state(reference), "gpt.prompt_embedding.weight": torch.zeros(3, 128)}
    with pytest.raises(UserError, match="does not use, e.g. gpt.prompt_embedding.weight"):
        load_xtts_gpt(state)
    # a bare state dict from coqui's GPTTrainer (keys under xtts.) loads as well
    # (with the causal-mask buffers older transformers versions saved per block, which are not weights)
    trainer = {"xtts." + k: v for k, v in _state(reference).items()}
    trainer["xtts.gpt.gpt.h.0.attn.bias"] = torch.ones(1, 1, 4, 4)
    trainer["xtts.gpt.gpt.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    # ...and the GPT2InferenceModel wrapper's copies of the same modules, once coqui has sampled
    trainer["xtts.gpt.gpt_inference.transformer.h.0.ln_1.weight"] = trainer["xtts.gpt.gpt.h.0.ln_1.weight"]
    trainer["xtts.gpt.gpt_inference.lm_head.1.weight"] = trainer["xtts.gpt.mel_head.weight"]
    assert load_xtts_gpt(trainer).config == TINY


def _cli():
    spec = importlib.util.spec_from_file_location("convert_xtts", ROOT / "tools" / "convert_xtts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_writes_loadable_safetensors(reference, imported, tmp_path, capsys):
    out = tmp_path / "tts.safetensors"
    with pytest.raises(SystemExit) as e:
        _cli()(["--checkpoint", str(reference[1]), "-o", str(out)])
    assert e.value.code == 0
    assert "GPT: 2 layers, d 128, 2 heads" in capsys.readouterr().out
    loaded = load_tts(out)
    assert loaded.config == TINY
    for a, b in zip(jax.tree.leaves(eqx.filter(loaded, eqx.is_array)), jax.tree.leaves(eqx.filter(imported, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "bad.pth").write_bytes(b"\x00garbage")
    for argv in (["--checkpoint", str(tmp_path / "bad.pth"), "-o", str(tmp_path / "o.safetensors")],
                 ["--checkpoint", str(tmp_path / "none.pth"), "-o", str(tmp_path / "o.safetensors")],
                 ["--checkpoint", str(tmp_path / "bad.pth"), "-o", str(tmp_path / "o.npz")]):
        with pytest.raises(SystemExit) as e:
            _cli()(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
