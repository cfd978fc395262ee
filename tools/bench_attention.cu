// Times our fused attention (kernels/cuda/attention.cu) and cuDNN's (kernels/cuda/attention_cudnn.cu, causal
// positions 0..T-1) on the same inputs: forward and forward+backward, CUDA events after warm-up, median of 20
// runs. Standalone (no msatrain_lib): tools/device_attention.sh builds it with nvcc from the kernel, runtime and
// device-query sources and links cuDNN and cuBLASLt.
// Prints per shape "IMPL B T Hq Hkv d fwd_ms fwd_tflops fb_ms fb_tflops" for IMPL ours and cudnn (causal FLOPs:
// forward 4 B Hq T^2 d / 2, backward 2.5x forward), then "check ..." with cuDNN's outputs against ours
// (relative error of o, dq, dk, dv; lse max abs difference). MSA_BENCH_ONLY_OURS=1 skips cuDNN.
#include <cuda_bf16.h>
#include <cudnn.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_cudnn.h"
#include "kernels/cuda/cuda_check.h"

namespace msa::cuda {
int process_rank() { return -1; }
void fail(const std::string& what, const char* stmt, const char* file, int line) {
  throw Error(what + " in `" + stmt + "` at " + file + ":" + std::to_string(line));
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

// ||a - b|| / ||b|| of two bf16 device arrays (on the host), and max |a - b| of two fp32 ones.
double rel_error(const __nv_bfloat16* a, const __nv_bfloat16* b, int64_t n) {
  std::vector<__nv_bfloat16> ha(n), hb(n);
  CUDA_CHECK(cudaMemcpy(ha.data(), a, n * 2, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(hb.data(), b, n * 2, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = __bfloat162float(ha[i]), y = __bfloat162float(hb[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
double max_abs_diff(const float* a, const float* b, int64_t n) {
  std::vector<float> ha(n), hb(n);
  CUDA_CHECK(cudaMemcpy(ha.data(), a, n * 4, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(hb.data(), b, n * 4, cudaMemcpyDeviceToHost));
  double e = 0;
  for (int64_t i = 0; i < n; ++i) e = std::max(e, double(std::abs(ha[i] - hb[i])));
  return e;
}

int main(int argc, char** argv) {
  struct Shape { int64_t b, t, hq, hkv, d; };
  std::vector<Shape> shapes = {{1, 4096, 16, 4, 128}, {1, 16384, 16, 4, 128}, {4, 4096, 8, 2, 128}};
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--long") shapes.push_back({1, 65536, 16, 4, 128});
  const bool with_cudnn = !std::getenv("MSA_BENCH_ONLY_OURS");
  if (with_cudnn) std::printf("cudnn library %zu, headers %d\n", cudnnGetVersion(), CUDNN_VERSION);
  for (const Shape& s : shapes) {
    const int64_t nq = s.b * s.t * s.hq * s.d, nk = s.b * s.t * s.hkv * s.d, nl = s.b * s.hq * s.t;
    msa::cuda::AttentionDims dims{s.b, s.t, s.t, s.hq, s.hkv, s.d, 1.f / std::sqrt(float(s.d))};
    const bool cudnn = with_cudnn && msa::cuda::cudnn_attention_supported(dims);
    __nv_bfloat16 *q, *k, *v, *dout, *o[2], *dq[2], *dk[2], *dv[2];  // [0] ours, [1] cuDNN
    float* lse[2];
    int32_t* pos;
    void* ws;
    size_t wsb = msa::cuda::attention_backward_workspace_bytes(dims);
    if (cudnn)
      wsb = std::max({wsb, msa::cuda::cudnn_attention_forward_workspace_bytes(dims),
                      msa::cuda::cudnn_attention_backward_workspace_bytes(dims)});
    CUDA_CHECK(cudaMalloc(&q, nq * 2));
    CUDA_CHECK(cudaMalloc(&dout, nq * 2));
    CUDA_CHECK(cudaMalloc(&k, nk * 2));
    CUDA_CHECK(cudaMalloc(&v, nk * 2));
    for (int i = 0; i < 2; ++i) {
      CUDA_CHECK(cudaMalloc(&o[i], nq * 2));
      CUDA_CHECK(cudaMalloc(&dq[i], nq * 2));
      CUDA_CHECK(cudaMalloc(&dk[i], nk * 2));
      CUDA_CHECK(cudaMalloc(&dv[i], nk * 2));
      CUDA_CHECK(cudaMalloc(&lse[i], nl * 4));
    }
    CUDA_CHECK(cudaMalloc(&pos, s.t * 4));
    CUDA_CHECK(cudaMalloc(&ws, wsb));
    fill_random<<<1024, 256>>>(q, nq, 1);
    fill_random<<<1024, 256>>>(k, nk, 2);
    fill_random<<<1024, 256>>>(v, nk, 3);
    fill_random<<<1024, 256>>>(dout, nq, 4);
    fill_iota<<<64, 256>>>(pos, s.t);
    CUDA_CHECK_LAUNCH();
    const double fwd_flops = 4.0 * s.b * s.hq * double(s.t) * s.t * s.d / 2;
    auto report = [&](const char* impl, float f_ms, float fb_ms) {
      std::printf("%s %lld %lld %lld %lld %lld %.3f %.1f %.3f %.1f\n", impl, (long long)s.b, (long long)s.t,
                  (long long)s.hq, (long long)s.hkv, (long long)s.d, f_ms, fwd_flops / f_ms / 1e9, fb_ms,
                  3.5 * fwd_flops / fb_ms / 1e9);
      std::fflush(stdout);
    };
    {
      auto fwd = [&] { msa::cuda::attention_forward(o[0], lse[0], q, k, v, pos, pos, dims, nullptr); };
      auto bwd = [&] {
        msa::cuda::attention_backward(dq[0], dk[0], dv[0], dout, o[0], lse[0], q, k, v, pos, pos, dims, ws, nullptr);
      };
      report("ours", median_ms(fwd), median_ms([&] { fwd(); bwd(); }));
    }
    if (cudnn) {
      auto fwd = [&] { msa::cuda::cudnn_attention_forward(o[1], lse[1], q, k, v, dims, ws, nullptr); };
      auto bwd = [&] {
        msa::cuda::cudnn_attention_backward(dq[1], dk[1], dv[1], dout, o[1], lse[1], q, k, v, dims, ws, nullptr);
      };
      report("cudnn", median_ms(fwd), median_ms([&] { fwd(); bwd(); }));
      CUDA_CHECK(cudaDeviceSynchronize());
      std::printf("check %lld %lld %lld %lld %lld cudnn_vs_ours o %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n",
                  (long long)s.b, (long long)s.t, (long long)s.hq, (long long)s.hkv, (long long)s.d,
                  rel_error(o[1], o[0], nq), max_abs_diff(lse[1], lse[0], nl), rel_error(dq[1], dq[0], nq),
                  rel_error(dk[1], dk[0], nk), rel_error(dv[1], dv[0], nk));
      std::fflush(stdout);
    } else if (with_cudnn) {
      std::printf("cudnn %lld %lld %lld %lld %lld unsupported\n", (long long)s.b, (long long)s.t, (long long)s.hq,
                  (long long)s.hkv, (long long)s.d);
    }
    for (void* p : {(void*)q, (void*)k, (void*)v, (void*)dout, (void*)pos, ws}) CUDA_CHECK(cudaFree(p));
    for (int i = 0; i < 2; ++i)
      for (void* p : {(void*)o[i], (void*)dq[i], (void*)dk[i], (void*)dv[i], (void*)lse[i]}) CUDA_CHECK(cudaFree(p));
  }
  return 0;
}
