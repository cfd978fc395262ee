// Every GPU op of the dense model against its CPU oracle, through the same ops:: calls the model makes.
// Inputs are random (never zeros) and rounded to bf16 first, so both sides see the same numbers; tolerances
// are per op: bf16 outputs carry ~3 significant digits, fp32 outputs much more.
#include <cmath>

#include "ops/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {
namespace {

// A GPU tensor of dtype dt with random values, and its exact CPU f32 twin.
struct Pair {
  Tensor gpu, cpu;
};
Pair random_pair(const Shape& shape, DType dt, uint64_t seed, float scale = 1.0f) {
  Pair p{Tensor::empty(shape, dt, Device::cuda), Tensor::empty(shape, DType::f32)};
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const std::vector<float> v = random_floats(size_t(n), seed, scale);
  p.gpu.from_vector(std::vector<double>(v.begin(), v.end()));
  p.cpu.from_vector(p.gpu.to_vector());  // the bf16-rounded values
  return p;
}
Pair zeros_pair(const Shape& shape, DType dt) {
  return {Tensor::zeros(shape, dt, Device::cuda), Tensor::zeros(shape, DType::f32)};
}

std::vector<float> floats(const Tensor& t) {
  const std::vector<double> d = t.to_vector();
  return std::vector<float>(d.begin(), d.end());
}
void expect_close(const Tensor& gpu, const Tensor& cpu, double tol, const std::string& what) {
  const double err = rel_error(floats(gpu), floats(cpu));
  EXPECT_LT(err, tol) << what << ": relative error " << err;
}

Tensor ints(const std::vector<int32_t>& v, Device d) {
  Tensor t = Tensor::empty({int64_t(v.size())}, DType::i32, d);
  t.from_vector(std::vector<double>(v.begin(), v.end()));
  return t;
}

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
};

class CudaGemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(CudaGemm, MatchesCpuForBf16OutputAndFp32Accumulation) {
  SKIP_WITHOUT_GPU();
  const GemmCase g = GetParam();
  Pair a = random_pair(g.ta ? Shape{g.k, g.m} : Shape{g.m, g.k}, DType::bf16, 1);
  Pair b = random_pair(g.tb ? Shape{g.n, g.k} : Shape{g.k, g.n}, DType::bf16, 2);
  Pair c = zeros_pair({g.m, g.n}, DType::bf16);
  ops::gemm(c.gpu, a.gpu, g.ta, b.gpu, g.tb);
  ops::gemm(c.cpu, a.cpu, g.ta, b.cpu, g.tb);
  expect_close(c.gpu, c.cpu, 8e-3, "bf16 out");
  // fp32 output accumulating (beta = 1), as the weight gradients do.
  Pair acc = random_pair({g.m, g.n}, DType::f32, 3);
  ops::gemm(acc.gpu, a.gpu, g.ta, b.gpu, g.tb, 0.5, 1.0);
  ops::gemm(acc.cpu, a.cpu, g.ta, b.cpu, g.tb, 0.5, 1.0);
  expect_close(acc.gpu, acc.cpu, 1e-5, "f32 accumulate");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaGemm,
                         ::testing::Values(GemmCase{64, 96, 32, false, true}, GemmCase{33, 17, 65, false, false},
                                           GemmCase{128, 64, 256, true, false}, GemmCase{40, 24, 16, true, true},
                                           GemmCase{512, 384, 1024, false, true}),
                         [](const ::testing::TestParamInfo<GemmCase>& i) {
                           const GemmCase& g = i.param;
                           return "m" + std::to_string(g.m) + "_n" + std::to_string(g.n) + "_k" + std::to_string(g.k) +
                                  (g.ta ? "_aT" : "") + (g.tb ? "_bT" : "");
                         });

TEST(CudaOps, RmsNormForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (int64_t c : {1024, 96}) {  // a model width (register kernel) and a head-dim width (warp per row)
    const int64_t n = 1037;  // many rows per block and a ragged last block, so dw sums across blocks
    const std::string at = " at C " + std::to_string(c);
    Pair x = random_pair({n, c}, DType::bf16, 4), w = random_pair({c}, DType::bf16, 5);
    Pair dy = random_pair({n, c}, DType::bf16, 6);
    Pair y = zeros_pair({n, c}, DType::bf16), rstd = zeros_pair({n}, DType::f32);
    ops::rmsnorm_forward(y.gpu, rstd.gpu, x.gpu, w.gpu, 1e-5);
    ops::rmsnorm_forward(y.cpu, rstd.cpu, x.cpu, w.cpu, 1e-5);
    expect_close(y.gpu, y.cpu, 8e-3, "y" + at);
    expect_close(rstd.gpu, rstd.cpu, 1e-5, "rstd" + at);
    // The backward accumulates into dx and dw: start both from random values.
    Pair dx = random_pair({n, c}, DType::bf16, 7), dw = random_pair({c}, DType::f32, 8);
    ops::rmsnorm_backward(dx.gpu, dw.gpu, dy.gpu, x.gpu, w.gpu, rstd.gpu);
    ops::rmsnorm_backward(dx.cpu, dw.cpu, dy.cpu, x.cpu, w.cpu, rstd.cpu);
    expect_close(dx.gpu, dx.cpu, 1e-2, "dx" + at);
    expect_close(dw.gpu, dw.cpu, 1e-4, "dw" + at);
  }
}

