// Causal GQA attention through cuDNN (kernels/cuda/attention_cudnn.cu) against the CPU oracle
// (kernels/cpu/attention.h, same bf16-rounded inputs, positions 0..T-1) and against our own kernel
// (kernels/cuda/attention.cu) on the same device inputs. Fresh random inputs per shape; outputs pre-filled with
// garbage, so they must be written. Tolerances as for our kernel (test_cuda_attention.cpp):
//   o rel_error < 1e-2; lse |err| < 1e-3 max(1, |lse|); dq, dk, dv rel_error < 2e-2.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_cudnn.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {
namespace {

struct Case {
  int64_t batch, t, hq, hkv, d;
  std::string name() const {
    char buf[96];
    std::snprintf(buf, sizeof buf, "B%lld_T%lld_H%lldx%lld_d%lld", (long long)batch, (long long)t, (long long)hq,
                  (long long)hkv, (long long)d);
    return buf;
  }
  cuda::AttentionDims dims() const { return {batch, t, t, hq, hkv, d, float(1.0 / std::sqrt(double(d)))}; }
  size_t nq() const { return size_t(batch * t * hq * d); }
  size_t nk() const { return size_t(batch * t * hkv * d); }
  size_t nl() const { return size_t(batch * hq * t); }
};

// T not a multiple of 128 (nor of 64) in most cases: the backward then takes the padded graph on cuDNN <= 9.15.
const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {2, 100, 8, 2, 64},  {1, 257, 4, 4, 128}, {2, 384, 8, 2, 128}, {1, 1000, 4, 4, 64},
      {2, 130, 4, 1, 128}, {1, 17, 8, 2, 128},  {2, 512, 8, 2, 64},
  };
  return all;
}

