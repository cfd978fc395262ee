// The MoE ops on the GPU against their CPU oracles (ops_moe_cpu.cpp) on fresh random inputs: the router forward
// and backward (softmax and sigmoid, renormalised or not, ties), the row gather / scatter-add / dot, and the NCCL
// row exchange on one rank; then the MoE layer (bf16, GPU) against the same layer in fp32 on the CPU from the same
// (bf16-rounded) weights and input, for plain, sigmoid + shared, capacity-drop and all-to-one-expert routing; and
// a small MoE model's first step, GPU against CPU.
#include <cmath>
#include <numeric>

#include "core/rng.h"
#include "kernels/cuda/nccl_group.h"
#include "model/moe_dispatch.h"
#include "model/moe_ffn.h"
#include "model/transformer.h"
#include "ops/ops.h"
#include "ops/ops_moe.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {
namespace {

std::vector<float> floats(const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  return {v.begin(), v.end()};
}
// A host tensor of normal(0, scale) values, rounded to bf16 when `round` (what a bf16 device copy holds).
Tensor host_random(const Shape& s, uint64_t seed, float scale, bool round) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::vector<float> v = random_floats(size_t(t.numel()), seed, scale);
  if (round) v = to_float(to_bf16(v));
  t.from_vector({v.begin(), v.end()});
  return t;
}
Tensor on_gpu(const Tensor& host, DType dt) {
  Tensor d = Tensor::empty(host.shape(), dt, Device::cuda);
  d.from_vector(host.to_vector());
  return d;
}

struct RouteCase {
  const char* name;
  int64_t n, e, k;
  bool sigmoid, renorm;
};

TEST(CudaMoe, RouterForwardAndBackwardMatchCpu) {
  SKIP_WITHOUT_GPU();
  const RouteCase cases[] = {{"softmax renorm", 300, 8, 2, false, true},   {"softmax plain", 257, 8, 3, false, false},
                             {"sigmoid renorm", 300, 8, 2, true, true},    {"sigmoid plain", 100, 5, 1, true, false},
                             {"64 experts softmax", 200, 64, 6, false, true}, {"40 experts sigmoid", 129, 40, 4, true, true}};
  uint64_t seed = 100;
  for (const RouteCase& c : cases) {
    SCOPED_TRACE(c.name);
    const int64_t n = c.n, e = c.e, k = c.k;
    Tensor logits = host_random({n, e}, ++seed, 2.0f, false);
    Tensor scores = Tensor::zeros({n, e}, DType::f32), idx = Tensor::zeros({n, k}, DType::i32);
    Tensor gates = Tensor::zeros({n, k}, DType::f32), lse = Tensor::zeros({n}, DType::f32);
    ops::moe_route_forward(scores, idx, gates, lse, logits, k, c.sigmoid, c.renorm);
    Tensor d_logits = on_gpu(logits, DType::f32), d_scores = Tensor::zeros({n, e}, DType::f32, Device::cuda);
    Tensor d_idx = Tensor::zeros({n, k}, DType::i32, Device::cuda), d_gates = Tensor::zeros({n, k}, DType::f32, Device::cuda);
    Tensor d_lse = Tensor::zeros({n}, DType::f32, Device::cuda);
    ops::moe_route_forward(d_scores, d_idx, d_gates, d_lse, d_logits, k, c.sigmoid, c.renorm);
    EXPECT_EQ(d_idx.to_vector(), idx.to_vector());
    EXPECT_LT(rel_error(floats(d_scores), floats(scores)), 1e-6);
    EXPECT_LT(rel_error(floats(d_gates), floats(gates)), 1e-6);
    EXPECT_LT(rel_error(floats(d_lse), floats(lse)), 1e-6);

    Tensor dgates = host_random({n, k}, ++seed, 1.0f, false);
    std::vector<double> aux(static_cast<size_t>(e));
    for (int64_t i = 0; i < e; ++i) aux[size_t(i)] = 0.01 * double(i + 1) / double(e);
    Tensor dlogits = Tensor::zeros({n, e}, DType::f32);
    ops::moe_route_backward(dlogits, dgates, scores, idx, gates, lse, logits, aux, 0.05, c.sigmoid, c.renorm);
    const Tensor d_dgates = on_gpu(dgates, DType::f32);
    for (DType dt : {DType::f32, DType::bf16}) {
      Tensor d_dlogits = Tensor::zeros({n, e}, dt, Device::cuda);
      ops::moe_route_backward(d_dlogits, d_dgates, d_scores, d_idx, d_gates, d_lse, d_logits, aux, 0.05, c.sigmoid,
                              c.renorm);
      EXPECT_LT(rel_error(floats(d_dlogits), floats(dlogits)), dt == DType::f32 ? 1e-5 : 8e-3) << dtype_name(dt);
    }
  }
}

