// Fused causal GQA attention on the GPU (kernels/cuda/attention.cu) against the CPU oracle (kernels/cpu/attention.h)
// fed the same bf16-rounded inputs. Tolerances (bf16 inputs and outputs, fp32 accumulation):
//   forward  o: rel_error < 1e-2; lse: |err| < 1e-3 * max(1, |lse|), -inf exactly where a query sees no key
//   backward dq, dk, dv: rel_error < 2e-2 each
#include <algorithm>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {
namespace {

enum class Positions {
  kCausal,     // queries = keys = 0..T-1
  kCpChunks,   // context parallel: queries are chunks 1 and 2*cp-2 of the sequence (global positions), keys all of it
  kSomeBlind,  // keys start at position 5: the first 5 queries see no key
  kShuffled,   // causal positions, keys in a random order (nothing may assume sorted positions)
};

struct Case {
  int64_t batch, tq, tk, hq, hkv, d;
  Positions pos;
  std::string name() const {
    const char* k[] = {"causal", "cp", "blind", "shuffled"};
    return "B" + std::to_string(batch) + "_Tq" + std::to_string(tq) + "_Tk" + std::to_string(tk) + "_H" +
           std::to_string(hq) + "x" + std::to_string(hkv) + "_d" + std::to_string(d) + "_" + k[int(pos)];
  }
};

void make_positions(const Case& c, std::vector<int32_t>& qpos, std::vector<int32_t>& kpos) {
  qpos.resize(c.tq);
  kpos.resize(c.tk);
  std::iota(kpos.begin(), kpos.end(), 0);
  std::iota(qpos.begin(), qpos.end(), 0);
  if (c.pos == Positions::kSomeBlind)
    for (auto& p : kpos) p += 5;
  if (c.pos == Positions::kShuffled) std::shuffle(kpos.begin(), kpos.end(), std::mt19937(7));
  if (c.pos == Positions::kCpChunks) {
    // tk = 4 * chunk (cp = 2 ranks, 4 chunks), this rank holds chunks 1 and 2.
    const int64_t chunk = c.tk / 4;
    for (int64_t i = 0; i < c.tq; ++i) qpos[i] = int32_t(i < chunk ? chunk + i : 2 * chunk + (i - chunk));
  }
}

struct Inputs {
  std::vector<float> q, k, v, dout;  // bf16-rounded
  std::vector<int32_t> qpos, kpos;
};

Inputs make_inputs(const Case& c, uint64_t seed) {
  Inputs in;
  auto round = [](std::vector<float> x) { return to_float(to_bf16(x)); };
  in.q = round(random_floats(c.batch * c.tq * c.hq * c.d, seed + 1));
  in.k = round(random_floats(c.batch * c.tk * c.hkv * c.d, seed + 2));
  in.v = round(random_floats(c.batch * c.tk * c.hkv * c.d, seed + 3));
  in.dout = round(random_floats(c.batch * c.tq * c.hq * c.d, seed + 4));
  make_positions(c, in.qpos, in.kpos);
  return in;
}

cpu::AttentionShape cpu_shape(const Case& c) {
  return cpu::AttentionShape{c.batch, c.tq, c.tk, c.hq, c.hkv, c.d, 1.0 / std::sqrt(double(c.d))};
}
cuda::AttentionDims gpu_dims(const Case& c) {
  return cuda::AttentionDims{c.batch, c.tq, c.tk, c.hq, c.hkv, c.d, float(1.0 / std::sqrt(double(c.d)))};
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {1, 1, 8, 1, 1, 64, Positions::kCpChunks},  // one query (position 2) over 8 keys
      {1, 17, 17, 4, 4, 32, Positions::kCausal},
      {2, 100, 100, 8, 2, 64, Positions::kCausal},
      {1, 257, 257, 4, 1, 128, Positions::kCausal},
      {2, 1000, 1000, 4, 2, 128, Positions::kCausal},
      {1, 300, 300, 2, 1, 32, Positions::kCausal},
      {1, 256, 512, 4, 2, 128, Positions::kCpChunks},
      {2, 50, 100, 8, 4, 64, Positions::kCpChunks},
      {1, 130, 130, 4, 2, 64, Positions::kSomeBlind},
      {1, 200, 200, 4, 2, 128, Positions::kShuffled},
  };
  return all;
}

class CudaAttention : public ::testing::TestWithParam<Case> {};

