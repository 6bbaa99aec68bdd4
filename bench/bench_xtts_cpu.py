"""XTTS-v2 on a CPU, side by side with PyTorch running what coqui-tts runs: decode, latents, decoder.

    python bench/bench_xtts_cpu.py --size tiny --repeats 2              # a smoke run, under a minute
    python bench/bench_xtts_cpu.py --size xtts-v2 --new-tokens 40 --repeats 5   # the comparison

The second is issue 22's comparison: run it with nothing else on the machine (PyTorch's two
threads slow down several times over when the load average passes the core count, so a busy
machine says nothing); a few minutes on the 2-core development CPU and about 6 GB of memory
(both models, and our decode's once-per-call copy of the layer weights). ``--layers 4`` keeps
XTTS-v2's width with fewer blocks, for a look in under a minute.

Both sides get the same random weights in XTTS-v2's layout (the PyTorch references of the tests:
``XttsGPT``, a transformers ``GPT2Model`` inside, and ``TorchXttsDecoder``, converted to ours in
memory by ``convert/xtts.py`` and ``convert/hifigan.py``). Three stages, interleaved within each
repeat so that both see the same machine, medians printed:

* decode: ``--new-tokens`` audio tokens at batch 1 after a prompt of 32 conditioning vectors, the
  text and the audio start token, with XTTS-v2's sampling (temperature 0.75, top-k 50, top-p
  0.85, repetition penalty 10, the stand-in prompt's ids counted as seen). PyTorch: transformers'
  ``generate`` with its KV cache on a GPT-2 wrapped as coqui's ``GPT2InferenceModel`` (prefix
  embeddings first, then mel embedding + mel position per new token, ``final_norm``, ``mel_head``);
  ours: the one-jit sampler (``inference/sampling.generate``). Neither stops early (the stop token
  is held off on both sides), so both make exactly ``--new-tokens``.
* latents: the GPT forward over [conditioning | text | start, codes, stop, stop] that gives the
  decoder its latents (coqui's ``return_latent`` pass); ours ``TTS.__call__`` jitted.
* decoder: the HiFiGAN decoder on those latents with a 512-d speaker embedding (weight norm
  removed on the PyTorch side, folded on ours).

Also printed: each JAX stage's first call (compile + run), the load average before and after,
and the threads each library may use. With ``--compile-cache DIR`` the programs go to (and come
from) JAX's persistent compilation cache, as ``tools/synthesize.py`` keeps it: the second run's
first calls are what a new process pays once the cache is filled.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the PyTorch references live with the tests
from xtts_jax.errors import UserError, run_cli  # noqa: E402


def build_models(size: str, n_layer: int | None = None):
    """(torch GPT reference, torch decoder, our TTS, our decoder) with the same random weights."""
    import torch
    from test_hifigan_import import TINY_XTTS, TorchXttsDecoder, _randomise
    from test_xtts_folder import _randomise_gpt
    from test_xtts_import import TINY, XttsGPT, xtts_state_dict

    from xtts_jax.convert.hifigan import load_xtts_hifigan_decoder
    from xtts_jax.convert.xtts import load_xtts_gpt
    from xtts_jax.models.conditioning import XTTS_MEL
    from xtts_jax.models.hifigan import fold_weight_norm, preset
    from xtts_jax.models.tts import PRESETS

    if size == "tiny":
        cfg = dataclasses.replace(TINY, text_positions=32, audio_positions=72, max_new_audio_tokens=66)
        dec_cfg = dataclasses.replace(TINY_XTTS, in_channels=cfg.gpt.n_embd, cond_channels=512)
    else:
        base = PRESETS["xtts-v2"]
        cfg = dataclasses.replace(base, text_vocab_size=6681, text_start_token=261, text_stop_token=0, tokenizer="xtts",
                                  conditioning=dataclasses.replace(base.conditioning, mel=XTTS_MEL, chunking="xtts"))
        dec_cfg = preset("xtts-v2")
    if n_layer:
        cfg = dataclasses.replace(cfg, gpt=dataclasses.replace(cfg.gpt, n_layer=n_layer))
    gpt = _randomise_gpt(XttsGPT(cfg))
    decoder = _randomise(TorchXttsDecoder(dec_cfg, "new"), seed=1)
    state = {**xtts_state_dict(gpt), **{"hifigan_decoder." + k: v for k, v in decoder.state_dict().items()}}
    ours = load_xtts_gpt(state)
    our_decoder = fold_weight_norm(load_xtts_hifigan_decoder(state, dec_cfg))
    for module in decoder.modules():  # inference without weight norm, as the folded one of ours
        for name in list(getattr(module, "parametrizations", {}) or {}):
            torch.nn.utils.parametrize.remove_parametrizations(module, name)
    return gpt, decoder, ours, our_decoder


def coqui_inference_model(gpt):
    """``gpt`` (the tests' XttsGPT) as coqui's ``GPT2InferenceModel``: a transformers model whose
    ``generate`` runs the GPT-2 blocks with a KV cache over prefix embeddings, then audio tokens."""
    import torch
    from transformers import GenerationMixin, GPT2PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    CACHE = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"

    class InferenceModel(GPT2PreTrainedModel, GenerationMixin):
        def __init__(self):
            super().__init__(gpt.gpt.config)
            self.transformer, self.ref, self.prefix = gpt.gpt, gpt, None

        def forward(self, input_ids=None, past_key_values=None, attention_mask=None, use_cache=True, **kwargs):
            cache = kwargs.get("cache", past_key_values)  # transformers 5 renamed past_key_values to cache
            n = self.prefix.shape[1]  # positions before the audio start token: conditioning and text
            past = cache.get_seq_length() if cache is not None else 0
            input_ids = input_ids[:, past:] if input_ids.shape[1] > 1 and past else input_ids
            mel_pos = (torch.arange(past, past + input_ids.shape[1]) - n).clamp(min=0)
            emb = self.ref.mel_embedding(input_ids) + self.ref.mel_pos_embedding.emb.weight[mel_pos][None]
            if past == 0:  # the first call: prefix embeddings in place of the stand-in ids
                emb = torch.cat([self.prefix, emb[:, n:]], dim=1)
            out = self.transformer(inputs_embeds=emb, attention_mask=attention_mask, use_cache=use_cache,
                                   **{CACHE: cache})
            logits = self.ref.mel_head(self.ref.final_norm(out.last_hidden_state))
            return CausalLMOutputWithPast(logits=logits, **{CACHE: getattr(out, CACHE)})

    return InferenceModel().eval()


def median_times(stages: dict, repeats: int) -> dict:
    """Median seconds per stage; every repeat runs each stage once, in turn (interleaved)."""
    times = {name: [] for name in stages}
    for _ in range(repeats):
        for name, fn in stages.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("tiny", "xtts-v2"), default="tiny")
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--text-tokens", type=int, default=24, help="text tokens between [START] and [STOP]")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", type=int, help="GPT blocks (default: the size's; fewer for a quick look at full width)")
    ap.add_argument("--side", choices=("both", "jax", "torch"), default="both",
                    help="time one library alone: in one process, each library's idle worker threads "
                         "(PyTorch's OpenMP pool spins after its calls) slow the other's; run jax and torch "
                         "as two processes for figures free of that")
    ap.add_argument("--compile-cache", metavar="DIR",
                    help="JAX's persistent compilation cache in DIR, as the tools keep it: run twice, and the "
                         "second run's first calls are a new process's with the programs already compiled")
    args = ap.parse_args(argv)
    if min(args.new_tokens, args.repeats, args.text_tokens, args.layers or 1) < 1:
        raise UserError("--new-tokens, --text-tokens, --repeats and --layers must be >= 1")

    import jax
    import jax.numpy as jnp
    import torch

    if args.compile_cache:
        os.environ["XTTS_JAX_CACHE"] = args.compile_cache
        from xtts_jax.compile_cache import enable

        enable()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, once per call

    from xtts_jax.inference import tts as P
    from xtts_jax.inference.sampling import SamplingConfig, generate
    from xtts_jax.inference.vocoder import Vocoder
    from xtts_jax.models.tts_decoder import TTSDecoder

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    gpt, torch_decoder, model, our_decoder = build_models(args.size, args.layers)
    model = P.inference_layout(model)  # as the Synthesizer holds it
    cfg = model.config
    if args.new_tokens > cfg.generation_limit:
        raise UserError(f"--new-tokens {args.new_tokens} exceeds the {cfg.generation_limit} the model generates")
    if args.text_tokens + 2 > cfg.text_positions:
        raise UserError(f"--text-tokens {args.text_tokens} exceeds the model's {cfg.text_positions - 2} text positions")
    print(f"built and converted random {args.size} weights in {time.perf_counter() - t0:.1f} s")

    rng = np.random.default_rng(0)
    cond = rng.standard_normal((cfg.conditioning.num_latents, cfg.gpt.n_embd)).astype(np.float32)
    text = [cfg.text_start_token, *rng.integers(3, cfg.text_vocab_size, args.text_tokens).tolist(), cfg.text_stop_token]
    speaker = rng.standard_normal(our_decoder.config.cond_channels).astype(np.float32)
    speaker /= np.linalg.norm(speaker)
    start, stop = cfg.audio_start_token, cfg.audio_stop_token
    settings = dict(temperature=0.75, top_k=50, top_p=0.85, repetition_penalty=10.0)

    # PyTorch, as coqui: HF generate from the stand-in ids (1 per prefix position, then start)
    hf = coqui_inference_model(gpt)
    with torch.no_grad():
        hf.prefix = torch.cat([torch.from_numpy(cond)[None], gpt.text_embedding(torch.tensor([text]))
                               + gpt.text_pos_embedding(torch.tensor([text]))], dim=1)
    stand_in = torch.tensor([[1] * hf.prefix.shape[1] + [start]])

    def torch_decode():
        with torch.no_grad():
            out = hf.generate(stand_in, attention_mask=torch.ones_like(stand_in), do_sample=True, num_beams=1,
                              bos_token_id=start, pad_token_id=stop, eos_token_id=stop, min_new_tokens=args.new_tokens,
                              max_new_tokens=args.new_tokens, **settings)
        return out[0, stand_in.shape[1]:].tolist()

    # ours: the same sampling through the one-jit sampler, no stop token
    dec = TTSDecoder(model, jnp.asarray(cond))
    prompt = dec.prompt(range(len(cond)), text)
    sampling = SamplingConfig(**settings, penalize_prompt=False, seen_tokens=(1, start), max_new_tokens=args.new_tokens)
    positions = len(cond) + cfg.text_positions + cfg.audio_positions
    key = [jax.random.key(0)]

    def jax_decode():
        key[0], sub = jax.random.split(key[0])
        return generate(dec, [prompt], sub, sampling, max_positions=positions, vocab_size=dec.prompt_vocab_size)[0]

    codes = rng.integers(0, cfg.num_audio_codes, args.new_tokens).tolist()
    audio = [start, *codes, stop, stop]  # coqui pads the generated codes with start and stop for this pass
    cond_t, text_t, audio_t = torch.from_numpy(cond)[None], torch.tensor([text]), torch.tensor([audio])

    def torch_latents():
        with torch.no_grad():
            return gpt(cond_t, text_t, audio_t)[2][:, :-2]

    def jax_latents():
        return np.asarray(P._latents(model, jnp.asarray(cond), jnp.asarray(text, jnp.int32),
                                     jnp.asarray(audio[:-2], jnp.int32)))

    vocoder = Vocoder.hifigan(our_decoder)
    first = {}
    t0 = time.perf_counter()
    latents = jax_latents()
    first["latents"] = time.perf_counter() - t0
    latents_t = torch.from_numpy(np.array(latents))[None]
    speaker_t = torch.from_numpy(speaker)[None, :, None]

    def torch_render():
        with torch.no_grad():
            return torch_decoder(latents_t, speaker_t)

    def jax_render():
        return vocoder.decode(latents, speaker)

    for name, fn in (("decode", jax_decode), ("decoder", jax_render)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
    if args.side != "jax":
        torch_decode(), torch_latents(), torch_render()  # warm-up
        assert len(torch_decode()) == args.new_tokens
    assert len(jax_decode()) == args.new_tokens
    stages = {"torch decode": torch_decode, "jax decode": jax_decode, "torch latents": torch_latents,
              "jax latents": jax_latents, "torch decoder": torch_render, "jax decoder": jax_render}
    stages = {k: v for k, v in stages.items() if args.side in ("both", k.split()[0])}
    median = median_times(stages, args.repeats)
    load_after = os.getloadavg()

    n_params = sum(p.numel() for p in gpt.gpt.parameters())
    print(f"size {args.size}: GPT {cfg.gpt.n_layer} layers, d {cfg.gpt.n_embd}, {n_params / 1e6:.0f}M parameters, fp32; "
          f"prompt {len(prompt)} positions; {args.new_tokens} new tokens; {len(latents)} latents -> "
          f"{len(jax_render()) / vocoder.sample_rate:.2f} s of audio")
    print(f"jax {jax.__version__} ({jax.default_backend()}, {os.cpu_count()} CPUs), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {__import__('transformers').__version__}")
    print(f"load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"after {'/'.join(f'{x:.2f}' for x in load_after)}; medians of {args.repeats} interleaved repeats\n")
    print("| stage | PyTorch (coqui's path) | JAX (ours) | PyTorch / JAX | JAX first call |")
    print("|---|---:|---:|---:|---:|")
    for stage in ("decode", "latents", "decoder"):
        t, j = median.get(f"torch {stage}"), median.get(f"jax {stage}")
        cell = lambda x: "-" if x is None else f"{x:.3f} s"  # noqa: E731
        rate = (" (" + " / ".join("-" if x is None else f"{args.new_tokens / x:.1f}" for x in (t, j)) + " tokens/s)"
                if stage == "decode" else "")
        ratio = f"{t / j:.2f}x" if t and j else "-"
        print(f"| {stage}{rate} | {cell(t)} | {cell(j)} | {ratio} | {first[stage]:.2f} s |")
    return 0


if __name__ == "__main__":
    main()