TEST(CudaOps, RopeForwardAndInverse) {
  SKIP_WITHOUT_GPU();
  const int64_t b = 2, t = 37, h = 3, d = 64, r = 48;
  Pair x = random_pair({b, t, h, d}, DType::bf16, 9);
  Pair cs = random_pair({t, r / 2}, DType::f32, 10), sn = random_pair({t, r / 2}, DType::f32, 11);
  for (bool inverse : {false, true}) {
    ops::rope(x.gpu, cs.gpu, sn.gpu, r, inverse);
    ops::rope(x.cpu, cs.cpu, sn.cpu, r, inverse);
    expect_close(x.gpu, x.cpu, 1e-2, inverse ? "inverse" : "forward");
  }
}

TEST(CudaOps, SwiGluForwardBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 50;
  for (int64_t f : {300, 301}) {  // the paired (bf16x2) kernels and the one-column ones
    Pair gu = random_pair({n, 2 * f}, DType::bf16, 12), dh = random_pair({n, f}, DType::bf16, 13);
    Pair h = zeros_pair({n, f}, DType::bf16), dgu = zeros_pair({n, 2 * f}, DType::bf16);
    ops::swiglu_forward(h.gpu, gu.gpu);
    ops::swiglu_forward(h.cpu, gu.cpu);
    expect_close(h.gpu, h.cpu, 8e-3, "h, F " + std::to_string(f));
    ops::swiglu_backward(dgu.gpu, dh.gpu, gu.gpu);
    ops::swiglu_backward(dgu.cpu, dh.cpu, gu.cpu);
    expect_close(dgu.gpu, dgu.cpu, 8e-3, "dgu, F " + std::to_string(f));
  }
}

TEST(CudaOps, EmbeddingForwardBackwardWithRepeatedIds) {
  SKIP_WITHOUT_GPU();
  const int64_t v = 50, c = 96;
  const std::vector<int32_t> id = {3, 7, 3, 49, 0, 7, 7, 12};
  Pair table = random_pair({v, c}, DType::bf16, 14), dout = random_pair({int64_t(id.size()), c}, DType::bf16, 15);
  Pair out = zeros_pair({int64_t(id.size()), c}, DType::bf16), dtable = random_pair({v, c}, DType::f32, 16);
  const Tensor ids_gpu = ints(id, Device::cuda), ids_cpu = ints(id, Device::cpu);
  ops::embedding_forward(out.gpu, table.gpu, ids_gpu);
  ops::embedding_forward(out.cpu, table.cpu, ids_cpu);
  expect_close(out.gpu, out.cpu, 1e-6, "out");
  ops::embedding_backward(dtable.gpu, dout.gpu, ids_gpu);
  ops::embedding_backward(dtable.cpu, dout.cpu, ids_cpu);
  expect_close(dtable.gpu, dtable.cpu, 1e-6, "dtable");
}

TEST(CudaOps, CrossEntropyLossesAndGradientOverALargeVocabulary) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 6, v = 50257;
  const std::vector<int32_t> tgt = {0, 50256, -1, 1234, 7, 40000};  // one ignored row
  Pair logits = random_pair({n, v}, DType::bf16, 17, 3.0f), losses = zeros_pair({n}, DType::f32);
  const double scale = 1.0 / 4096;
  ops::cross_entropy(losses.gpu, logits.gpu, ints(tgt, Device::cuda), scale);
  ops::cross_entropy(losses.cpu, logits.cpu, ints(tgt, Device::cpu), scale);
  expect_close(losses.gpu, losses.cpu, 1e-5, "losses");
  EXPECT_EQ(floats(losses.gpu)[2], 0.0f);
  expect_close(logits.gpu, logits.cpu, 1e-2, "dlogits");

  // The model's padded layout: 50257 vocabulary columns in rows of 50304; the padding gets gradient 0.
  const int64_t vp = 50304;
  Pair padded = random_pair({n, vp}, DType::bf16, 18, 3.0f);
  ops::cross_entropy(losses.gpu, padded.gpu, ints(tgt, Device::cuda), scale, v);
  ops::cross_entropy(losses.cpu, padded.cpu, ints(tgt, Device::cpu), scale, v);
  expect_close(losses.gpu, losses.cpu, 1e-5, "padded losses");
  expect_close(padded.gpu, padded.cpu, 1e-2, "padded dlogits");
  const std::vector<float> g = floats(padded.gpu);
  for (int64_t i = 0; i < n; ++i)  // every row, the ignored one included
    for (int64_t j = v; j < vp; ++j) ASSERT_EQ(g[size_t(i * vp + j)], 0.0f) << "row " << i << ", padding column " << j;
}

