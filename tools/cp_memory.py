#!/usr/bin/env python3
"""Memory per rank and communication volume per layer of context parallel (docs/context_parallel.md).

Computed from the model shape and from the buffers the layer code keeps between forward and backward
(src/model/*.h), not measured. Assumptions (all printed with --assumptions):
  - one sequence of T tokens per micro-batch; cp ranks hold T/cp tokens each (zigzag chunks);
  - parameters replicated on every rank (cp does not shard them): bf16 working copy, fp32 master, fp32 gradient,
    fp32 AdamW m and v = 18 bytes per parameter;
  - activations in bf16 (2 bytes), norm rstd and lse in fp32, MSA selection ids int32;
  - flash attention: no T x T score matrix is kept (the CPU reference builds one per head; GPU kernels do not);
  - the LM loss is computed in chunks (fused cross-entropy): the (T, V) logits are not kept. Their size if they
    were (fp32) is printed separately, because at long context they dominate everything else;
  - with cp > 1 every layer keeps the gathered K, V (and MSA kI) of the whole sequence for its backward, as the
    code does today; the --regather variant keeps only one layer's worth (gather again in the backward);
  - backward scratch (LayerContext) is counted once, not per layer.

Usage: tools/cp_memory.py [--msa] [--regather] [--markdown]   (defaults: gpu_small, dense GQA)
"""
import argparse

# gpu_small: configs/gpu_small.yaml (no QK norm, tied embeddings; the 64-row vocabulary padding is ignored).
GPU_SMALL = dict(layers=12, d_model=1024, n_heads=8, n_kv_heads=2, head_dim=128, ffn_hidden=2816, vocab=50257,
                 qk_norm=False, tie_embeddings=True)
# MSA knobs: spec/msa.md §6 defaults (configs/tiny_msa.yaml scales dI and B down for a 256-wide toy model).
MSA = dict(block_size=128, topk_blocks=16, index_head_dim=128, dense_layers=1)

BF16, FP32, I32 = 2, 4, 4
BYTES_PER_PARAM = 2 + 4 + 4 + 4 + 4  # bf16 copy, fp32 master, fp32 grad, AdamW m, v


def parameters(m, msa):
    c, hq, hkv, d, f, v = m['d_model'], m['n_heads'], m['n_kv_heads'], m['head_dim'], m['ffn_hidden'], m['vocab']
    per_layer = 2 * c + (hq + 2 * hkv) * d * c + c * hq * d + 3 * f * c + (2 * d if m['qk_norm'] else 0)
    total = m['layers'] * per_layer + v * c + c + (0 if m['tie_embeddings'] else v * c)
    if msa:
        di = msa['index_head_dim']
        total += (m['layers'] - msa['dense_layers']) * (hkv * di * c + di * c + 2 * di)
    return total


def layer_bytes_per_local_token(m, msa_layer, msa):
    """Bytes a block keeps for its backward per token it holds (Block, RMSNorm x2, attention, SwiGLU)."""
    c, hq, hkv, d, f = m['d_model'], m['n_heads'], m['n_kv_heads'], m['head_dim'], m['ffn_hidden']
    b = BF16 * (2 * c)                                   # block: mid, out (the input is the previous out)
    b += 2 * (BF16 * c + FP32)                           # norm1, norm2: out, rstd
    qkv = (hq + 2 * hkv) * d
    b += BF16 * (qkv + qkv + hq * d + c)                 # projection, q/k/v as attended, o, out
    if m['qk_norm']:
        b += BF16 * (hq + hkv) * d + FP32 * (hq + hkv)   # pre-norm q, k and their rstd
    b += FP32 * hq                                       # lse
    b += BF16 * (2 * f + f + c)                          # SwiGLU: gate|up, h, out
    if msa_layer:
        di, k = msa['index_head_dim'], msa['topk_blocks']
        b += BF16 * 3 * (hkv * di + di)                  # index q/k projections, normed+roped, KL grads
        b += FP32 * (hkv + 1) + I32 * hkv * k            # index rstd, selection
    return b


def layer_bytes_per_global_token(m, msa_layer, msa, cp):
    """Bytes a block keeps per token of the whole sequence: the gathered keys (cp > 1 only)."""
    if cp == 1:
        return 0
    b = BF16 * 2 * m['n_kv_heads'] * m['head_dim']       # K and V of every token
    if msa_layer:
        b += BF16 * 2 * msa['index_head_dim']            # kI and its KL gradient before the scatter
    return b