TEST_P(CudaAttention, ForwardAndBackwardMatchCpu) {
  SKIP_WITHOUT_GPU();
  const Case c = GetParam();
  const Inputs in = make_inputs(c, 1000 + c.tq * 7 + c.d);
  const auto s = cpu_shape(c);
  const auto dims = gpu_dims(c);
  const size_t nq = in.q.size(), nk = in.k.size(), nl = size_t(c.batch * c.hq * c.tq);

  // CPU oracle.
  std::vector<float> o_ref(nq), lse_ref(nl), dq_ref(nq), dk_ref(nk, 0.f), dv_ref(nk, 0.f);  // dk, dv accumulate
  cpu::attention_forward(o_ref.data(), lse_ref.data(), in.q.data(), in.k.data(), in.v.data(), in.qpos.data(),
                         in.kpos.data(), s);
  cpu::attention_backward(dq_ref.data(), dk_ref.data(), dv_ref.data(), in.dout.data(), o_ref.data(), lse_ref.data(),
                          in.q.data(), in.k.data(), in.v.data(), in.qpos.data(), in.kpos.data(), s);

  // GPU.
  DeviceBuffer<__nv_bfloat16> q(nq), k(nk), v(nk), dout(nq), o(nq), dq(nq), dk(nk), dv(nk);
  DeviceBuffer<float> lse(nl);
  DeviceBuffer<int32_t> qpos(c.tq), kpos(c.tk);
  q.upload(to_bf16(in.q));
  k.upload(to_bf16(in.k));
  v.upload(to_bf16(in.v));
  dout.upload(to_bf16(in.dout));
  qpos.upload(in.qpos);
  kpos.upload(in.kpos);
  // Garbage in the outputs: they must be written, not accumulated.
  CUDA_CHECK(cudaMemset(dq.ptr, 0x7f, nq * 2));
  CUDA_CHECK(cudaMemset(dk.ptr, 0x7f, nk * 2));
  CUDA_CHECK(cudaMemset(dv.ptr, 0x7f, nk * 2));
  cuda::attention_forward(o.ptr, lse.ptr, q.ptr, k.ptr, v.ptr, qpos.ptr, kpos.ptr, dims, nullptr);
  DeviceBuffer<unsigned char> ws(cuda::attention_backward_workspace_bytes(dims));
  CUDA_CHECK(cudaMemset(ws.ptr, 0x7f, ws.n));
  cuda::attention_backward(dq.ptr, dk.ptr, dv.ptr, dout.ptr, o.ptr, lse.ptr, q.ptr, k.ptr, v.ptr, qpos.ptr, kpos.ptr,
                           dims, ws.ptr, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());

  const auto o_gpu = to_float(o.download());
  const auto lse_gpu = lse.download();
  EXPECT_LT(rel_error(o_gpu, o_ref), 1e-2) << c.name();
  double lse_err = 0;
  int64_t lse_bad = 0;
  for (size_t i = 0; i < nl; ++i) {
    if (std::isinf(lse_ref[i])) {
      lse_bad += !(std::isinf(lse_gpu[i]) && lse_gpu[i] < 0);
      continue;
    }
    const double err = std::abs(double(lse_gpu[i]) - lse_ref[i]);
    lse_err = std::max(lse_err, err / std::max(1.0, double(std::abs(lse_ref[i]))));
  }
  EXPECT_LT(lse_err, 1e-3) << c.name();
  EXPECT_EQ(lse_bad, 0) << c.name() << ": queries that see no key must get lse = -inf";
  // A query that sees no key: output row exactly 0.
  if (c.pos == Positions::kSomeBlind) {
    for (size_t i = 0; i < size_t(c.d); ++i) EXPECT_EQ(o_gpu[i], 0.f) << c.name();
  }

  const double e_dq = rel_error(to_float(dq.download()), dq_ref);
  const double e_dk = rel_error(to_float(dk.download()), dk_ref);
  const double e_dv = rel_error(to_float(dv.download()), dv_ref);
  EXPECT_LT(e_dq, 2e-2) << c.name();
  EXPECT_LT(e_dk, 2e-2) << c.name();
  EXPECT_LT(e_dv, 2e-2) << c.name();
  std::printf("[attention] %-36s o %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n", c.name().c_str(),
              rel_error(o_gpu, o_ref), lse_err, e_dq, e_dk, e_dv);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name(); });

TEST(CudaAttentionApi, RejectsUnsupportedHeadDim) {
  SKIP_WITHOUT_GPU();
  cuda::AttentionDims dims{1, 4, 4, 2, 1, 96, 0.1f};
  EXPECT_THROW(cuda::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, dims, nullptr),
               std::exception);
}

}  // namespace
}  // namespace msa::test