TEST(CudaMoe, RouterTiesGoToTheLowerId) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 3, e = 40, k = 3;
  std::vector<double> z(size_t(n * e), 0.0);  // row 0: all equal; row 1: experts 33 and 7 tied best; row 2: 39 best
  z[size_t(e + 33)] = z[size_t(e + 7)] = 1.5;
  z[size_t(2 * e + 39)] = 3.0;
  Tensor logits = Tensor::empty({n, e}, DType::f32, Device::cuda);
  logits.from_vector(z);
  Tensor scores = Tensor::zeros({n, e}, DType::f32, Device::cuda), idx = Tensor::zeros({n, k}, DType::i32, Device::cuda);
  Tensor gates = Tensor::zeros({n, k}, DType::f32, Device::cuda), lse = Tensor::zeros({n}, DType::f32, Device::cuda);
  ops::moe_route_forward(scores, idx, gates, lse, logits, k, false, true);
  EXPECT_EQ(idx.to_vector(), (std::vector<double>{0, 1, 2, 7, 33, 0, 39, 0, 1}));
  const std::vector<double> g = gates.to_vector();
  EXPECT_NEAR(g[0] + g[1] + g[2], 1.0, 1e-6);
  EXPECT_NEAR(g[0], 1.0 / 3.0, 1e-6);
}

TEST(CudaMoe, GatherScatterAndDotsMatchCpu) {
  SKIP_WITHOUT_GPU();
  for (int64_t c : {int64_t(256), int64_t(1024), int64_t(37)}) {  // 37: the scalar (unvectorised) path
    SCOPED_TRACE(c);
    const int64_t n = 97, m = 300;
    Rng rng(static_cast<uint64_t>(c));
    std::vector<int64_t> rows(static_cast<size_t>(m));
    std::vector<double> scale(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) {
      rows[size_t(i)] = int64_t(rng.next_u64() % uint64_t(n - 10));  // rows n-10.. get nothing
      scale[size_t(i)] = 0.25 + double(rng.next_u64() % 1000) / 1000.0;
    }
    rows[5] = rows[6] = rows[7] = 3;  // one destination with many sources
    const Tensor src = host_random({n, c}, 7 + uint64_t(c), 1.0f, true);
    const Tensor d_src = on_gpu(src, DType::bf16);

    // gather, with and without a scale
    for (bool scaled : {false, true}) {
      Tensor dst = Tensor::zeros({m, c}, DType::f32), d_dst = Tensor::zeros({m, c}, DType::bf16, Device::cuda);
      ops::gather_rows(dst, src, rows, scaled ? scale : std::vector<double>{});
      ops::gather_rows(d_dst, d_src, rows, scaled ? scale : std::vector<double>{});
      const double err = rel_error(floats(d_dst), floats(dst));
      if (scaled) {
        EXPECT_LT(err, 4e-3);
      } else {
        EXPECT_EQ(err, 0.0) << "an unscaled gather moves bf16 values unchanged";
      }
    }

    // scatter-add into a non-zero destination, with a scale; twice on the GPU: bit-identical
    const Tensor rows_src = host_random({m, c}, 9 + uint64_t(c), 1.0f, true);
    const Tensor base = host_random({n, c}, 11 + uint64_t(c), 1.0f, true);
    Tensor dst = Tensor::zeros({n, c}, DType::f32);
    dst.copy_from(base);
    ops::scatter_add_rows(dst, rows_src, rows, scale);
    std::vector<double> first;
    for (int rep = 0; rep < 2; ++rep) {
      Tensor d_dst = on_gpu(base, DType::bf16);
      ops::scatter_add_rows(d_dst, on_gpu(rows_src, DType::bf16), rows, scale);
      EXPECT_LT(rel_error(floats(d_dst), floats(dst)), 4e-3);
      if (rep == 0) {
        first = d_dst.to_vector();
      } else {
        EXPECT_EQ(d_dst.to_vector(), first) << "the scatter-add must not depend on scheduling";
      }
      // the rows nobody sends to keep their values exactly
      const std::vector<double> got = d_dst.to_vector(), want = base.to_vector();
      EXPECT_EQ(std::vector<double>(got.end() - 10 * c, got.end()), std::vector<double>(want.end() - 10 * c, want.end()));
    }

    // row dots
    std::vector<double> dots, d_dots;
    ops::row_dots(dots, src, rows, rows_src);
    ops::row_dots(d_dots, d_src, rows, on_gpu(rows_src, DType::bf16));
    ASSERT_EQ(d_dots.size(), dots.size());
    EXPECT_LT(rel_error(std::vector<float>(d_dots.begin(), d_dots.end()), std::vector<float>(dots.begin(), dots.end())),
              1e-5);
  }
}

