#!/usr/bin/env bash
# Context parallel on one GPU (host-staged): the GPU cp tests, then gpu_small at 16K tokens with cp = 1 (one rank)
# and cp = 2 (two ranks sharing the GPU): tokens/s, seconds and bytes of the key gather / gradient scatter per step.
#   usage (GPU machine, repo root, with data/cache/sotu and data/shards/sotu_gpt2): bash tools/bench_cp_gpu.sh
set -uo pipefail
OUT=${OUT:-/tmp/bench_cp}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DMSATRAIN_NATIVE=OFF \
  >"$OUT/cmake.log" 2>&1 && cmake --build build-gpu -j 16 >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
(cd build-gpu && ctest -R "test_cuda_cp|test_cuda_dp" --output-on-failure 2>&1 | tail -n 25)
run=(train --config configs/gpu_small.yaml --set model.seq_len=16384 --set train.batch_tokens=16384
     --set train.micro_batch=1 --set train.steps=8 --set train.warmup_steps=2 --set train.log_every=1
     --set eval.every=0 --set eval.sequences=2 --set checkpoint.every=0)
build-gpu/msatrain "${run[@]}" --set run.dir="$OUT/cp1" >"$OUT/cp1.log" 2>&1 || tail -5 "$OUT/cp1.log"
mpirun -np 2 --oversubscribe build-gpu/msatrain "${run[@]}" --set parallel.cp=2 --set run.dir="$OUT/cp2" \
  >"$OUT/cp2.log" 2>&1 || tail -5 "$OUT/cp2.log"
echo "=== gpu_small, 16,384-token sequences, 1 per step (median of steps 3-8) ==="
python3 - "$OUT" <<'PY'
import json, statistics, sys
def med(path, key):
    v = [json.loads(l).get(key) for l in open(path) if '"val_loss"' not in l]
    v = [x for x in v[2:] if x is not None]
    return statistics.median(v) if v else float('nan')
for name in ('cp1', 'cp2'):
    p = f'{sys.argv[1]}/{name}/metrics.jsonl'
    try:
        tps, comm, b = med(p, 'tokens_per_s'), med(p, 'cp_comm_s'), med(p, 'cp_bytes_in')
        step = 16384 / tps
        print(f'{name}: {tps:9.0f} tokens/s  step {1e3*step:7.1f} ms  cp comm {1e3*comm:7.1f} ms/step '
              f'({100*comm/step:4.1f}%)  in {b/2**20:7.1f} MiB/step  loss {med(p, "loss"):.4f}')
    except (OSError, ValueError) as e:
        print(name, 'failed:', e)
PY
