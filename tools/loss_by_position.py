"""Where along an utterance a generator loses the words: teacher-forced audio loss by position.

    python tools/loss_by_position.py --checkpoint runs/tts/tts.safetensors --tokens data/broad/tokens/eval

Reads held-out token files (tools/encode_audio.py), runs the generator teacher-forced on each
utterance (conditioned on another clip of its speaker, as in training) and prints the audio
cross-entropy and top-1 accuracy in tenths of the utterance. A model that keeps its place in the
text scores about the same in every tenth; one whose alignment drifts climbs. ``--attention``
also prints, per layer and head, the share of the audio positions' attention on the text and the
correlation of the most attended text position with the audio position (a high correlation in the
first layer, where only token and position embeddings meet, is an alignment by position alone).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xtts_jax.errors import UserError, run_cli  # noqa: E402
from xtts_jax.inference import tts as pipeline  # noqa: E402
from xtts_jax.train.tts_data import load_split  # noqa: E402


def loss_by_position(model, split, bins: int = 10) -> dict:
    """Mean audio CE and top-1 accuracy per ``bins`` equal parts of each utterance's codes
    (the stop token left out), over the utterances of ``split`` (``train_tts.Split``)."""

    @jax.jit
    def score(mel, text, text_len, audio, audio_len, pointer):
        # a text-pointer model reads the pointer of the forced alignment (models/pointer.py)
        out = model(model.conditioner(mel), text, audio, text_len, audio_len, pointer=pointer)
        ce = optax.softmax_cross_entropy_with_integer_labels(out.audio_logits[:-1], audio[1:])
        return ce, jnp.argmax(out.audio_logits[:-1], -1) == audio[1:]

    def padded(ids):  # widths rounded up to 16: a few compiles, not one per utterance
        return jnp.asarray(np.pad(ids, (0, -len(ids) % 16), mode="edge")), jnp.asarray(len(ids))

    total, right, count = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    for u in range(len(split.text)):
        pointer = padded(split.pointer[u])[0] if split.pointer else None
        ce, ok = jax.device_get(score(jnp.asarray(split.ref_mel[u]), *padded(split.text[u]), *padded(split.audio[u]),
                                      pointer))
        n = len(split.audio[u]) - 2  # targets 1..n are codes; target n + 1 is the stop token
        ce, ok = ce[:n], ok[:n]
        where = np.minimum(np.arange(n) * bins // max(n, 1), bins - 1)
        np.add.at(total, where, ce)
        np.add.at(right, where, ok)
        np.add.at(count, where, 1)
    count = np.maximum(count, 1)
    return {"audio_ce": (total / count).tolist(), "accuracy": (right / count).tolist(), "utterances": len(split.text)}


def attention_alignment(model, split, utterances: int = 8) -> list[list[dict]]:
    """Per layer, per head: mean share of the audio queries' attention on text keys and the
    correlation of the argmax text key with the audio position, over the first ``utterances``."""
    cfg = model.config.gpt
    params, static = eqx.partition(model.transformer.blocks, eqx.is_array)
    found = [[{"text_share": [], "corr": []} for _ in range(cfg.n_head)] for _ in range(cfg.n_layer)]
    for u in range(min(utterances, len(split.text))):
        text, audio = jnp.asarray(split.text[u]), jnp.asarray(split.audio[u])
        cond = model.speaker_vectors(model.conditioner(jnp.asarray(split.ref_mel[u])))
        n_cond, n_text = cond.shape[0], text.shape[0]
        audio_x = model.audio_embedding[audio] + model.audio_pos[:audio.shape[0]]
        if split.pointer:  # a text-pointer model's audio positions also read their text token
            pointer = jnp.asarray(split.pointer[u])
            audio_x = audio_x + model.text_at(text, pointer)
        h = jnp.concatenate([cond, model.text_embedding[text] + model.text_pos[:n_text], audio_x])
        t = h.shape[0]
        for layer in range(cfg.n_layer):
            block = eqx.combine(jax.tree.map(lambda a, i=layer: a[i], params), static)
            q, k, v = block.attn.qkv(block.ln_1(h))
            s = jnp.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
            p = jax.nn.softmax(jnp.where(jnp.tri(t, dtype=bool), s, -jnp.inf), -1)
            on_text = np.asarray(p[:, n_cond + n_text:, n_cond:n_cond + n_text])  # [H, audio, text]
            for head in range(cfg.n_head):
                found[layer][head]["text_share"].append(float(on_text[head].sum(-1).mean()))
                peak = on_text[head].argmax(-1)
                found[layer][head]["corr"].append(
                    float(np.corrcoef(np.arange(peak.size), peak)[0, 1]) if peak.std() > 0 else 0.0)
            h = h + block.attn.c_proj(jnp.einsum("hqk,khd->qhd", p, v).reshape(h.shape))
            h = h + block.mlp(block.ln_2(h))
    return [[{k: float(np.mean(v)) for k, v in head.items()} for head in layer] for layer in found]


@run_cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a tts.safetensors (recipes/train_tts.py)")
    ap.add_argument("--tokens", required=True, help="held-out token file stem (STEM.bin, STEM.jsonl)")
    ap.add_argument("--limit", type=int, default=200, help="utterances to score")
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--attention", action="store_true", help="also print the attention alignment per head")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.limit < 1 or args.bins < 1:
        raise UserError("--limit and --bins must be at least 1")
    model = pipeline.load_tts(args.checkpoint)  # a missing or broken file is one sentence
    if model.conditioner is None:
        raise UserError(f"{args.checkpoint} has no conditioning encoder to read the reference clips")
    mel = model.config.conditioning.mel_config
    split = load_split(args.tokens, model.config, mel.n_frames(3 * mel.sample_rate), args.limit,
                              pipeline.load_text_tokenizer(args.checkpoint, model.config))
    result = loss_by_position(model, split, args.bins)
    print(f"{result['utterances']} utterances, teacher-forced, in {args.bins} parts of each")
    print("audio CE:  " + " ".join(f"{x:5.2f}" for x in result["audio_ce"]))
    print("top-1 acc: " + " ".join(f"{x:5.2f}" for x in result["accuracy"]))
    if args.attention:
        result["attention"] = attention_alignment(model, split)
        for layer, heads in enumerate(result["attention"]):
            print(f"layer {layer}: " + "  ".join(f"h{i} text {h['text_share']:.2f} corr {h['corr']:+.2f}"
                                                 for i, h in enumerate(heads)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    main()
