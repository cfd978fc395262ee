#!/usr/bin/env bash
# One device call for the CUDA backend (run on the GPU machine from the repo root; needs data/shards/sotu_gpt2):
# build, run the CUDA tests (every op vs the CPU oracle, the model vs the CPU backend), train gpu_small with
# msatrain once per attention setting (MSATRAIN_ATTENTION=cudnn: cuDNN's fused attention; own: our kernel) and the
# same shapes in PyTorch (torch.compile and eager), check two ranks on one GPU (host-staged) against one rank, and
# print a table last.
#   usage: bash tools/bench_gpu_small.sh [STEPS] [--quick]      results also under $OUT (default /tmp/bench_out)
#   --quick: build, the attention and model tests, the training runs, the cuDNN setting's per-op profile and
#            torch.compile only
#   env BENCH_ATTENTION: the attention settings to train with (default "cudnn own")
set -uo pipefail
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
steps=30
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) steps=$arg ;;
  esac
done
settings=${BENCH_ATTENTION:-"cudnn own"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DMSATRAIN_NATIVE=OFF \
  >"$OUT/cmake.log" 2>&1 && cmake --build build-gpu -j 16 --target msatrain cuda_tests >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log" "$OUT/cmake.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

echo "== CUDA tests"
filter='*'
(( quick )) && filter='*Attention*:*Model*'  # the attention kernels and the whole model against the CPU backend
build-gpu/tests/cuda_tests --gtest_brief=1 --gtest_filter="$filter" >"$OUT/cuda_tests.log" 2>&1
tests_rc=$?
grep -E "Failure|Expected|Which is|relative error|error|PASSED|FAILED|SKIPPED" "$OUT/cuda_tests.log" | head -60

metric() {  # metric FILE KEY: values of KEY from training lines after the first 5 steps
  python3 -c "
import json
for l in open('$1'):
    d = json.loads(l)
    if '$2' in d and 'val_loss' not in d and d['step'] > 5: print(d['$2'])"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }

declare -A tps mem params_of
for attn in $settings; do
  echo "== msatrain gpu_small, $steps steps of 4 x 4096 tokens, MSATRAIN_ATTENTION=$attn"
  run="$OUT/run_gpu_small_$attn"
  rm -rf "$run"
  MSATRAIN_ATTENTION=$attn build-gpu/msatrain train --config configs/gpu_small.yaml --set train.steps="$steps" \
    --set train.warmup_steps=5 --set train.batch_tokens=16384 --set train.log_every=1 --set eval.every=0 \
    --set eval.sequences=4 --set checkpoint.every=0 --set run.dir="$run" >"$OUT/msatrain_$attn.log" 2>&1
  echo "msatrain exit $?"
  grep -E "cuDNN" "$OUT/msatrain_$attn.log" | head -3
  tail -3 "$OUT/msatrain_$attn.log"
  tps[$attn]=$(metric "$run/metrics.jsonl" tokens_per_s | median)
  mem[$attn]=$(metric "$run/metrics.jsonl" gpu_mem_gib | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.1f (min %.1f)", hi, lo}')
  params_of[$attn]=$(grep -oE "^msatrain: [0-9]+ parameters" "$OUT/msatrain_$attn.log" | grep -oE "[0-9]+")

  (( quick )) && [[ $attn != cudnn ]] && continue  # --quick profiles the cuDNN setting only
  echo "== where the GPU time goes, MSATRAIN_ATTENTION=$attn: 6 steps with MSATRAIN_PROFILE_OPS=1 (a little slower)"
  MSATRAIN_ATTENTION=$attn MSATRAIN_PROFILE_OPS=1 build-gpu/msatrain train --config configs/gpu_small.yaml \
    --set train.steps=6 --set train.warmup_steps=2 --set train.batch_tokens=16384 --set train.log_every=1 \
    --set eval.every=0 --set eval.sequences=4 --set checkpoint.every=0 --set run.dir="$OUT/run_profile_$attn" \
    >"$OUT/profile_$attn.log" 2>&1
  sed -n '/GPU time by op/,$p' "$OUT/profile_$attn.log" | head -$((quick ? 12 : 40))
done

if (( ! quick )); then
echo "== two ranks on one GPU (host-staged allreduce) vs one rank, 5 steps"
small=(--set model.n_layers=2 --set model.seq_len=1024 --set train.batch_tokens=8192 --set train.micro_batch=2
       --set train.steps=5 --set train.warmup_steps=2 --set train.log_every=1 --set eval.every=0 --set eval.sequences=4
       --set checkpoint.every=0)
build-gpu/msatrain train --config configs/gpu_small.yaml "${small[@]}" --set run.dir="$OUT/dp1" >"$OUT/dp1.log" 2>&1
mpirun -np 2 --oversubscribe build-gpu/msatrain train --config configs/gpu_small.yaml "${small[@]}" \
  --set parallel.dp=2 --set run.dir="$OUT/dp2" >"$OUT/dp2.log" 2>&1
dp_check=$(python3 - "$OUT" <<'PY'
import json, sys
def losses(p): return [json.loads(l)["loss"] for l in open(p) if '"loss"' in l]
a, b = losses(sys.argv[1] + "/dp1/metrics.jsonl"), losses(sys.argv[1] + "/dp2/metrics.jsonl")
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b)) if a and len(a) == len(b) else float("nan")
print(f"dp1 {['%.5f' % x for x in a]} dp2 {['%.5f' % x for x in b]} max_rel_diff {worst:.2e}")
PY
)
echo "$dp_check"

echo "== configs/tiny.yaml on the GPU (QK norm, head dim 32, byte vocabulary padded 256), 30 steps"
if [[ -f data/shards/sotu_bytes/meta.yaml ]]; then
  build-gpu/msatrain train --config configs/tiny.yaml --set parallel.dp=1 --set device=cuda --set train.steps=30 \
    --set train.warmup_steps=5 --set eval.every=0 --set checkpoint.every=0 --set run.dir="$OUT/tiny_gpu" \
    >"$OUT/tiny_gpu.log" 2>&1
  echo "exit $?: $(grep -E "^step +30/|val_loss|error" "$OUT/tiny_gpu.log" | tr '\n' ' ')"
fi
fi

echo "== PyTorch baselines"
python3 tools/torch_gpu_small.py --steps 20 --warmup 8 >"$OUT/torch_compile.json" 2>"$OUT/torch_compile.err" || tail -5 "$OUT/torch_compile.err"
(( quick )) || python3 tools/torch_gpu_small.py --steps 10 --warmup 3 --eager >"$OUT/torch_eager.json" 2>"$OUT/torch_eager.err" || tail -5 "$OUT/torch_eager.err"
cat "$OUT"/torch_*.json

echo
echo "=== table (gpu_small, 4 x 4096 tokens per step, $(head -1 "$OUT/gpu.txt")) ==="
rows=""
for attn in $settings; do rows="$rows;msatrain-$attn|${tps[$attn]:-nan}|${params_of[$attn]:-0}|${mem[$attn]:-n/a}"; done
python3 - "$OUT" "$tests_rc" "$rows" <<'PY'
import json, sys
out, tests_rc, ours = sys.argv[1:]
L, Hq, d, T = 12, 8, 128, 4096
def mfu(tps, n): return tps * (6 * n + 6 * L * Hq * d * T / 2) / 989e12
rows = []
for r in ours.strip(";").split(";"):
    name, tps, n, mem = r.split("|")
    try:
        rows.append((name, float(tps), int(n), mem + " (driver)"))
    except ValueError:
        rows.append((name, float("nan"), 0, "n/a"))
for f in ("torch_compile", "torch_eager"):
    try:
        j = json.loads(open(f"{out}/{f}.json").read())
        rows.append((j["impl"], j["tokens_per_s"], j["params"], f"{j['peak_mem_gib']:.1f} (allocated)"))
    except Exception:
        pass
base = next((r[1] for r in rows if r[0] == "pytorch-compile"), float("nan"))
print(f"{'impl':18} {'tokens/s':>10} {'vs compile':>10} {'MFU':>6}  params      GPU memory GiB")
for name, tps, n, mem in rows:
    print(f"{name:18} {tps:10.0f} {tps / base:10.2f} {100 * mfu(tps, n or 186.8e6):5.1f}%  {n/1e6:6.1f}M   {mem}")
print(f"cuda_tests exit {tests_rc}")
PY
