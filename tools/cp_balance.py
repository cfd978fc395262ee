#!/usr/bin/env python3
"""Attention work per context-parallel rank under the zigzag layout, and what balancing by sparse work would gain
(docs/context_parallel.md).

With force_local and no sinks, an MSA query at position t attends E(t) keys per group:
    E(t) = t + 1                              while its block l = t // B has l + 1 <= k visible blocks (dense start)
    E(t) = (k - 1) B + (t mod B) + 1          after: k-1 whole earlier blocks + the causal part of its own block
*which* blocks are picked depends on the data, *how many keys* does not. So the sparse work per rank is a
function of positions, and the metric attn_imbalance (max/mean of attended (query, group, key) triples per rank,
summed over layers) can be predicted exactly: `--check-tiny` reproduces the value tests/mpi/test_cp_equivalence.sh
logs. FLOPs per query (spec §7): Main Branch forward + backward 14 d Hq E(t); Index Branch scores 2 dI Hkv (t+1)
(dense over the causal prefix, every MSA layer, warmup or not).

Usage: tools/cp_balance.py [--check-tiny]
"""
import argparse


def pairs(t, block, topk, sparse):
    if not sparse or t // block + 1 <= topk:
        return t + 1
    return (topk - 1) * block + t % block + 1


def zigzag(seq, cp, r):
    chunk = seq // (2 * cp)
    return list(range(r * chunk, (r + 1) * chunk)) + list(range((2 * cp - 1 - r) * chunk, (2 * cp - r) * chunk))


def imbalance(work):
    return max(work) / (sum(work) / len(work))


def rank_work(seq, cp, cost):
    """cost(t) summed over each rank's positions, with prefix sums (T up to 1M)."""
    prefix = [0.0]
    for t in range(seq):
        prefix.append(prefix[-1] + cost(t))
    chunk = seq // (2 * cp)
    span = lambda c: prefix[(c + 1) * chunk] - prefix[c * chunk]
    return [span(r) + span(2 * cp - 1 - r) for r in range(cp)]


def check_tiny():
    # tests/mpi/test_cp_equivalence.sh: T 64, cp 4, B 8, k 3, Hkv 2; layer 0 dense, layer 1 MSA; batch 4.
    seq, cp, block, topk = 64, 4, 8, 3
    for phase, sparse in (('warmup', False), ('sparse', True)):
        work = [sum(pairs(t, block, topk, False) + pairs(t, block, topk, sparse) for t in zigzag(seq, cp, r))
                for r in range(cp)]
        print(f'tiny test, {phase}: pairs per rank {work} -> attn_imbalance {imbalance(work):.4f}')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check-tiny', action='store_true', help='predict the tiny cp=4 test run\'s attn_imbalance')
    args = ap.parse_args()
    if args.check_tiny:
        check_tiny()
        return
    # gpu_small with spec §6 MSA knobs: d 128, Hq 8, Hkv 2, dI 128, B 128, k 16.
    d, hq, hkv, di, block, topk = 128, 8, 2, 128, 128, 16
    main_flops = lambda t: 14 * d * hq * pairs(t, block, topk, True)
    index_flops = lambda t: 2 * di * hkv * (t + 1)
    print('gpu_small MSA layer, sparse phase, zigzag layout: max/mean over cp ranks')
    print(f'{"T":>6} {"cp":>4} {"main pairs":>11} {"main+index FLOPs":>17} {"index share":>12}')
    for seq in (128 * 1024, 512 * 1024, 1024 * 1024):
        for cp in (2, 4, 8, 16, 32, 64):
            main = rank_work(seq, cp, lambda t: pairs(t, block, topk, True))
            total = rank_work(seq, cp, lambda t: main_flops(t) + index_flops(t))
            share = sum(rank_work(seq, cp, index_flops)) / sum(total)
            print(f'{seq // 1024:>5}K {cp:>4} {imbalance(main):>11.5f} {imbalance(total):>17.5f} {share:>12.3f}')


if __name__ == '__main__':
    main()
