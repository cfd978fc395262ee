#!/usr/bin/env bash
# One device call for the fused attention: build the kernel's tests and benchmark standalone (seconds, not the
# whole msatrain_lib), run the correctness tests against the CPU oracle, time ours and PyTorch SDPA, print a table.
# Usage (device machine, repo root): bash tools/device_attention.sh [--long] [--ncu]
set -uo pipefail
OUT=${OUT:-/tmp/attn_out}; mkdir -p "$OUT"
NVCC=/usr/local/cuda/bin/nvcc
ARCH="-gencode=arch=compute_90a,code=sm_90a"
B=/tmp/attn_build; mkdir -p $B
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
# Objects in parallel: the kernel, the CUDA helpers, the test, the benchmark.
$NVCC -std=c++17 $ARCH -O3 -I. -Isrc -lineinfo -c kernels/cuda/attention.cu -o $B/attention.o &
$NVCC -std=c++17 $ARCH -O3 -I. -Isrc -c kernels/cuda/cuda_check.cu -o $B/cuda_check.o &
$NVCC -std=c++17 $ARCH -O3 -I. -Isrc -c kernels/cuda/device_query.cu -o $B/device_query.o &
g++ -std=c++20 -O2 -I. -Isrc -I/usr/include/eigen3 -I/usr/local/cuda/include -c tests/cuda/test_cuda_attention.cpp -o $B/test.o &
$NVCC -std=c++17 $ARCH -O3 -I. -Isrc -c tools/bench_attention.cu -o $B/bench_main.o &
wait
g++ -o $B/test_attention $B/test.o $B/attention.o $B/cuda_check.o $B/device_query.o -L/usr/local/cuda/lib64 \
  -lgtest -lgtest_main -lcudart -lpthread || exit 1
$NVCC $ARCH -o $B/bench_attention $B/bench_main.o $B/attention.o || exit 1
$B/test_attention 2>&1 | tee $OUT/tests.log | grep -E "^\[attention\]|FAILED|PASSED|Failure|error" 
MSA_ATTN_BWD_WARPS=8 $B/test_attention 2>&1 | tee $OUT/tests_w8.log | grep -E "FAILED|PASSED|Failure|error"
$B/bench_attention "$@" 2>&1 | tee $OUT/bench.log
MSA_ATTN_BWD_WARPS=8 $B/bench_attention "$@" 2>&1 | sed 's/^ours/ours_w8/' | tee -a $OUT/bench.log
PYTHONUNBUFFERED=1 python3 tools/bench_attention.py "$@" 2>&1 | tee -a $OUT/bench.log
if [[ " $* " == *" --ncu "* ]]; then
  # The first 16K launch of each kernel (the 4K shape launches each kernel 46 / 23 times before it).
  for k in fwd:46 bwd:23; do
    ncu --clock-control none -k regex:attention_${k%%:*}_kernel --launch-skip ${k##*:} -c 1 --section SpeedOfLight \
      --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      $B/bench_attention > $OUT/ncu_${k%%:*}.txt 2>&1
    grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|Stall|Shared Memory|L1/TEX Hit|Bank" $OUT/ncu_${k%%:*}.txt | head -30
  done
fi
echo "=== table: impl B T Hq Hkv d fwd_ms fwd_TFLOPs fwdbwd_ms fwdbwd_TFLOPs ==="
grep -E "^(ours|ours_w8|sdpa) " $OUT/bench.log
