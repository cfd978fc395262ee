#!/usr/bin/env bash
# One device call for MoE on the GPU (run on the GPU machine from the repo root; needs data/shards/sotu_gpt2 and
# data/cache/sotu for the MPI test): build, run the MoE CUDA tests (ops, layer and model vs the CPU backend),
# train gpu_small_moe for STEPS steps (tokens/s, MFU on active parameters, peak GPU memory), profile the ops (the
# share of dispatch and combine), time the grouped GEMM against one dense GEMM, check ep=2 on one GPU
# (host-staged rows) against ep=1, and print a table last.
#   usage: bash tools/bench_gpu_moe.sh [STEPS]      results also under $OUT (default /tmp/bench_moe_out)
#   SKIP="tests ep" leaves out the CUDA tests and the ep / MPI checks (a quicker timing run).
set -uo pipefail
OUT=${OUT:-/tmp/bench_moe_out}
mkdir -p "$OUT"
steps=${1:-20}
SKIP=${SKIP:-}
skip() { [[ " $SKIP " == *" $1 "* ]]; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DMSATRAIN_NATIVE=OFF \
  >"$OUT/cmake.log" 2>&1 && cmake --build build-gpu -j 16 --target msatrain cuda_tests bench_grouped_gemm \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log" "$OUT/cmake.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

echo "== CUDA tests (MoE, NCCL, the dense model)"
tests_rc=skipped
skip tests || { build-gpu/tests/cuda_tests --gtest_filter='CudaMoe*:CudaNccl*:CudaModel*' >"$OUT/cuda_tests.log" 2>&1
  tests_rc=$?; }
touch "$OUT/cuda_tests.log"
grep -E "Failure|Expected|Which is|error|OK \]|PASSED|FAILED|SKIPPED" "$OUT/cuda_tests.log" | head -60

metric() {  # metric FILE KEY: values of KEY from training lines after the first 5 steps
  python3 -c "
import json
for l in open('$1'):
    d = json.loads(l)
    if '$2' in d and 'val_loss' not in d and d['step'] > 5: print(d['$2'] if not isinstance(d['$2'], list) else max(d['$2']))"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
base=(--set train.warmup_steps=5 --set train.batch_tokens=16384 --set train.log_every=1 --set eval.every=0
      --set eval.sequences=4 --set checkpoint.every=0)

echo "== msatrain gpu_small_moe, $steps steps of 4 x 4096 tokens"
run="$OUT/run_moe"
rm -rf "$run"
build-gpu/msatrain train --config configs/gpu_small_moe.yaml "${base[@]}" --set train.steps="$steps" \
  --set run.dir="$run" >"$OUT/msatrain.log" 2>&1
train_rc=$?
tail -4 "$OUT/msatrain.log"
tps=$(metric "$run/metrics.jsonl" tokens_per_s | median)
mem=$(metric "$run/metrics.jsonl" gpu_mem_gib | sort -g | tail -1)
load=$(metric "$run/metrics.jsonl" expert_load_max_over_mean | median)
params=$(grep -oE "^msatrain: [0-9]+ parameters" "$OUT/msatrain.log" | grep -oE "[0-9]+")

echo "== where the GPU time goes: 6 steps with MSATRAIN_PROFILE_OPS=1"
MSATRAIN_PROFILE_OPS=1 build-gpu/msatrain train --config configs/gpu_small_moe.yaml "${base[@]}" --set train.steps=6 \
  --set run.dir="$OUT/run_profile" >"$OUT/profile.log" 2>&1
sed -n '/GPU time by op/,$p' "$OUT/profile.log" | grep -v "  gemm " | head -20
prof_tps=$(python3 -c "
import json
v = [json.loads(l)['tokens_per_s'] for l in open('$OUT/run_profile/metrics.jsonl') if 'val_loss' not in l][1:]
print(sorted(v)[len(v) // 2] if v else 'nan')")

echo "== grouped GEMM (one cuBLASLt GEMM per expert) vs one dense GEMM, 16384 tokens x top-2 over 8 experts"
build-gpu/bench_grouped_gemm 16384 8 2 1024 2816 | tee "$OUT/grouped_gemm.txt"

ep_check="ep checks skipped"
mpi_rc=skipped
if ! skip ep; then
echo "== ep=2 on one GPU (host-staged rows) vs ep=1: gpu_small_moe with 2 layers, 5 steps of 8 x 1024 tokens"
small=(--set model.n_layers=2 --set model.seq_len=1024 --set train.batch_tokens=8192 --set train.micro_batch=2
       --set train.steps=5 --set train.warmup_steps=2 --set train.log_every=1 --set eval.every=0 --set eval.sequences=4
       --set checkpoint.every=0)
build-gpu/msatrain train --config configs/gpu_small_moe.yaml "${small[@]}" --set run.dir="$OUT/ep1" \
  >"$OUT/ep1.log" 2>&1 || echo "ep1 failed: $(tail -3 "$OUT/ep1.log")"
MSATRAIN_NCCL=0 mpirun -np 2 --oversubscribe build-gpu/msatrain train --config configs/gpu_small_moe.yaml "${small[@]}" \
  --set parallel.dp=2 --set parallel.ep=2 --set run.dir="$OUT/ep2" >"$OUT/ep2.log" 2>&1 \
  || echo "ep2 failed: $(tail -3 "$OUT/ep2.log")"
ep_check=$(python3 - "$OUT" <<'PY'
import json, sys
def rows(p):
    try: return [json.loads(l) for l in open(p) if '"loss"' in l and 'val_loss' not in l]
    except OSError: return []
a, b = rows(sys.argv[1] + "/ep1/metrics.jsonl"), rows(sys.argv[1] + "/ep2/metrics.jsonl")
def worst(k): return max(abs(x[k] - y[k]) / abs(x[k]) for x, y in zip(a, b)) if a and len(a) == len(b) else float("nan")
print(f"ep1 loss {['%.5f' % x['loss'] for x in a]}")
print(f"ep2 loss {['%.5f' % x['loss'] for x in b]}")
print(f"max_rel_diff loss {worst('loss'):.2e} grad_norm {worst('grad_norm'):.2e} aux_loss {worst('aux_loss'):.2e}")
PY
)
echo "$ep_check"
echo "== MPI CTest mpi.test_cuda_moe (tiny MoE: ep=2 on one GPU vs one rank, plain and with drops)"
ctest --test-dir build-gpu -R 'mpi.test_cuda_moe|mpi.test_cuda_dp' --output-on-failure >"$OUT/ctest_mpi.log" 2>&1
mpi_rc=$?
grep -E "ok:|FAIL|Passed|Failed|tests passed|dropped" "$OUT/ctest_mpi.log" | head -12
fi

echo
echo "=== table (gpu_small_moe, 4 x 4096 tokens per step, $(head -1 "$OUT/gpu.txt")) ==="
python3 - "$OUT" "$tps" "$params" "$mem" "$load" "$prof_tps" "$tests_rc" "$train_rc" "$mpi_rc" "$ep_check" <<'PY'
import re, sys
out, tps, params, mem, load, prof_tps, tests_rc, train_rc, mpi_rc, ep_check = sys.argv[1:]
L, Hq, d, T, E, k, C, F = 12, 8, 128, 4096, 8, 2, 1024, 2816
try:
    total = int(params)
except ValueError:
    total = 0
active = total - L * (E - k) * 3 * C * F  # the routed experts a token does not visit
def mfu(t): return t * (6 * active + 6 * L * Hq * d * T / 2) / 989e12
# dispatch and combine: the row moves, the exchange, the gate dots
prof = open(f"{out}/profile.log").read()
ops, total_ms = {}, float("nan")
for m in re.finditer(r"^  (\S.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%$", prof, re.M):
    ops[m.group(1).strip()] = float(m.group(3))
m = re.search(r"^  total\s+([\d.]+)$", prof, re.M)
if m: total_ms = float(m.group(1))
gemm = sum(v for n, v in ops.items() if n.startswith("gemm"))  # named by shape: the expert GEMMs vary by step
moves = sum(v for n, v in ops.items() if n in ("moe_gather_rows", "moe_scatter_add_rows", "moe_exchange", "moe_row_dots"))
router = sum(v for n, v in ops.items() if n.startswith("moe_route"))
steps_prof = 5  # the table covers steps 2..6
try:
    step_ms = 16384 / float(prof_tps) * 1e3
except (ValueError, ZeroDivisionError):
    step_ms = float("nan")
gg = open(f"{out}/grouped_gemm.txt").read().splitlines()[2:]
try:
    t = float(tps)
    print(f"{'tokens/s (median after step 5)':42} {t:,.0f}")
    print(f"{'MFU on active params (' + f'{active/1e6:.1f}M of {total/1e6:.1f}M)':42} {100 * mfu(t):.1f}%")
except ValueError:
    print("tokens/s: n/a")
print(f"{'peak GPU memory (GiB, driver)':42} {mem}")
print(f"{'expert load max/mean (median)':42} {load}")
print(f"{'dispatch+combine share of GPU op time':42} {100 * moves / total_ms:.1f}%  ({moves / steps_prof:.1f} ms/step)")
print(f"{'router kernels share of GPU op time':42} {100 * router / total_ms:.1f}%")
print(f"{'GEMMs (all shapes) share of GPU op time':42} {100 * gemm / total_ms:.1f}%")
print(f"{'GPU op time / step wall time (profiled)':42} {total_ms / steps_prof:.0f} / {step_ms:.0f} ms")
for l in gg: print("grouped GEMM " + l)
for l in ep_check.splitlines(): print(l)
print(f"cuda_tests exit {tests_rc}, msatrain exit {train_rc}, mpi ctest exit {mpi_rc}")
PY
