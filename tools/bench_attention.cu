// Times our fused attention (kernels/cuda/attention.cu): forward and forward+backward, CUDA events after warm-up,
// median of 20 runs. Standalone (no msatrain_lib): tools/device_attention.sh builds it with
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -Isrc tools/bench_attention.cu kernels/cuda/attention.cu
// Prints one line per shape: "ours B T Hq Hkv d fwd_ms fwd_tflops fb_ms fb_tflops" (causal FLOPs: forward
// 4 B Hq T^2 d / 2, backward 2.5x forward).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"

namespace msa::cuda {
int process_rank() { return -1; }
void fail(const std::string& what, const char* stmt, const char* file, int line) {
  throw std::runtime_error(what + " in `" + stmt + "` at " + file + ":" + std::to_string(line));
}
}  // namespace msa::cuda

__global__ void fill_random(__nv_bfloat16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;  // cheap hash -> uniform in [-1, 1)
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    x[i] = __float2bfloat16(float(h & 0xffffff) / float(1 << 23) - 1.f);
  }
}
__global__ void fill_iota(int32_t* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = int32_t(i);
}

template <class F>
float median_ms(F&& f, int warm = 3, int reps = 20) {
  for (int i = 0; i < warm; ++i) f();
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a));
    f();
    CUDA_CHECK(cudaEventRecord(b));
    CUDA_CHECK(cudaEventSynchronize(b));
    float t;
    CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int main(int argc, char** argv) {
  struct Shape { int64_t b, t, hq, hkv, d; };
  std::vector<Shape> shapes = {{1, 4096, 16, 4, 128}, {1, 16384, 16, 4, 128}, {4, 4096, 8, 2, 128}};
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--long") shapes.push_back({1, 65536, 16, 4, 128});
  for (const Shape& s : shapes) {
    const int64_t nq = s.b * s.t * s.hq * s.d, nk = s.b * s.t * s.hkv * s.d;
    msa::cuda::AttentionDims dims{s.b, s.t, s.t, s.hq, s.hkv, s.d, 1.f / std::sqrt(float(s.d))};
    __nv_bfloat16 *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float* lse;
    int32_t* pos;
    void* ws;
    const size_t wsb = msa::cuda::attention_backward_workspace_bytes(dims);
    CUDA_CHECK(cudaMalloc(&q, nq * 2));
    CUDA_CHECK(cudaMalloc(&o, nq * 2));
    CUDA_CHECK(cudaMalloc(&dout, nq * 2));
    CUDA_CHECK(cudaMalloc(&dq, nq * 2));
    CUDA_CHECK(cudaMalloc(&k, nk * 2));
    CUDA_CHECK(cudaMalloc(&v, nk * 2));
    CUDA_CHECK(cudaMalloc(&dk, nk * 2));
    CUDA_CHECK(cudaMalloc(&dv, nk * 2));
    CUDA_CHECK(cudaMalloc(&lse, s.b * s.hq * s.t * 4));
    CUDA_CHECK(cudaMalloc(&pos, s.t * 4));
    CUDA_CHECK(cudaMalloc(&ws, wsb));
    fill_random<<<1024, 256>>>(q, nq, 1);
    fill_random<<<1024, 256>>>(k, nk, 2);
    fill_random<<<1024, 256>>>(v, nk, 3);
    fill_random<<<1024, 256>>>(dout, nq, 4);
    fill_iota<<<64, 256>>>(pos, s.t);
    CUDA_CHECK_LAUNCH();
    auto fwd = [&] { msa::cuda::attention_forward(o, lse, q, k, v, pos, pos, dims, nullptr); };
    auto bwd = [&] {
      msa::cuda::attention_backward(dq, dk, dv, dout, o, lse, q, k, v, pos, pos, dims, ws, nullptr);
    };
    const float f_ms = median_ms(fwd);
    const float fb_ms = median_ms([&] { fwd(); bwd(); });
    const double fwd_flops = 4.0 * s.b * s.hq * double(s.t) * s.t * s.d / 2;
    std::printf("ours %lld %lld %lld %lld %lld %.3f %.1f %.3f %.1f\n", (long long)s.b, (long long)s.t,
                (long long)s.hq, (long long)s.hkv, (long long)s.d, f_ms, fwd_flops / f_ms / 1e9, fb_ms,
                3.5 * fwd_flops / fb_ms / 1e9);
    std::fflush(stdout);
    for (void* p : {(void*)q, (void*)k, (void*)v, (void*)o, (void*)dout, (void*)dq, (void*)dk, (void*)dv,
                    (void*)lse, (void*)pos, ws})
      CUDA_CHECK(cudaFree(p));
  }
  return 0;
}