TEST(CudaMoe, NcclRowExchangeOnOneRankIsTheIdentity) {
  SKIP_WITHOUT_GPU();
  // NCCL grouped send/recv to itself: the whole code path of the multi-GPU exchange except the peers.
  cuda::NcclGroup group(0, 1, [](void*, int64_t) {});
  const Tensor h = host_random({33, 64}, 5, 1.0f, true);
  Tensor send = on_gpu(h, DType::bf16), recv = Tensor::zeros({33, 64}, DType::bf16, Device::cuda);
  ops::scale_inplace(send, 2.0);  // compute-stream work the exchange must wait for
  const int64_t bytes = send.numel() * 2;
  group.alltoallv(send.raw(), {bytes}, recv.raw(), {bytes});
  ops::scale_inplace(recv, 0.5);  // ordered after it
  EXPECT_EQ(recv.to_vector(), h.to_vector());
  // An empty exchange is a no-op on both sides.
  group.alltoallv(send.raw(), {0}, recv.raw(), {0});
  EXPECT_EQ(recv.to_vector(), h.to_vector());
}

// ---- The layer: GPU (bf16) against CPU (fp32) from the same weights and input.
struct LayerCase {
  const char* name;
  std::string score;
  bool renormalize;
  int64_t k, shared;
  double capacity_factor;
  bool zero_router;  // all logits 0: every token takes experts 0..k-1 (ties to the lower id), the rest get none
};