def scratch_bytes(m, t_local, t_global, cp):
    c, hq, hkv, d, f = m['d_model'], m['n_heads'], m['n_kv_heads'], m['head_dim'], m['ffn_hidden']
    local = BF16 * (c + hq * d + (hq + 2 * hkv) * d + hq * d + 2 * hkv * d + hq * d + hkv * d + f + 2 * f + c)
    glob = BF16 * 2 * hkv * d if cp > 1 else 0           # d_k_all, d_v_all
    return local * t_local + glob * t_global


def per_rank(m, msa, t, cp, regather):
    n = t // cp
    layers = m['layers']
    msa_layers = layers - msa['dense_layers'] if msa else 0
    act = 0
    glob = 0
    for l in range(layers):
        is_msa = l >= layers - msa_layers
        act += layer_bytes_per_local_token(m, is_msa, msa) * n
        g = layer_bytes_per_global_token(m, is_msa, msa, cp) * t
        glob = glob + g if not regather else max(glob, g)
    act += BF16 * 2 * m['d_model'] * n                   # embeddings, final norm out
    params = parameters(m, msa) * BYTES_PER_PARAM
    scratch = scratch_bytes(m, n, t, cp)
    logits = FP32 * m['vocab'] * n
    return dict(params=params, act=act, keys=glob, scratch=scratch, logits=logits,
                total=params + act + glob + scratch)


def comm_per_layer(m, msa_layer, msa, t, cp, grad_bytes=BF16):
    """Bytes each rank receives per layer and sequence: all-gather forward, reduce-scatter backward (ring)."""
    share = (cp - 1) / cp
    kv = 2 * m['n_kv_heads'] * m['head_dim']
    ki = msa['index_head_dim'] if msa_layer else 0
    fwd = share * t * (kv + ki) * BF16
    bwd = share * t * (kv + ki) * grad_bytes
    return fwd, bwd


def gib(x):
    return x / 2**30


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--msa', action='store_true', help='the MSA variant (layer 0 dense, spec §6 knobs)')
    ap.add_argument('--regather', action='store_true', help='keep one layer of gathered keys, not every layer')
    ap.add_argument('--markdown', action='store_true')
    args = ap.parse_args()
    m = GPU_SMALL
    msa = MSA if args.msa else None
    name = 'gpu_small' + (' MSA' if msa else ' GQA') + (' (re-gather K/V in backward)' if args.regather else '')
    print(f'# {name}: {parameters(m, msa) / 1e6:.1f}M parameters, {gib(parameters(m, msa) * BYTES_PER_PARAM):.2f} '
          f'GiB of weights, gradients and AdamW state per rank')
    print()
    print('Communication per layer and sequence, each rank receives (ring all-gather / reduce-scatter, bf16):')
    for t in (128 * 1024, 512 * 1024, 1024 * 1024):
        row = []
        for cp in (2, 8, 64):
            f, b = comm_per_layer(m, bool(msa), msa or MSA, t, cp)
            row.append(f'cp={cp}: {f / 2**20:.0f} MiB fwd + {b / 2**20:.0f} MiB bwd')
        print(f'  T={t // 1024}K: ' + '; '.join(row))
    print()
    sep = ' | ' if args.markdown else '  '
    head = ['T', 'cp', 'tokens/rank', 'activations', 'gathered keys', 'scratch', 'total', '(+ logits if kept)']
    if args.markdown:
        print('| ' + ' | '.join(head) + ' |')
        print('|' + '---|' * len(head))
    else:
        print(sep.join(f'{h:>14}' for h in head))
    for t in (128 * 1024, 512 * 1024, 1024 * 1024):
        cp = 1
        while cp <= 64:
            r = per_rank(m, msa, t, cp, args.regather)
            cells = [f'{t // 1024}K', str(cp), str(t // cp), f'{gib(r["act"]):.2f}', f'{gib(r["keys"]):.2f}',
                     f'{gib(r["scratch"]):.2f}', f'{gib(r["total"]):.2f}', f'{gib(r["logits"]):.2f}']
            if args.markdown:
                print('| ' + ' | '.join(cells) + ' |')
            else:
                print(sep.join(f'{x:>14}' for x in cells))
            cp *= 2
    print()
    print('GiB per rank. total = weights/grads/AdamW + activations + gathered keys + backward scratch.')


if __name__ == '__main__':
    main()
