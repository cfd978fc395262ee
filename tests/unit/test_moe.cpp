// Mixture-of-Experts: gradient checks (double, central differences) of the router (softmax / sigmoid, with and
// without renormalisation), the experts, the aux and z losses and the capacity-drop path; the forward against a
// per-token reference; routing edge cases (one expert takes every token, an expert with no tokens, capacity
// exactly hit, score ties).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "gradcheck.h"
#include "model/moe_dispatch.h"
#include "model/moe_experts.h"
#include "model/moe_ffn.h"
#include "comm/comm.h"
#include "model/transformer.h"
#include "ops/ops.h"
#include "ops/ops_moe.h"
#include "tests/unit/one_rank_comm.h"

namespace msa {
namespace {

using test::expect_gradient;
using test::random_tensor;
using test::weighted_sum;

MoeConfig moe_config(int64_t experts, int64_t k) {
  MoeConfig m;
  m.n_experts = experts;
  m.top_k = k;
  m.d_ff = 6;
  m.aux_loss_coef = 0.3;
  m.z_loss_coef = 0.05;
  return m;
}

struct MoeCase {
  const char* name;
  std::string score;
  bool renormalize;
  int64_t experts, k, shared;
  double capacity_factor;
};

// loss = sum(out * r) + the layer's aux and z terms (weight 0.7 per token), against finite differences for x
// and every parameter.
void check_moe_layer(const MoeCase& c, bool zero_output_weight = false) {
  SCOPED_TRACE(c.name);
  Rng rng(11);
  ModelConfig cfg = test::small_model_config(11, 5);
  LayerContext ctx(cfg, DType::f64, Device::cpu, 2, 5);
  ctx.moe = moe_config(c.experts, c.k);
  ctx.moe.score = c.score;
  ctx.moe.renormalize = c.renormalize;
  ctx.moe.shared_experts = c.shared;
  ctx.moe.capacity_factor = c.capacity_factor;
  ctx.weights.moe = 0.7;
  MoEFFN layer("ffn", ctx);
  const int64_t n = ctx.rows(), d = cfg.d_model;
  ParamList ps;
  layer.collect(ps);
  test::randomise(ps, rng, 0.5);
  Tensor x = random_tensor({n, d}, rng);
  Tensor r = random_tensor({n, d}, rng, zero_output_weight ? 0.0 : 1.0);
  auto loss = [&] {
    const Tensor& out = layer.forward(x);
    return weighted_sum(out, r) + layer.moe_stats().objective;
  };
  loss();
  if (c.capacity_factor > 0) {
    EXPECT_GT(layer.moe_stats().dropped, 0) << "the case must exercise the drop path";
  }
  for (Param* p : ps) p->grad.zero_();
  Tensor dx = Tensor::zeros({n, d}, DType::f64);
  layer.backward(dx, r, x);
  expect_gradient("moe dx", x, dx, loss);
  for (Param* p : ps) expect_gradient("moe " + p->name, p->value, p->grad, loss);
}

TEST(MoeGradcheck, SoftmaxRenormalised) { check_moe_layer({"softmax renorm", "softmax", true, 4, 2, 0, 0}); }
TEST(MoeGradcheck, SoftmaxPlain) { check_moe_layer({"softmax plain", "softmax", false, 4, 2, 0, 0}); }
TEST(MoeGradcheck, SigmoidRenormalised) { check_moe_layer({"sigmoid renorm", "sigmoid", true, 5, 3, 0, 0}); }
TEST(MoeGradcheck, SigmoidPlain) { check_moe_layer({"sigmoid plain", "sigmoid", false, 4, 2, 0, 0}); }
TEST(MoeGradcheck, TopOneWithSharedExperts) { check_moe_layer({"top-1 + shared", "softmax", false, 3, 1, 2, 0}); }
TEST(MoeGradcheck, CapacityDrop) { check_moe_layer({"capacity 0.5", "softmax", true, 4, 2, 0, 0.5}); }
TEST(MoeGradcheck, CapacityDropSigmoid) { check_moe_layer({"capacity 0.6 sigmoid", "sigmoid", false, 4, 2, 1, 0.6}); }
// Only the router losses: the gradient reaches the router (and x) through the aux and z terms alone.
TEST(MoeGradcheck, AuxAndZLossesAlone) { check_moe_layer({"aux + z only", "softmax", true, 4, 2, 0, 0}, true); }
TEST(MoeGradcheck, AuxAndZLossesAloneSigmoid) {
  check_moe_layer({"aux + z only sigmoid", "sigmoid", false, 4, 2, 0, 0}, true);
}

TEST(MoeGradcheck, ExpertSetWithAnEmptyGroup) {
  Rng rng(12);
  ExpertSet set({"e.0", "e.1", "e.2"}, {0, 1, 2}, 5, 4, DType::f64, Device::cpu);
  ParamList ps;
  set.collect(ps);
  test::randomise(ps, rng, 0.5);
  const std::vector<int64_t> offsets = {0, 3, 3, 7};  // expert 1 gets no rows
  Tensor x = random_tensor({7, 5}, rng), r = random_tensor({7, 5}, rng);
  Tensor y = Tensor::zeros({7, 5}, DType::f64);
  auto loss = [&] {
    set.forward(y, x, offsets);
    return weighted_sum(y, r);
  };
  loss();
  Tensor dx = Tensor::zeros({7, 5}, DType::f64);
  set.backward(dx, r, x, offsets);
  expect_gradient("experts dx", x, dx, loss);
  for (Param* p : ps) expect_gradient("experts " + p->name, p->value, p->grad, loss);
  EXPECT_EQ(ops::sum_squares(ps[2]->grad) + ops::sum_squares(ps[3]->grad), 0.0);  // the empty expert
}

// out[t] = sum_j gate[t,j] * SwiGLU_{idx[t,j]}(x[t]) over kept slots, written per token.
std::vector<double> reference_moe(const Tensor& x, const ParamList& ps, int64_t k, const std::vector<double>& gates,
                                  const std::vector<double>& idx, const std::vector<char>& kept) {
  const int64_t n = x.dim(0), c = x.dim(1);
  std::vector<double> out(size_t(n * c), 0.0);
  const double* xp = x.data<double>();
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < k; ++j) {
      if (!kept[size_t(t * k + j)]) continue;
      const int64_t e = int64_t(idx[size_t(t * k + j)]);
      const Param* w13 = ps[size_t(1 + 2 * e)];
      const Param* w2 = ps[size_t(2 + 2 * e)];
      const int64_t f = w2->value.dim(1);
      std::vector<double> h(static_cast<size_t>(f));
      for (int64_t i = 0; i < f; ++i) {
        double g = 0, u = 0;
        for (int64_t q = 0; q < c; ++q) {
          g += w13->value.data<double>()[i * c + q] * xp[t * c + q];
          u += w13->value.data<double>()[(f + i) * c + q] * xp[t * c + q];
        }
        h[size_t(i)] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t q = 0; q < c; ++q) {
        double y = 0;
        for (int64_t i = 0; i < f; ++i) y += w2->value.data<double>()[q * f + i] * h[size_t(i)];
        out[size_t(t * c + q)] += gates[size_t(t * k + j)] * y;
      }
    }
  return out;
}

struct Built {
  LayerContext ctx;
  MoEFFN layer;
  ParamList ps;
  Built(const MoeConfig& m, int64_t b, int64_t t)
      : ctx(test::small_model_config(11, t), DType::f64, Device::cpu, b, t), layer("ffn", (ctx.moe = m, ctx)) {
    layer.collect(ps);
  }
};

TEST(MoeForward, MatchesPerTokenReference) {
  Rng rng(13);
  MoeConfig m = moe_config(4, 2);
  m.capacity_factor = 0.75;  // some slots dropped
  Built b(m, 2, 6);
  test::randomise(b.ps, rng, 0.5);
  Tensor x = random_tensor({12, 12}, rng);
  const std::vector<double> out = b.layer.forward(x).to_vector();
  const DispatchPlan& p = b.layer.plan();
  std::vector<char> kept(24, 0);
  for (int64_t s : p.slot) kept[size_t(s)] = 1;
  // Recompute the router's choices independently to check them too.
  Tensor logits = Tensor::zeros({12, 4}, DType::f64);
  ops::gemm(logits, x, false, b.ps[0]->value, true);
  const std::vector<double> z = logits.to_vector();
  std::vector<double> gates(24), idx(24);
  for (int64_t t = 0; t < 12; ++t) {
    std::vector<double> s(4);
    double mx = -1e300, sum = 0;
    for (int i = 0; i < 4; ++i) mx = std::max(mx, z[size_t(t * 4 + i)]);
    for (int i = 0; i < 4; ++i) sum += s[size_t(i)] = std::exp(z[size_t(t * 4 + i)] - mx);
    for (double& v : s) v /= sum;
    std::vector<int> order = {0, 1, 2, 3};
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return s[size_t(a)] > s[size_t(c)]; });
    const double top = s[size_t(order[0])] + s[size_t(order[1])];
    for (int j = 0; j < 2; ++j) {
      idx[size_t(t * 2 + j)] = order[size_t(j)];
      gates[size_t(t * 2 + j)] = s[size_t(order[size_t(j)])] / top;
    }
  }
  EXPECT_EQ(b.layer.moe_stats().dropped, 24 - double(p.slot.size()));
  EXPECT_GT(b.layer.moe_stats().dropped, 0);
  const std::vector<double> ref = reference_moe(x, b.ps, 2, gates, idx, kept);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-12) << i;
}