void check_layer(const LayerCase& lc) {
  SCOPED_TRACE(lc.name);
  ModelConfig cfg;
  cfg.d_model = 128;
  const int64_t b = 2, t = 96, n = b * t, c = cfg.d_model;
  MoeConfig m;
  m.n_experts = 8;
  m.top_k = lc.k;
  m.d_ff = 96;
  m.score = lc.score;
  m.renormalize = lc.renormalize;
  m.shared_experts = lc.shared;
  m.capacity_factor = lc.capacity_factor;
  m.aux_loss_coef = 0.3;
  m.z_loss_coef = 0.05;
  LayerContext cpu_ctx(cfg, DType::f32, Device::cpu, b, t), gpu_ctx(cfg, DType::bf16, Device::cuda, b, t);
  cpu_ctx.moe = gpu_ctx.moe = m;
  cpu_ctx.weights.moe = gpu_ctx.weights.moe = 0.7;
  MoEFFN cpu("ffn", cpu_ctx), gpu("ffn", gpu_ctx);
  ParamList pc, pg;
  cpu.collect(pc);
  gpu.collect(pg);
  ASSERT_EQ(pc.size(), pg.size());
  Rng rng(3);
  for (size_t i = 0; i < pg.size(); ++i) {
    std::vector<double> v(size_t(pg[i]->value.numel()));
    const bool router = pg[i]->name.find("router") != std::string::npos;
    for (double& x : v) x = (router && lc.zero_router) ? 0.0 : 0.1 * rng.normal();
    pg[i]->assign(v);
    pc[i]->assign(pg[i]->value.to_vector());  // the CPU gets the bf16-rounded weights
  }
  const Tensor x = host_random({n, c}, 21, 1.0f, true), dout = host_random({n, c}, 22, 1.0f, true);
  const Tensor xg = on_gpu(x, DType::bf16), doutg = on_gpu(dout, DType::bf16);
  const Tensor& oc = cpu.forward(x);
  const Tensor& og = gpu.forward(xg);
  EXPECT_EQ(gpu.plan().token, cpu.plan().token) << "same routing";
  EXPECT_EQ(gpu.plan().offsets, cpu.plan().offsets);
  EXPECT_LT(rel_error(floats(og), floats(oc)), 1e-2);
  const MoeLayerStats sc = cpu.moe_stats(), sg = gpu.moe_stats();
  EXPECT_EQ(sg.dropped, sc.dropped);
  EXPECT_NEAR(sg.aux_sum, sc.aux_sum, 1e-4 * sc.aux_sum);
  EXPECT_NEAR(sg.z_sum, sc.z_sum, 1e-4 * sc.z_sum + 1e-6);
  if (lc.capacity_factor > 0) {
    EXPECT_GT(sc.dropped, 0) << "the case must drop";
  }
  if (lc.zero_router) {
    for (int64_t e = 0; e < m.n_experts; ++e) EXPECT_EQ(sc.routed[size_t(e)], e < lc.k ? double(n) : 0.0) << e;
  }

  for (Param* p : pc) p->grad.zero_();
  for (Param* p : pg) p->grad.zero_();
  Tensor dxc = Tensor::zeros({n, c}, DType::f32), dxg = Tensor::zeros({n, c}, DType::bf16, Device::cuda);
  cpu.backward(dxc, dout, x);
  gpu.backward(dxg, doutg, xg);
  EXPECT_LT(rel_error(floats(dxg), floats(dxc)), 2e-2);
  for (size_t i = 0; i < pc.size(); ++i) {
    const std::vector<float> gc = floats(pc[i]->grad), gg = floats(pg[i]->grad);
    const double norm = std::sqrt(std::inner_product(gc.begin(), gc.end(), gc.begin(), 0.0));
    if (norm == 0) {
      EXPECT_EQ(std::sqrt(std::inner_product(gg.begin(), gg.end(), gg.begin(), 0.0)), 0.0)
          << pc[i]->name << ": an expert without tokens gets no gradient";
      continue;
    }
    EXPECT_LT(rel_error(gg, gc), 2e-2) << pc[i]->name;
  }
}

TEST(CudaMoe, LayerSoftmaxTop2MatchesCpu) {
  SKIP_WITHOUT_GPU();
  check_layer({"softmax top-2", "softmax", true, 2, 0, 0.0, false});
}
TEST(CudaMoe, LayerSigmoidRenormSharedMatchesCpu) {
  SKIP_WITHOUT_GPU();
  check_layer({"sigmoid renorm + shared", "sigmoid", true, 2, 1, 0.0, false});
}
TEST(CudaMoe, LayerCapacityDropMatchesCpu) {
  SKIP_WITHOUT_GPU();
  check_layer({"capacity 1.0", "softmax", true, 2, 0, 1.0, false});
}
TEST(CudaMoe, LayerAllTokensToOneExpertMatchesCpu) {
  SKIP_WITHOUT_GPU();
  check_layer({"all to expert 0", "softmax", false, 1, 0, 0.0, true});
}

