#!/usr/bin/env python3
"""PyTorch SDPA baseline for tools/bench_attention.cu: same shapes, same timing (CUDA events, 3 warm-ups, median
of 20). Prints "sdpa B T Hq Hkv d fwd_ms fwd_tflops fb_ms fb_tflops"."""
import sys

import torch
import torch.nn.functional as F


def median_ms(fn, warm=3, reps=20):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    shapes = [(1, 4096, 16, 4, 128), (1, 16384, 16, 4, 128), (4, 4096, 8, 2, 128)]
    if "--long" in sys.argv:
        shapes.append((1, 65536, 16, 4, 128))
    for b, t, hq, hkv, d in shapes:
        q = torch.randn(b, hq, t, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(b, hkv, t, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(b, hkv, t, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(b, hq, t, d, device="cuda", dtype=torch.bfloat16)

        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        def fb():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            out.backward(g)

        f_ms, fb_ms = median_ms(fwd), median_ms(fb)
        flops = 4.0 * b * hq * t * t * d / 2
        print(f"sdpa {b} {t} {hq} {hkv} {d} {f_ms:.3f} {flops / f_ms / 1e9:.1f} {fb_ms:.3f} "
              f"{3.5 * flops / fb_ms / 1e9:.1f}", flush=True)
        del q, k, v, g
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
