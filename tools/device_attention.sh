#!/usr/bin/env bash
# One device call for the fused attention: build the kernels' tests and benchmark standalone (seconds, not the
# whole msatrain_lib), run the correctness tests against the CPU oracle (ours and cuDNN's), time ours, cuDNN's
# (through kernels/cuda/attention_cudnn.cu) and PyTorch SDPA, print a table.
# Usage (device machine, repo root): bash tools/device_attention.sh [--long] [--variants] [--ncu]
#   --long: add B 1, T 64K; --variants: also test and time our kernel's benchmark switches.
set -uo pipefail
OUT=${OUT:-/tmp/attn_out}; mkdir -p "$OUT"
NVCC=/usr/local/cuda/bin/nvcc
ARCH="-gencode=arch=compute_90a,code=sm_90a"
B=/tmp/attn_build; mkdir -p $B
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" 2>/dev/null
# Objects in parallel: the kernels, the CUDA runtime and helpers, the tests, the benchmark.
NV="$NVCC -std=c++17 $ARCH -O3 -I. -Isrc"
$NV -lineinfo -c kernels/cuda/attention.cu -o $B/attention.o &
$NV -c kernels/cuda/attention_cudnn.cu -o $B/attention_cudnn.o &
$NV -c kernels/cuda/runtime.cu -o $B/runtime.o &
$NV -c kernels/cuda/cuda_check.cu -o $B/cuda_check.o &
$NV -c kernels/cuda/device_query.cu -o $B/device_query.o &
for t in test_cuda_attention test_cuda_attention_cudnn; do
  g++ -std=c++20 -O2 -I. -Isrc -I/usr/include/eigen3 -I/usr/local/cuda/include -c tests/cuda/$t.cpp -o $B/$t.o &
done
$NV -c tools/bench_attention.cu -o $B/bench_main.o &
wait
LIBS="-L/usr/local/cuda/lib64 -lcudnn -lcublasLt -lcublas -lcudart"
g++ -o $B/test_attention $B/test_cuda_attention.o $B/test_cuda_attention_cudnn.o $B/attention.o $B/attention_cudnn.o \
  $B/runtime.o $B/cuda_check.o $B/device_query.o $LIBS -lgtest -lgtest_main -lpthread || exit 1
$NVCC $ARCH -o $B/bench_attention $B/bench_main.o $B/attention.o $B/attention_cudnn.o $B/runtime.o $B/device_query.o \
  $LIBS || exit 1
$B/test_attention 2>&1 | tee $OUT/tests.log | grep -E "^\[attention|FAILED|PASSED|Failure|error|msatrain:"
if [[ " $* " == *" --variants "* ]]; then
  # Our kernel's non-default variants (benchmark switches) must pass too.
  MSA_ATTN_BWD_SPLIT=0 $B/test_attention 2>&1 | tee $OUT/tests_nosplit.log | grep -E "FAILED|PASSED|Failure|error"
  MSA_ATTN_BWD_SPLIT=1 MSA_ATTN_BWD_WARPS=4 $B/test_attention 2>&1 | tee $OUT/tests_w4.log | grep -E "FAILED|PASSED|Failure|error"
  MSA_ATTN_FWD_BN=32 $B/test_attention 2>&1 | tee $OUT/tests_bn32.log | grep -E "FAILED|PASSED|Failure|error"
  MSA_ATTN_BWD_DQ16=1 $B/test_attention 2>&1 | tee $OUT/tests_dq16.log | grep -E "FAILED|PASSED|Failure|error"
fi
$B/bench_attention "$@" 2>&1 | tee $OUT/bench.log
if [[ " $* " == *" --variants "* ]]; then
  # Variants (label: environment), same run, without --long: the old dQ tiling, 4-warp backward CTAs, forward key
  # tiles of 32, the split backward forced off.
  for var in dq16:MSA_ATTN_BWD_DQ16=1 bwd_w4:MSA_ATTN_BWD_WARPS=4 fwd_bn32:MSA_ATTN_FWD_BN=32 nosplit:MSA_ATTN_BWD_SPLIT=0; do
    env MSA_BENCH_ONLY_OURS=1 ${var#*:} $B/bench_attention 2>&1 | sed "s/^ours/ours_${var%%:*}/" | tee -a $OUT/bench.log
  done
fi
PYTHONUNBUFFERED=1 python3 tools/bench_attention.py "$@" 2>&1 | tee -a $OUT/bench.log
if [[ " $* " == *" --ncu "* ]]; then
  # The first 16K launch of each kernel (the 4K shape launches each kernel 46 / 23 times before it): duration,
  # tensor-pipe and shared-memory utilisation, and the stall reasons per issued instruction.
  M="gpu__time_duration.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
  M="$M,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.avg.per_cycle_active"
  M="$M,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_sectors_op_red.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed"
  for k in fwd:46 bwd:23; do
    ncu --clock-control none -k regex:attention_${k%%:*}_kernel --launch-skip ${k##*:} -c 1 \
      --metrics "$M,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      $B/bench_attention > $OUT/ncu_${k%%:*}.txt 2>&1
    echo "--- ncu ${k%%:*} (16K)"; grep -E "^\s+(gpu__|sm__|l1tex__|lts__|smsp__)" $OUT/ncu_${k%%:*}.txt | awk '$NF+0 > 0.05' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -40
  done
fi
echo "=== cuDNN vs ours on the benchmark inputs (relative error; lse max abs difference) ==="
grep -E "^check " $OUT/bench.log
echo "=== table: impl B T Hq Hkv d fwd_ms fwd_TFLOPs fwdbwd_ms fwdbwd_TFLOPs bwd_TFLOPs ==="
grep -E "^(ours[a-z0-9_]*|cudnn|sdpa) [0-9]" $OUT/bench.log | awk 'NF == 10 { printf "%s %.1f\n", $0, 2.5 * $7 * $8 / ($9 - $7) } NF != 10 { print }'
