"""The PyTorch baseline for bench_train.py: a GPT-2 training step set up the way nanoGPT sets it up.

    python bench/bench_torch_gpt2.py --size tiny --batch 4 --block 128 --no-compile   # CPU, to check it runs
    python bench/bench_torch_gpt2.py --size gpt2 --batch 32 --block 1024               # one GPU

The model is transformers' ``GPT2LMHeadModel`` (SDPA attention, tied embeddings, no dropout, the
vocabulary padded to 50,304 as nanoGPT does), trained with ``torch.compile``, bf16 autocast on
CUDA, fused AdamW (lr 6e-4, betas 0.9/0.95, weight decay 0.1) and clipping at 1.0, on random
tokens. It is here so that one device call measures our JAX step and a PyTorch step side by side
(``bench/gpu/run_all.sh``); nanoGPT's own code is not part of this repo. Prints tokens/s, ms per
step and the same flops-per-token count as bench_train.py.
"""

from __future__ import annotations

import argparse
import json
import time

SIZES = {"gpt2": dict(n_layer=12, n_head=12, n_embd=768), "tiny": dict(n_layer=4, n_head=4, n_embd=128)}


def make_step(n_layer: int, n_head: int, n_embd: int, vocab_size: int, block: int, batch: int,
              device: str = "cpu", compile: bool = False, seed: int = 0, bf16: bool | None = None):
    """(step, model): ``step()`` runs one training step of a transformers ``GPT2LMHeadModel`` (SDPA
    attention, tied embeddings, no dropout) on random tokens: forward (bf16 autocast on CUDA, or
    where ``bf16`` says), fp32
    cross-entropy, backward, clipping at 1.0, AdamW (lr 6e-4, betas 0.9/0.95, weight decay 0.1 on
    matrices; fused on CUDA), and returns the loss tensor without waiting for it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cuda = device == "cuda"
    bf16 = cuda if bf16 is None else bf16
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa",
                     bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), fused=cuda)
    step_model = torch.compile(model) if compile else model
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def step():
        x = torch.randint(0, vocab_size, (batch, block + 1), generator=gen).to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = step_model(input_ids=x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step, model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="gpt2", choices=sorted(SIZES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (CPU smoke runs)")
    args = ap.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    step, model = make_step(**SIZES[args.size], vocab_size=50304, block=args.block, batch=args.batch,
                            device=device, compile=not args.no_compile)

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss = float(loss.detach())  # waits for the device
    if cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()

    n = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    s = SIZES[args.size]
    flops = 6 * n + 12 * s["n_layer"] * s["n_embd"] * args.block  # nanoGPT's count, as bench_train.py
    tokens_per_s = args.steps * args.batch * args.block / (t2 - t1)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    result = {"impl": "torch GPT2LMHeadModel" + ("" if args.no_compile else " + torch.compile"), "size": args.size,
              "batch_size": args.batch, "block_size": args.block, "device": name, "torch": torch.__version__,
              "warmup_s": round(t1 - t0, 2), "step_ms": round(1e3 * (t2 - t1) / args.steps, 2),
              "tokens_per_s": round(tokens_per_s, 1), "achieved_tflops": round(flops * tokens_per_s / 1e12, 3),
              "final_loss": round(loss, 4)}
    print(f"torch {args.size} B={args.batch} T={args.block} on {name}: {tokens_per_s:,.0f} tokens/s, "
          f"{result['step_ms']} ms/step, {result['achieved_tflops']} TFLOP/s; warm-up {result['warmup_s']} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
