#!/usr/bin/env python3
"""PyTorch reference for `npm run bench -- train`: the same base decoder (config R), the same
step (AdamW, random tokens, mean cross-entropy) and the same JSON fields, for side-by-side
figures on one machine.

    apt-get install -y python3-torch libopenblas0-openmp
    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 bench/torch_reference.py [--bf16]

The OpenMP OpenBLAS matters: with Debian's default pthread OpenBLAS, PyTorch oversubscribes
the cores and runs up to 3x slower.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(vocab=4096, width=256, layers=4, heads=4, context=256, batch=16)


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.w_in = nn.Linear(d, 4 * d)
        self.w_out = nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        y = self.ln1(x)
        split = lambda z: z.view(b, t, self.h, d // self.h).transpose(1, 2)
        q = split(self.wq(y) * (1 / math.sqrt(d // self.h)))
        k, v = split(self.wk(y)), split(self.wv(y))
        att = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        x = x + self.wo((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.w_out(F.relu(self.w_in(self.ln2(x))))


class Decoder(nn.Module):
    """Learned absolute positions, pre-LayerNorm blocks, ReLU FFN, final LayerNorm, tied head."""

    def __init__(self, vocab, width, layers, heads, context):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Parameter(torch.zeros(context, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
        mask = torch.triu(torch.full((context, context), -1e9), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.tokens(tokens) + self.positions[:t]
        for blk in self.blocks:
            x = blk(x, self.mask[:t, :t])
        return self.norm(x) @ self.tokens.weight.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (fp32 master weights)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    c = CONFIG
    model = Decoder(c["vocab"], c["width"], c["layers"], c["heads"], c["context"])
    matrices = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("tokens.weight", "positions")]
    others = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n not in ("tokens.weight", "positions"))]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    b, t, v = c["batch"], c["context"], c["vocab"]

    def step():
        tokens = torch.randint(0, v, (b, t + 1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(b * t, v), tokens[:, 1:].reshape(b * t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    seconds = time.perf_counter() - start
    L, D = c["layers"], c["width"]
    flops = 6 * (12 * L * D * D + v * D) * b * t + 12 * L * b * t * t * D
    print(json.dumps({
        "bench": "train",
        "backend": "torch",
        "detail": f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
                  f"BLAS {os.environ.get('LD_LIBRARY_PATH', 'default')}",
        "precision": "bf16-autocast" if args.bf16 else "fp32",
        "config": c,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": args.steps,
        "secondsPerStep": seconds / args.steps,
        "tokensPerSecond": b * t * args.steps / seconds,
        "gflopPerStep": flops / 1e9,
        "gflops": flops * args.steps / seconds / 1e9,
        "loss": losses[-1],
    }))


if __name__ == "__main__":
    main()