// One case's inputs (host copies and device buffers) and device outputs.
struct Problem {
  std::vector<float> q, k, v, dout;  // bf16-rounded host copies
  DeviceBuffer<__nv_bfloat16> dq_, dk_, dv_, q_, k_, v_, dout_, o_;
  DeviceBuffer<float> lse_;
  explicit Problem(const Case& c, uint64_t seed)
      : dq_(c.nq()), dk_(c.nk()), dv_(c.nk()), q_(c.nq()), k_(c.nk()), v_(c.nk()), dout_(c.nq()), o_(c.nq()),
        lse_(c.nl()) {
    auto round = [](std::vector<float> x) { return to_float(to_bf16(x)); };
    q = round(random_floats(c.nq(), seed + 1));
    k = round(random_floats(c.nk(), seed + 2));
    v = round(random_floats(c.nk(), seed + 3));
    dout = round(random_floats(c.nq(), seed + 4));
    q_.upload(to_bf16(q));
    k_.upload(to_bf16(k));
    v_.upload(to_bf16(v));
    dout_.upload(to_bf16(dout));
  }
  void garbage() {
    for (auto* b : {&dq_, &dk_, &dv_, &o_}) CUDA_CHECK(cudaMemset(b->ptr, 0x7f, b->n * 2));
    CUDA_CHECK(cudaMemset(lse_.ptr, 0x7f, lse_.n * 4));
  }
  void cudnn(const Case& c) {
    garbage();
    const auto dims = c.dims();
    DeviceBuffer<unsigned char> wf(cuda::cudnn_attention_forward_workspace_bytes(dims));
    DeviceBuffer<unsigned char> wb(cuda::cudnn_attention_backward_workspace_bytes(dims));
    CUDA_CHECK(cudaMemset(wb.ptr, 0x7f, wb.n));  // the dQ accumulator must be zeroed by cuDNN, not by luck
    cuda::cudnn_attention_forward(o_.ptr, lse_.ptr, q_.ptr, k_.ptr, v_.ptr, dims, wf.ptr, nullptr);
    cuda::cudnn_attention_backward(dq_.ptr, dk_.ptr, dv_.ptr, dout_.ptr, o_.ptr, lse_.ptr, q_.ptr, k_.ptr, v_.ptr, dims,
                                   wb.ptr, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  void ours(const Case& c) {
    garbage();
    const auto dims = c.dims();
    std::vector<int32_t> pos(size_t(c.t));
    std::iota(pos.begin(), pos.end(), 0);
    DeviceBuffer<int32_t> p(pos.size());
    p.upload(pos);
    DeviceBuffer<unsigned char> ws(cuda::attention_backward_workspace_bytes(dims));
    cuda::attention_forward(o_.ptr, lse_.ptr, q_.ptr, k_.ptr, v_.ptr, p.ptr, p.ptr, dims, nullptr);
    cuda::attention_backward(dq_.ptr, dk_.ptr, dv_.ptr, dout_.ptr, o_.ptr, lse_.ptr, q_.ptr, k_.ptr, v_.ptr, p.ptr,
                             p.ptr, dims, ws.ptr, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
  }
};

struct Outputs {
  std::vector<float> o, lse, dq, dk, dv;
};
Outputs download(const Problem& r) {
  return {to_float(r.o_.download()), r.lse_.download(), to_float(r.dq_.download()), to_float(r.dk_.download()),
          to_float(r.dv_.download())};
}

// max |a - b| / max(1, |b|)
double lse_error(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i)
    e = std::max(e, std::abs(double(a[i]) - b[i]) / std::max(1.0, double(std::abs(b[i]))));
  return e;
}

void expect_close(const Outputs& got, const Outputs& want, const std::string& what) {
  const double eo = rel_error(got.o, want.o), el = lse_error(got.lse, want.lse);
  const double eq = rel_error(got.dq, want.dq), ek = rel_error(got.dk, want.dk), ev = rel_error(got.dv, want.dv);
  EXPECT_LT(eo, 1e-2) << what;
  EXPECT_LT(el, 1e-3) << what;
  EXPECT_LT(eq, 2e-2) << what;
  EXPECT_LT(ek, 2e-2) << what;
  EXPECT_LT(ev, 2e-2) << what;
  std::printf("[attention cudnn] %-40s o %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n", what.c_str(), eo, el, eq, ek, ev);
}

class CudnnAttention : public ::testing::TestWithParam<Case> {};

TEST_P(CudnnAttention, MatchesCpuOracle) {
  SKIP_WITHOUT_GPU();
  const Case c = GetParam();
  ASSERT_TRUE(cuda::cudnn_attention_supported(c.dims())) << c.name() << ": cuDNN found no engine (see stderr)";
  Problem r(c, 2000 + uint64_t(c.t) * 3 + uint64_t(c.d));
  r.cudnn(c);

  std::vector<int32_t> pos(size_t(c.t));
  std::iota(pos.begin(), pos.end(), 0);
  const cpu::AttentionShape s{c.batch, c.t, c.t, c.hq, c.hkv, c.d, 1.0 / std::sqrt(double(c.d))};
  Outputs want{std::vector<float>(c.nq()), std::vector<float>(c.nl()), std::vector<float>(c.nq()),
               std::vector<float>(c.nk(), 0.f), std::vector<float>(c.nk(), 0.f)};  // dk, dv accumulate
  cpu::attention_forward(want.o.data(), want.lse.data(), r.q.data(), r.k.data(), r.v.data(), pos.data(), pos.data(),
                         s);
  cpu::attention_backward(want.dq.data(), want.dk.data(), want.dv.data(), r.dout.data(), want.o.data(),
                          want.lse.data(), r.q.data(), r.k.data(), r.v.data(), pos.data(), pos.data(), s);
  expect_close(download(r), want, c.name() + " vs CPU");
}

TEST_P(CudnnAttention, MatchesOurKernel) {
  SKIP_WITHOUT_GPU();
  const Case c = GetParam();
  ASSERT_TRUE(cuda::cudnn_attention_supported(c.dims())) << c.name();
  Problem r(c, 3000 + uint64_t(c.t) * 5 + uint64_t(c.d));
  r.ours(c);
  const Outputs ours = download(r);
  r.cudnn(c);
  expect_close(download(r), ours, c.name() + " vs ours");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudnnAttention, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name(); });

TEST(CudnnAttentionApi, DeclinesCrossAttentionShapes) {
  SKIP_WITHOUT_GPU();
  // Tq != Tk (context parallel's gathered keys) is never plain causal: our kernel keeps it.
  EXPECT_FALSE(cuda::cudnn_attention_supported(cuda::AttentionDims{1, 64, 128, 4, 2, 64, 0.125f}));
}

}  // namespace
}  // namespace msa::test