// ---- A small MoE model's first step: GPU against CPU (see test_cuda_model.cpp for the dense one).
TEST(CudaMoe, ModelFirstStepMatchesCpu) {
  SKIP_WITHOUT_GPU();
  ModelConfig cfg;
  cfg.vocab_size = 320;
  cfg.d_model = 256;
  cfg.n_layers = 2;
  cfg.n_heads = 4;
  cfg.n_kv_heads = 2;
  cfg.head_dim = 64;
  cfg.ffn_hidden = 512;
  cfg.seq_len = 128;
  cfg.ffn = "moe";
  MoeConfig m;
  m.n_experts = 8;
  m.top_k = 2;
  m.d_ff = 128;
  m.dense_layers = "0";
  const int64_t b = 2, t = cfg.seq_len, n = b * t;
  Transformer cpu(cfg, AttentionConfig{}, m, DType::f32, Device::cpu, b, t);
  Transformer gpu(cfg, AttentionConfig{}, m, DType::bf16, Device::cuda, b, t);
  Rng rng(11);
  gpu.init_weights(rng);
  for (size_t i = 0; i < cpu.params().size(); ++i) cpu.params()[i]->assign(gpu.params()[i]->value.to_vector());
  Tensor tok = Tensor::empty({b, t}, DType::i32), tgt = Tensor::empty({b, t}, DType::i32);
  Rng data(5);
  std::vector<double> tv(static_cast<size_t>(n)), gv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tv[size_t(i)] = double(data.next_u64() % 320), gv[size_t(i)] = double((i * 7 + 3) % 320);
  tok.from_vector(tv);
  tgt.from_vector(gv);
  Tensor tok_d = Tensor::empty({b, t}, DType::i32, Device::cuda), tgt_d = Tensor::empty({b, t}, DType::i32, Device::cuda);
  tok_d.copy_from(tok);
  tgt_d.copy_from(tgt);
  const double w = 1.0 / double(n);
  cpu.zero_grads();
  gpu.zero_grads();
  const ForwardStats fc = cpu.forward(tok, tgt, LossWeights{w, 0.0, w});
  const ForwardStats fg = gpu.forward(tok_d, tgt_d, LossWeights{w, 0.0, w});
  cpu.backward();
  gpu.backward();
  EXPECT_NEAR(fg.lm_loss_sum * w, fc.lm_loss_sum * w, 5e-3 * fc.lm_loss_sum * w);
  EXPECT_NEAR(fg.objective, fc.objective, 5e-3 * std::abs(fc.objective));
  ASSERT_EQ(fg.moe.size(), fc.moe.size());
  for (size_t l = 0; l < fc.moe.size(); ++l) {
    EXPECT_NEAR(fg.moe[l].aux_sum, fc.moe[l].aux_sum, 1e-2 * fc.moe[l].aux_sum) << "layer " << l;
    EXPECT_NEAR(fg.moe[l].z_sum, fc.moe[l].z_sum, 1e-2 * fc.moe[l].z_sum + 1e-6) << "layer " << l;
  }
  for (size_t i = 0; i < cpu.params().size(); ++i) {
    const double gc = std::sqrt(ops::sum_squares(cpu.params()[i]->grad));
    const double gg = std::sqrt(ops::sum_squares(gpu.params()[i]->grad));
    // Experts see their tokens only: a token routed differently (a near-tie under bf16) moves their norm more.
    const double tol = cpu.params()[i]->expert >= 0 ? 6e-2 : 3e-2;
    EXPECT_NEAR(gg, gc, tol * gc + 1e-7) << cpu.params()[i]->name;
  }
}

}  // namespace
}  // namespace msa::test