Tensor idx_tensor(const std::vector<int32_t>& ids, int64_t k) {
  Tensor t = Tensor::empty({int64_t(ids.size()) / k, k}, DType::i32);
  std::copy(ids.begin(), ids.end(), t.data<int32_t>());
  return t;
}

TEST(MoeRouting, AllTokensToOneExpertAndExpertsWithNone) {
  MoeConfig m = moe_config(4, 1);
  const DispatchPlan p = plan_dispatch(idx_tensor({2, 2, 2, 2, 2}, 1), m, nullptr);
  EXPECT_EQ(p.routed, (std::vector<int64_t>{0, 0, 5, 0}));
  EXPECT_EQ(p.offsets, (std::vector<int64_t>{0, 0, 0, 5, 5}));  // experts 0, 1, 3 get no rows
  EXPECT_EQ(p.token, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(p.dropped, 0);
  EXPECT_EQ(p.send_counts, (std::vector<int64_t>{5}));
  EXPECT_EQ(p.recv_counts, (std::vector<int64_t>{5}));
}

TEST(MoeRouting, SendOrderIsExpertThenTokenThenSlot) {
  MoeConfig m = moe_config(3, 2);
  // token 0 -> (1, 0); token 1 -> (0, 2); token 2 -> (1, 2)
  const DispatchPlan p = plan_dispatch(idx_tensor({1, 0, 0, 2, 1, 2}, 2), m, nullptr);
  EXPECT_EQ(p.slot, (std::vector<int64_t>{1, 2, 0, 4, 3, 5}));
  EXPECT_EQ(p.token, (std::vector<int64_t>{0, 1, 0, 2, 1, 2}));
  EXPECT_EQ(p.offsets, (std::vector<int64_t>{0, 2, 4, 6}));
}

TEST(MoeRouting, CapacityExactlyHitKeepsEveryToken) {
  MoeConfig m = moe_config(2, 1);
  m.capacity_factor = 2.0;  // ceil(2 * 8 * 1 / 2) = 8: all 8 tokens of expert 0 fit exactly
  EXPECT_EQ(expert_capacity(m, 8), 8);
  DispatchPlan p = plan_dispatch(idx_tensor({0, 0, 0, 0, 0, 0, 0, 0}, 1), m, nullptr);
  EXPECT_EQ(p.dropped, 0);
  EXPECT_EQ(p.token.size(), 8u);
  m.capacity_factor = 1.75;  // capacity 7: the last token's slot is dropped
  EXPECT_EQ(expert_capacity(m, 8), 7);
  p = plan_dispatch(idx_tensor({0, 0, 0, 0, 0, 0, 0, 0}, 1), m, nullptr);
  EXPECT_EQ(p.dropped, 1);
  EXPECT_EQ(p.token, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(p.routed, (std::vector<int64_t>{8, 0}));
}

TEST(MoeRouting, FirstChoicesWinCapacityOverSecondChoices) {
  MoeConfig m = moe_config(2, 2);
  m.capacity_factor = 0.5;  // ceil(0.5 * 2 * 2 / 2) = 1 row per expert
  // token 0 -> (1, 0); token 1 -> (0, 1): both first choices fit, both second choices are dropped.
  const DispatchPlan p = plan_dispatch(idx_tensor({1, 0, 0, 1}, 2), m, nullptr);
  EXPECT_EQ(p.dropped, 2);
  EXPECT_EQ(p.slot, (std::vector<int64_t>{2, 0}));
}

TEST(MoeRouting, TiesGoToTheLowerExpertId) {
  Tensor logits = Tensor::zeros({2, 5}, DType::f64);  // all scores equal
  logits.data<double>()[5 + 3] = 1.0;                // token 1: expert 3 first, then the tie 0 < 1 < 2 < 4
  Tensor s = Tensor::zeros({2, 5}, DType::f64), g = Tensor::zeros({2, 2}, DType::f64),
         lse = Tensor::zeros({2}, DType::f64), idx = Tensor::zeros({2, 2}, DType::i32);
  for (const bool sigmoid : {false, true}) {
    ops::moe_route_forward(s, idx, g, lse, logits, 2, sigmoid, true);
    EXPECT_EQ(idx.to_vector(), (std::vector<double>{0, 1, 3, 0})) << (sigmoid ? "sigmoid" : "softmax");
    EXPECT_DOUBLE_EQ(g.data<double>()[0], 0.5);
  }
}

// Every token routed to one expert: the layer equals that expert's SwiGLU (gate 1 after renormalisation with
// top-1), and the experts with no tokens get zero gradient. So does the router: a renormalised top-1 gate is
// 1 whatever the scores, and the router losses are off (weights.moe = 0).
TEST(MoeForward, OneExpertTakesEveryToken) {
  Rng rng(14);
  MoeConfig m = moe_config(4, 1);
  Built b(m, 1, 6);
  test::randomise(b.ps, rng, 0.5);
  Tensor x = random_tensor({6, 12}, rng);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = std::abs(x.data<double>()[i]) + 0.1;
  std::vector<double> w(size_t(b.ps[0]->value.numel()), 0.0);
  for (int64_t q = 0; q < 12; ++q) w[size_t(2 * 12 + q)] = 1.0;  // expert 2's logit = sum(x) > 0, others 0
  b.ps[0]->value.from_vector(w);
  const std::vector<double> out = b.layer.forward(x).to_vector();
  EXPECT_EQ(b.layer.moe_stats().routed, (std::vector<double>{0, 0, 6, 0}));
  std::vector<double> gates(6, 1.0), idx(6, 2.0);
  std::vector<char> kept(6, 1);
  const std::vector<double> ref = reference_moe(x, b.ps, 1, gates, idx, kept);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-12);
  for (Param* p : b.ps) p->grad.zero_();
  Tensor dx = Tensor::zeros({6, 12}, DType::f64);
  Tensor dout = random_tensor({6, 12}, rng);
  b.layer.backward(dx, dout, x);
  for (Param* p : b.ps) {
    if ((p->expert >= 0 && p->expert != 2) || p->name == "ffn.router") {
      EXPECT_EQ(ops::sum_squares(p->grad), 0.0) << p->name;
    } else {
      EXPECT_GT(ops::sum_squares(p->grad), 0.0) << p->name;
    }
  }
}

// A whole MoE model (layer 0 dense, layer 1 MoE) against finite differences, LM loss plus router losses.
TEST(MoeGradcheck, ModelWithDenseAndMoeLayers) {
  Rng rng(15);
  ModelConfig cfg = test::small_model_config(11, 6);
  cfg.ffn = "moe";
  MoeConfig m = moe_config(4, 2);
  m.dense_layers = "0";
  m.shared_experts = 1;
  Transformer model(cfg, AttentionConfig{}, m, DType::f64, Device::cpu, 2, 6);
  model.init_weights(rng);
  test::randomise(model.params(), rng, 0.3);
  Tensor tokens = Tensor::empty({2, 6}, DType::i32), targets = Tensor::empty({2, 6}, DType::i32);
  for (int64_t i = 0; i < 12; ++i) {
    tokens.data<int32_t>()[i] = int32_t(rng.next_u64() % 11);
    targets.data<int32_t>()[i] = int32_t(rng.next_u64() % 11);
  }
  const double w = 1.0 / 12.0;
  const LossWeights weights{w, 0.0, w};
  auto loss = [&] { return model.forward(tokens, targets, weights).objective; };
  model.zero_grads();
  const ForwardStats st = model.forward(tokens, targets, weights);
  ASSERT_EQ(st.moe.size(), 1u);
  EXPECT_GT(st.objective, w * st.lm_loss_sum);
  model.backward();
  bool saw_expert = false, saw_router = false;
  for (Param* p : model.params()) {
    saw_expert = saw_expert || p->expert >= 0;
    saw_router = saw_router || p->name == "layers.1.ffn.router";
    expect_gradient("model " + p->name, p->value, p->grad, loss);
  }
  EXPECT_TRUE(saw_expert && saw_router);
  EXPECT_EQ(model.params()[0]->name, "embed.weight");
}

using test::OneRankComm;

// The exchange path over a one-rank communicator gives what the local path (no communicator) gives.
TEST(MoeForward, OneRankCommunicatorMatchesTheLocalPath) {
  Rng rng(16);
  MoeConfig m = moe_config(4, 2);
  OneRankComm comm;
  Built local(m, 2, 5), exchanged(m, 2, 5);
  exchanged.ctx.ep_comm = &comm;
  MoEFFN layer("ffn", exchanged.ctx);
  ParamList ps;
  layer.collect(ps);
  test::randomise(local.ps, rng, 0.5);
  ASSERT_EQ(ps.size(), local.ps.size());
  for (size_t i = 0; i < ps.size(); ++i) ps[i]->value.copy_from(local.ps[i]->value);
  Tensor x = random_tensor({10, 12}, rng), dout = random_tensor({10, 12}, rng);
  EXPECT_EQ(layer.forward(x).to_vector(), local.layer.forward(x).to_vector());
  Tensor dx1 = Tensor::zeros({10, 12}, DType::f64), dx2 = Tensor::zeros({10, 12}, DType::f64);
  layer.backward(dx1, dout, x);
  local.layer.backward(dx2, dout, x);
  EXPECT_EQ(dx1.to_vector(), dx2.to_vector());
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(ps[i]->grad.to_vector(), local.ps[i]->grad.to_vector()) << ps[i]->name;
}

// Expert weights are drawn from a stream per name: the same whichever experts a model holds.
TEST(MoeInit, ExpertWeightsDoNotDependOnTheOtherParameters) {
  ModelConfig cfg = test::small_model_config(11, 4);
  cfg.ffn = "moe";
  MoeConfig m = moe_config(4, 2);
  Transformer a(cfg, AttentionConfig{}, m, DType::f64, Device::cpu, 1, 4);
  m.shared_experts = 2;  // an extra parameter before the experts
  Transformer b(cfg, AttentionConfig{}, m, DType::f64, Device::cpu, 1, 4);
  Rng ra(5), rb(5);
  a.init_weights(ra);
  b.init_weights(rb);
  std::map<std::string, std::vector<double>> va;
  for (Param* p : a.params()) va[p->name] = p->value.to_vector();
  int experts = 0;
  for (Param* p : b.params())
    if (p->expert >= 0) {
      EXPECT_EQ(va.at(p->name), p->value.to_vector()) << p->name;
      ++experts;
    }
  EXPECT_EQ(experts, 2 * 4 * 2);
}

}  // namespace
}  // namespace msa
