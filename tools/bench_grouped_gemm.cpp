// Times the MoE grouped GEMM (ops::grouped_gemm: one cuBLASLt GEMM per non-empty expert on its row slice)
// against one dense GEMM of the same total size, on the GPU, for gpu_small_moe's shapes by default:
//   forward W13   (R, 2F) = x (R, C) W13_e^T       forward W2   (R, C) = h (R, F) W2_e^T
//   weight grad   dW13_e (2F, C) += dgu_e^T x_e
// with R = tokens x top_k rows split evenly over the experts, and skewed (expert e gets a share proportional to
// e + 1). Prints TFLOP/s per case. Builds everywhere (it uses the ops API only); without a GPU it says so.
//   usage: bench_grouped_gemm [tokens 16384] [experts 8] [top_k 2] [d_model 1024] [d_ff 2816]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "ops/ops.h"
#include "ops/ops_moe.h"

namespace msa {
namespace {

// Seconds per call: 3 warm-up calls, then the median of 7 batches of 10 calls (host clock around a sync).
double seconds_per_call(const std::function<void()>& call) {
  for (int i = 0; i < 3; ++i) call();
  synchronize(Device::cuda);
  std::vector<double> batches;
  for (int b = 0; b < 7; ++b) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) call();
    synchronize(Device::cuda);
    batches.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 10);
  }
  std::sort(batches.begin(), batches.end());
  return batches[3];
}

Tensor filled(const Shape& s, DType dt) {
  Tensor t = Tensor::empty(s, dt, Device::cuda);
  std::vector<double> v(size_t(t.numel()));
  uint64_t x = 88172645463325252ull;
  for (double& e : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = (double(x % 2001) - 1000.0) * 2e-5;
  }
  t.from_vector(v);
  return t;
}

int run(int argc, char** argv) {
  auto arg = [&](int i, int64_t def) { return argc > i ? std::atoll(argv[i]) : def; };
  const int64_t tokens = arg(1, 16384), experts = arg(2, 8), k = arg(3, 2), c = arg(4, 1024), f = arg(5, 2816);
  if (gpu_count() == 0) {
    std::printf("bench_grouped_gemm: needs a GPU (this build or machine has none)\n");
    return 77;
  }
  bind_gpu();
  const int64_t r = tokens * k;
  std::vector<Tensor> w13, w2, dw13;
  std::vector<const Tensor*> w13p, w2p;
  std::vector<Tensor*> dw13p;
  for (int64_t e = 0; e < experts; ++e) {
    w13.push_back(filled({2 * f, c}, DType::bf16));
    w2.push_back(filled({c, f}, DType::bf16));
    dw13.push_back(Tensor::zeros({2 * f, c}, DType::f32, Device::cuda));
  }
  for (int64_t e = 0; e < experts; ++e) w13p.push_back(&w13[size_t(e)]), w2p.push_back(&w2[size_t(e)]), dw13p.push_back(&dw13[size_t(e)]);
  const Tensor x = filled({r, c}, DType::bf16), h = filled({r, f}, DType::bf16), dgu = filled({r, 2 * f}, DType::bf16);
  Tensor gu = Tensor::zeros({r, 2 * f}, DType::bf16, Device::cuda), y = Tensor::zeros({r, c}, DType::bf16, Device::cuda);
  Tensor dw_dense = Tensor::zeros({2 * f, c}, DType::f32, Device::cuda);

  std::vector<int64_t> even(size_t(experts) + 1), skew(size_t(experts) + 1);
  for (int64_t e = 0; e <= experts; ++e) {
    even[size_t(e)] = r * e / experts;
    skew[size_t(e)] = r * (e * (e + 1) / 2) / (experts * (experts + 1) / 2);
  }
  auto tflops = [](double flops, double s) { return flops / s / 1e12; };
  const double f13 = 2.0 * double(r) * double(2 * f) * double(c), f2 = 2.0 * double(r) * double(c) * double(f);
  std::printf("grouped GEMM vs one dense GEMM: %lld rows (%lld tokens x top-%lld) over %lld experts, C %lld, F %lld\n",
              (long long)r, (long long)tokens, (long long)k, (long long)experts, (long long)c, (long long)f);
  std::printf("%-30s %12s %12s %12s %8s\n", "GEMM", "dense TF/s", "even TF/s", "skewed TF/s", "even/dense");
  auto line = [&](const char* name, double flops, const std::function<void()>& dense,
                  const std::function<void(const std::vector<int64_t>&)>& grouped) {
    const double d = tflops(flops, seconds_per_call(dense));
    const double ev = tflops(flops, seconds_per_call([&] { grouped(even); }));
    const double sk = tflops(flops, seconds_per_call([&] { grouped(skew); }));
    std::printf("%-30s %12.1f %12.1f %12.1f %8.2f\n", name, d, ev, sk, ev / d);
  };
  line("forward W13 (R,2F)=(R,C)W^T", f13, [&] { ops::gemm(gu, x, false, w13[0], true); },
       [&](const std::vector<int64_t>& o) { ops::grouped_gemm(gu, x, w13p, true, o); });
  line("forward W2 (R,C)=(R,F)W^T", f2, [&] { ops::gemm(y, h, false, w2[0], true); },
       [&](const std::vector<int64_t>& o) { ops::grouped_gemm(y, h, w2p, true, o); });
  line("dgrad W13 (R,C)=(R,2F)W", f13, [&] { ops::gemm(y, dgu, false, w13[0], false); },
       [&](const std::vector<int64_t>& o) { ops::grouped_gemm(y, dgu, w13p, false, o); });
  line("wgrad W13 (2F,C)+=dgu^T x", f13, [&] { ops::gemm(dw_dense, dgu, true, x, false, 1.0, 1.0); },
       [&](const std::vector<int64_t>& o) { ops::grouped_gemm_weight_grad(dw13p, dgu, x, o); });
  return 0;
}

}  // namespace
}  // namespace msa

int main(int argc, char** argv) {
  try {
    return msa::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_grouped_gemm: %s\n", e.what());
    return 1;
  }
}
