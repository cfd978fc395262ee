#!/usr/bin/env python3
"""PyTorch baseline with gpu_small's shapes: Llama-style decoder (RMSNorm, GQA attention with RoPE through SDPA,
SwiGLU), LM head tied to the embedding, bf16 autocast, fused AdamW, torch.compile. Trains on random tokens for a fixed number of
steps and prints one JSON line: tokens/s (median over the timed steps), parameters, peak memory.

usage: tools/torch_gpu_small.py [--seq 4096] [--batch 4] [--steps 20] [--warmup 5] [--eager]
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, hq, hkv, hd, ffn):
        super().__init__()
        self.hq, self.hkv, self.hd = hq, hkv, hd
        self.attn_norm = nn.RMSNorm(d, eps=1e-5)
        self.wqkv = nn.Linear(d, (hq + 2 * hkv) * hd, bias=False)
        self.wo = nn.Linear(hq * hd, d, bias=False)
        self.ffn_norm = nn.RMSNorm(d, eps=1e-5)
        self.w13 = nn.Linear(d, 2 * ffn, bias=False)
        self.w2 = nn.Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        qkv = self.wqkv(self.attn_norm(x))
        q, k, v = qkv.split([self.hq * self.hd, self.hkv * self.hd, self.hkv * self.hd], dim=-1)
        q = q.view(b, t, self.hq, self.hd).transpose(1, 2)
        k = k.view(b, t, self.hkv, self.hd).transpose(1, 2)
        v = v.view(b, t, self.hkv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.wo(o.transpose(1, 2).reshape(b, t, -1))
        g, u = self.w13(self.ffn_norm(x)).chunk(2, dim=-1)
        return x + self.w2(F.silu(g) * u)


def rope(x, cos, sin):  # half-split pairs, as msatrain
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Model(nn.Module):
    def __init__(self, vocab, d, layers, hq, hkv, hd, ffn, seq):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, hq, hkv, hd, ffn) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied, as configs/gpu_small.yaml
        for p in self.parameters():  # msatrain's init: normal(0, 0.02) for matrices (norms stay 1)
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--eager", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    model = Model(50257, 1024, 12, 8, 2, 128, 2816, a.seq).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = model if a.eager else torch.compile(model)
    tokens = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
    targets = torch.randint(0, 50257, (a.batch, a.seq), device=dev)
    times = []
    for i in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    tok_s = a.batch * a.seq / statistics.median(times)
    print(json.dumps({"impl": "pytorch" + ("-eager" if a.eager else "-compile"), "params": n_params,
                      "tokens_per_s": tok_s, "step_ms": 1e3 * statistics.median(times),
                      "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": float(loss)}))


if __name__ == "__main__":
    main()