TEST(CudaOps, ElementwiseAndReductions) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 100003;
  Pair y = random_pair({n}, DType::bf16, 18), x = random_pair({n}, DType::bf16, 19);
  ops::add_inplace(y.gpu, x.gpu, -0.5);
  ops::add_inplace(y.cpu, x.cpu, -0.5);
  expect_close(y.gpu, y.cpu, 8e-3, "add");
  Pair y2 = random_pair({n + 1}, DType::bf16, 28), x2 = random_pair({n + 1}, DType::bf16, 29);  // even: paired path
  ops::add_inplace(y2.gpu, x2.gpu, 1.5);
  ops::add_inplace(y2.cpu, x2.cpu, 1.5);
  expect_close(y2.gpu, y2.cpu, 8e-3, "add, even length");
  ops::scale_inplace(y.gpu, 3.0);
  ops::scale_inplace(y.cpu, 3.0);
  expect_close(y.gpu, y.cpu, 8e-3, "scale");
  Pair g = random_pair({n}, DType::f32, 20);
  EXPECT_NEAR(ops::sum(g.gpu), ops::sum(g.cpu), 1e-3 * std::sqrt(double(n)));
  EXPECT_NEAR(ops::sum_squares(g.gpu) / ops::sum_squares(g.cpu), 1.0, 1e-5);
  EXPECT_TRUE(ops::all_finite(g.gpu));
  // Finite fp32 values whose squares overflow a float (a diverging step must read as a large norm, not as inf).
  Pair huge = random_pair({4096}, DType::f32, 22, 1e25f);
  const double ss = ops::sum_squares(huge.gpu);
  EXPECT_TRUE(std::isfinite(ss));
  EXPECT_NEAR(ss / ops::sum_squares(huge.cpu), 1.0, 1e-5);
  Tensor bad = Tensor::empty({1}, DType::f32);
  bad.from_vector({std::nan("")});
  g.gpu.slice(n - 1, n).copy_from(bad);
  EXPECT_FALSE(ops::all_finite(g.gpu));
  // fp32 -> bf16 -> fp32 keeps 8 bits of mantissa.
  Pair master = random_pair({n}, DType::f32, 21);
  Tensor value = Tensor::empty({n}, DType::bf16, Device::cuda), back = Tensor::empty({n}, DType::f32, Device::cuda);
  ops::convert(value, master.gpu);
  ops::convert(back, value);
  expect_close(back, master.cpu, 4e-3, "convert");
}

TEST(CudaOps, CopyColumnsForBothElementSizes) {
  SKIP_WITHOUT_GPU();
  for (DType dt : {DType::bf16, DType::f32}) {
    Pair src = random_pair({9, 40}, dt, 22), dst = random_pair({9, 24}, dt, 23);
    ops::copy_columns(dst.gpu, 4, src.gpu, 13, 17);
    ops::copy_columns(dst.cpu, 4, src.cpu, 13, 17);
    expect_close(dst.gpu, dst.cpu, 1e-7, dtype_name(dt));
  }
}

TEST(CudaOps, AdamWMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 4099;
  Pair p = random_pair({n}, DType::f32, 24), g = random_pair({n}, DType::f32, 25);
  Pair m = random_pair({n}, DType::f32, 26, 0.1f), v = random_pair({n}, DType::f32, 27, 0.1f);
  v.gpu.from_vector([&] {  // second moments are >= 0: square them
    std::vector<double> s = v.cpu.to_vector();
    for (double& e : s) e = e * e;
    return s;
  }());
  v.cpu.from_vector(v.gpu.to_vector());
  const ops::AdamWHyper h{1e-3, 0.9, 0.95, 1e-8, 0.1, 7, 0.5};
  ops::adamw_update(p.gpu, m.gpu, v.gpu, g.gpu, h);
  ops::adamw_update(p.cpu, m.cpu, v.cpu, g.cpu, h);
  expect_close(p.gpu, p.cpu, 1e-6, "p");
  expect_close(m.gpu, m.cpu, 1e-6, "m");
  expect_close(v.gpu, v.cpu, 1e-6, "v");
}

}  // namespace
}  // namespace msa::test

namespace msa::test {
namespace {

TEST(CudaOps, CopyColumnsRopeBothDirections) {
  SKIP_WITHOUT_GPU();
  const int64_t b = 2, t = 33, hq = 8, hkv = 2, d = 128, rot = 128, width = (hq + 2 * hkv) * d;
  Pair qkv = random_pair({b * t, width}, DType::bf16, 30);
  Pair cs = random_pair({t, rot / 2}, DType::f32, 31), sn = random_pair({t, rot / 2}, DType::f32, 32);
  for (bool inverse : {false, true}) {
    Pair k = zeros_pair({b * t, hkv * d}, DType::bf16);
    ops::copy_columns_rope(k.gpu, 0, qkv.gpu, hq * d, hkv * d, d, cs.gpu, sn.gpu, rot, inverse);
    ops::copy_columns_rope(k.cpu, 0, qkv.cpu, hq * d, hkv * d, d, cs.cpu, sn.cpu, rot, inverse);
    expect_close(k.gpu, k.cpu, 1e-2, inverse ? "inverse" : "forward");
  }
}

}  // namespace
}  // namespace msa::test
