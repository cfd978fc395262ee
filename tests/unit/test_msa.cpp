// MSA (spec/msa.md): selection rule, exactness against dense attention, gradient checks of the Main Branch over
// the selected support and of the KL loss w.r.t. the Index Branch, and the detach rules.
#include <gtest/gtest.h>

#include "gradcheck.h"
#include "model/attention_gqa.h"
#include "model/attention_msa.h"
#include "model/transformer.h"
#include "ops/ops.h"

namespace msa {
namespace {

using test::expect_gradient;
using test::random_tensor;
using test::randomise;
using test::weighted_sum;

// ---- Selection on hand-built scores -------------------------------------------------------------------------
// With dI = 2 and qI = (sqrt(2), 0), the token score s = tau <qI, kI> is exactly kI[j][0].
struct SelectCase {
  std::vector<double> key_scores;  // one per key token
  int64_t block_size, topk, sink_blocks = 0;
  bool force_local = true, mean_pool = false;
};

std::vector<int32_t> select_for_query(const SelectCase& c, int64_t query) {
  const int64_t t = int64_t(c.key_scores.size());
  Tensor qi = Tensor::zeros({1, t, 1, 2}, DType::f64), ki = Tensor::zeros({1, t, 2}, DType::f64);
  Tensor pos = Tensor::empty({t}, DType::i32);
  for (int64_t j = 0; j < t; ++j) {
    qi.data<double>()[j * 2] = std::sqrt(2.0);
    ki.data<double>()[j * 2] = c.key_scores[j];
    pos.data<int32_t>()[j] = int32_t(j);
  }
  Tensor sel = Tensor::zeros({1, 1, t, c.topk}, DType::i32);
  ops::msa_select(sel, qi, ki, pos, pos, {c.block_size, c.topk, c.sink_blocks, c.force_local, c.mean_pool});
  const int32_t* row = sel.data<int32_t>() + query * c.topk;
  return std::vector<int32_t>(row, row + c.topk);
}

using Ids = std::vector<int32_t>;

TEST(MsaSelect, TopScoresThenLocalBlockLast) {
  // blocks of 2: block maxima 0:1, 1:5, 2:3, 3:4, 4 (local of query 9):-9
  SelectCase c{{1, 0, 5, 0, 3, 2, 4, 0, -9, -9}, 2, 3};
  EXPECT_EQ(select_for_query(c, 9), (Ids{1, 3, 4}));
}

TEST(MsaSelect, TiesGoToTheLowerBlockId) {
  SelectCase c{{2, 2, 7, 7, 7, 7, 0, 0}, 2, 3};  // blocks 1 and 2 tie at 7; block 0 at 2
  EXPECT_EQ(select_for_query(c, 7), (Ids{1, 2, 3}));
  SelectCase d{{7, 0, 7, 0, 7, 0, 0, 0}, 2, 2};  // blocks 0, 1, 2 tie: block 0 wins the one free slot
  EXPECT_EQ(select_for_query(d, 7), (Ids{0, 3}));
}

TEST(MsaSelect, SinkBlocksComeFirstAndCountTowardsK) {
  SelectCase c{{-5, -5, 1, 0, 9, 0, 3, 0, 0, 0}, 2, 3, /*sinks*/ 1};
  EXPECT_EQ(select_for_query(c, 9), (Ids{0, 2, 4}));  // sink 0, best other (2: 9), local 4
}

TEST(MsaSelect, PaddingWhenFewerBlocksAreVisible) {
  SelectCase c{{1, 2, 3, 4, 5, 6}, 2, 4};
  EXPECT_EQ(select_for_query(c, 3), (Ids{0, 1, -1, -1}));
  EXPECT_EQ(select_for_query(c, 5), (Ids{1, 0, 2, -1}));  // picks by descending score, local last
}

TEST(MsaSelect, QueriesInTheFirstBlockSeeOnlyIt) {
  SelectCase c{{1, 2, 3, 4}, 2, 2};
  EXPECT_EQ(select_for_query(c, 0), (Ids{0, -1}));
  EXPECT_EQ(select_for_query(c, 1), (Ids{0, -1}));
}

TEST(MsaSelect, FutureTokensOfTheLocalBlockDoNotScore) {
  // force_local off: the local block (2) competes on its visible token only (-1), not its future one (100).
  SelectCase c{{0, 0, 3, 0, -1, 100}, 2, 2, 0, /*force_local*/ false};
  EXPECT_EQ(select_for_query(c, 4), (Ids{1, 0}));
}

TEST(MsaSelect, MeanPooling) {
  // block 0 max 10 mean 5; block 1 max 6 mean 6; one free slot
  SelectCase c{{10, 0, 6, 6, 0, 0}, 2, 2, 0, true, /*mean*/ true};
  EXPECT_EQ(select_for_query(c, 5), (Ids{1, 2}));
  c.mean_pool = false;
  EXPECT_EQ(select_for_query(c, 5), (Ids{0, 2}));
}

// ---- Layers -------------------------------------------------------------------------------------------------
ModelConfig msa_model() { return test::small_model_config(13, 16); }

AttentionConfig msa_attention(int64_t block, int64_t topk) {
  AttentionConfig a;
  a.type = "msa";
  a.block_size = block;
  a.topk_blocks = topk;
  a.index_head_dim = 6;
  a.dense_layers = "none";
  return a;
}

TEST(MsaLayer, EqualsDenseAttentionWhenAllBlocksFit) {
  // T = 16 <= k * B = 4 * 4: every visible block is selected, so MSA is dense causal attention (spec §2).
  Rng rng(11);
  LayerContext ctx(msa_model(), msa_attention(4, 4), DType::f64, Device::cpu, 2, 16);
  ctx.weights = {1.0, 0.0};
  AttentionMSA msa("attn", ctx);
  AttentionGQA dense("attn", ctx);
  ParamList pm, pd;
  msa.collect(pm);
  dense.collect(pd);
  randomise(pm, rng, 0.4);
  for (size_t i = 0; i < pd.size(); ++i) pd[i]->value.copy_from(pm[i]->value);  // main-branch params come first
  Tensor x = random_tensor({32, 12}, rng), r = random_tensor({32, 12}, rng);
  const std::vector<double> a = msa.forward(x).to_vector(), b = dense.forward(x).to_vector();
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-12) << i;
  Tensor dxa = Tensor::zeros({32, 12}, DType::f64), dxb = Tensor::zeros({32, 12}, DType::f64);
  msa.backward(dxa, r, x);
  dense.backward(dxb, r, x);
  const auto ga = dxa.to_vector(), gb = dxb.to_vector();
  for (size_t i = 0; i < ga.size(); ++i) ASSERT_NEAR(ga[i], gb[i], 1e-12) << i;
  for (size_t p = 0; p < pd.size(); ++p) {
    const auto u = pm[p]->grad.to_vector(), v = pd[p]->grad.to_vector();
    for (size_t i = 0; i < u.size(); ++i) ASSERT_NEAR(u[i], v[i], 1e-12) << pd[p]->name;
  }
}

TEST(MsaLayer, SparseSupportIsRealBeyondKBlocks) {
  Rng rng(12);
  LayerContext ctx(msa_model(), msa_attention(2, 2), DType::f64, Device::cpu, 1, 16);
  ctx.weights = {1.0, 1.0};
  AttentionMSA msa("attn", ctx);
  ParamList ps;
  msa.collect(ps);
  randomise(ps, rng, 0.4);
  Tensor x = random_tensor({16, 12}, rng);
  msa.forward(x);
  const MsaLayerStats st = msa.msa_stats();
  EXPECT_EQ(st.rows, 16 * 2);
  EXPECT_LT(st.selected_share_sum / double(st.rows), 0.9);  // the late queries see 4 of up to 16 keys
  EXPECT_GT(st.kl_sum, 0.0);
}

// Main Branch over the selected support: LM-side gradients (weights.kl = 0) of x and the backbone parameters.
TEST(MsaGradcheck, MainBranchOverSelectedBlocks) {
  Rng rng(13);
  LayerContext ctx(msa_model(), msa_attention(2, 3), DType::f64, Device::cpu, 2, 12);
  ctx.weights = {1.0, 0.0};
  AttentionMSA msa("attn", ctx);
  ParamList ps;
  msa.collect(ps);
  randomise(ps, rng, 0.4);
  Tensor x = random_tensor({24, 12}, rng), r = random_tensor({24, 12}, rng);
  auto loss = [&] { return weighted_sum(msa.forward(x), r); };
  loss();
  Tensor dx = Tensor::zeros({24, 12}, DType::f64);
  msa.backward(dx, r, x);
  expect_gradient("msa dx", x, dx, loss);
  for (Param* p : ps)
    if (p->group == ParamGroup::backbone) expect_gradient("msa " + p->name, p->value, p->grad, loss);
  for (Param* p : ps)
    if (p->group == ParamGroup::index) EXPECT_EQ(ops::sum_squares(p->grad), 0.0) << p->name;
}

// KL loss w.r.t. the Index Branch parameters, sparse phase and dense warmup.
void check_kl_gradient(MsaPhase phase, const char* pool) {
  Rng rng(14);
  AttentionConfig a = msa_attention(2, 3);
  a.kl_coef = 0.7;
  a.score_pool = pool;
  LayerContext ctx(msa_model(), a, DType::f64, Device::cpu, 2, 12);
  ctx.phase = phase;
  ctx.weights = {0.0, 1.0 / 24.0};
  AttentionMSA msa("attn", ctx);
  ParamList ps;
  msa.collect(ps);
  randomise(ps, rng, 0.5);
  Tensor x = random_tensor({24, 12}, rng), zero = Tensor::zeros({24, 12}, DType::f64);
  auto loss = [&] {
    msa.forward(x);
    return msa.msa_stats().objective;
  };
  ASSERT_GT(loss(), 0.0);
  Tensor dx = Tensor::zeros({24, 12}, DType::f64);
  msa.backward(dx, zero, x);
  EXPECT_EQ(ops::sum_squares(dx), 0.0) << "detach_index_input: no KL gradient may reach the layer input";
  for (Param* p : ps)
    if (p->group == ParamGroup::index) expect_gradient("kl " + p->name, p->value, p->grad, loss);
}

TEST(MsaGradcheck, KlLossSparsePhase) { check_kl_gradient(MsaPhase::sparse, "max"); }
TEST(MsaGradcheck, KlLossWarmupPhase) { check_kl_gradient(MsaPhase::warmup, "max"); }
TEST(MsaGradcheck, KlLossMeanPooling) { check_kl_gradient(MsaPhase::sparse, "mean"); }

// ---- Detach rules on the whole model ------------------------------------------------------------------------
struct ModelGrads {
  double backbone = 0, index = 0;
};

ModelGrads one_step_grads(double kl_coef, LossWeights w, bool detach) {
  Rng rng(15);
  AttentionConfig a = msa_attention(2, 3);
  a.kl_coef = kl_coef;
  a.detach_index_input = detach;
  a.dense_layers = "0";
  Transformer model(msa_model(), a, DType::f64, Device::cpu, 2, 12);
  model.init_weights(rng);
  ParamList& ps = model.params();
  randomise(ps, rng, 0.3);
  Tensor tokens = Tensor::empty({2, 12}, DType::i32), targets = Tensor::empty({2, 12}, DType::i32);
  for (int64_t i = 0; i < 24; ++i) {
    tokens.data<int32_t>()[i] = int32_t(rng.next_u64() % 13);
    targets.data<int32_t>()[i] = int32_t(rng.next_u64() % 13);
  }
  model.zero_grads();
  model.forward(tokens, targets, w);
  model.backward();
  ModelGrads g;
  for (Param* p : ps) (p->group == ParamGroup::index ? g.index : g.backbone) += ops::sum_squares(p->grad);
  return g;
}

TEST(MsaDetach, KlOnlyReachesOnlyTheIndexBranch) {
  const ModelGrads g = one_step_grads(1.0, {0.0, 1.0 / 24}, true);
  EXPECT_GT(g.index, 0.0);
  EXPECT_EQ(g.backbone, 0.0);
}

TEST(MsaDetach, ZeroKlCoefLeavesTheIndexBranchUntouched) {
  const ModelGrads g = one_step_grads(0.0, {1.0 / 24, 1.0 / 24}, true);
  EXPECT_GT(g.backbone, 0.0);
  EXPECT_EQ(g.index, 0.0);
}

TEST(MsaDetach, WithoutDetachTheKlGradientReachesTheBackbone) {
  const ModelGrads g = one_step_grads(1.0, {0.0, 1.0 / 24}, false);
  EXPECT_GT(g.index, 0.0);
  EXPECT_GT(g.backbone, 0.0);
}

}  // namespace
}  // namespace msa
