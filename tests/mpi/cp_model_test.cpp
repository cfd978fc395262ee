// Context parallel, model level, in double precision under mpirun (tests/mpi/test_cp_model.sh): a Transformer whose
// sequences are split over every rank of the job must give the same objective, KL statistics and (summed over
// the ranks) parameter gradients as one unsplit Transformer on the same tokens — dense GQA, MSA in warmup and in
// the sparse phase (with sink blocks and mean pooling too) — and a rank whose tokens carry no loss must not
// produce NaN.
#include <gtest/gtest.h>

#include <cmath>

#include "../unit/gradcheck.h"
#include "comm/comm.h"
#include "model/context_parallel.h"
#include "model/transformer.h"
#include "ops/ops.h"

namespace msa {
namespace {

Comm* g_world = nullptr;  // the job's world communicator, set by main() (a test binary, not the trainer)

struct Case {
  const char* name;
  bool msa;
  MsaPhase phase;
  int64_t sink_blocks;
  bool mean_pool;
  bool rank1_without_loss;  // every target on rank 1's tokens is ignored
};

struct Result {
  ForwardStats stats;
  std::vector<std::vector<double>> grads;
};

constexpr int64_t kBatch = 2, kVocab = 13, kBlock = 2;

AttentionConfig attention_for(const Case& c) {
  AttentionConfig a;
  a.type = c.msa ? "msa" : "gqa";
  a.block_size = kBlock;
  a.topk_blocks = 3;
  a.index_head_dim = 6;
  a.sink_blocks = c.sink_blocks;
  a.score_pool = c.mean_pool ? "mean" : "max";
  a.dense_layers = "0";  // one dense and one MSA layer
  return a;
}

// One forward and backward; with cp, on this rank's tokens, and the results summed over the ranks.
Result run(const Case& c, int64_t seq, ContextParallel* cp, const Tensor& tokens, const Tensor& targets) {
  Transformer model(test::small_model_config(kVocab, seq), attention_for(c), DType::f64, Device::cpu, kBatch, seq,
                    cp);
  Rng rng(21);
  model.init_weights(rng);
  test::randomise(model.params(), rng, 0.3);
  model.set_msa_phase(c.phase);
  model.set_measure_recall(true);
  const std::vector<int32_t> pos = cp ? cp->local_positions() : cp_local_positions(seq, 1, 0);
  const int64_t t = int64_t(pos.size());
  Tensor tk = Tensor::empty({kBatch, t}, DType::i32), tg = Tensor::empty({kBatch, t}, DType::i32);
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t i = 0; i < t; ++i) {
      tk.data<int32_t>()[b * t + i] = tokens.data<int32_t>()[b * seq + pos[size_t(i)]];
      tg.data<int32_t>()[b * t + i] = targets.data<int32_t>()[b * seq + pos[size_t(i)]];
    }
  const double w = 1.0 / double(kBatch * seq);
  model.zero_grads();
  Result r{model.forward(tk, tg, LossWeights{w, w}), {}};
  model.backward();
  for (Param* p : model.params()) {
    EXPECT_TRUE(ops::all_finite(p->grad)) << p->name << " on rank " << g_world->rank();
    if (cp) g_world->allreduce_sum(p->grad);
    r.grads.push_back(p->grad.to_vector());
  }
  if (cp) {
    double sums[6] = {r.stats.objective, r.stats.lm_loss_sum, r.stats.msa.kl_sum, r.stats.msa.recall_sum,
                      r.stats.msa.selected_share_sum, double(r.stats.msa.rows)};
    g_world->allreduce_sum(sums, 6);
    r.stats.objective = sums[0], r.stats.lm_loss_sum = sums[1], r.stats.msa.kl_sum = sums[2];
    r.stats.msa.recall_sum = sums[3], r.stats.msa.selected_share_sum = sums[4], r.stats.msa.rows = int64_t(sums[5]);
  }
  return r;
}

void expect_close(double a, double b, const char* what) {
  EXPECT_LE(std::abs(a - b), 1e-11 * std::max(1.0, std::abs(b))) << what << ": cp " << a << " vs one rank " << b;
}

class CpModel : public ::testing::TestWithParam<Case> {};

TEST_P(CpModel, MatchesOneUnsplitModel) {
  const Case& c = GetParam();
  const int ranks = g_world->size();
  const int64_t seq = 2 * ranks * 2 * kBlock;  // chunks of two MSA blocks
  Rng rng(5);
  Tensor tokens = Tensor::empty({kBatch, seq}, DType::i32), targets = Tensor::empty({kBatch, seq}, DType::i32);
  for (int64_t i = 0; i < kBatch * seq; ++i) {
    tokens.data<int32_t>()[i] = int32_t(rng.next_u64() % kVocab);
    targets.data<int32_t>()[i] = int32_t(rng.next_u64() % kVocab);
  }
  if (c.rank1_without_loss && ranks > 1)
    for (int32_t p : cp_local_positions(seq, ranks, 1))
      for (int64_t b = 0; b < kBatch; ++b) targets.data<int32_t>()[b * seq + p] = -1;

  const Result one = run(c, seq, nullptr, tokens, targets);
  ContextParallel cp(*g_world, seq);
  const Result split = run(c, seq, &cp, tokens, targets);

  ASSERT_TRUE(std::isfinite(split.stats.objective));
  expect_close(split.stats.objective, one.stats.objective, "objective");
  expect_close(split.stats.lm_loss_sum, one.stats.lm_loss_sum, "lm loss");
  expect_close(split.stats.msa.kl_sum, one.stats.msa.kl_sum, "kl sum");
  expect_close(split.stats.msa.recall_sum, one.stats.msa.recall_sum, "recall sum");
  expect_close(split.stats.msa.selected_share_sum, one.stats.msa.selected_share_sum, "selected share sum");
  EXPECT_EQ(split.stats.msa.rows, one.stats.msa.rows);
  ASSERT_EQ(split.grads.size(), one.grads.size());
  for (size_t p = 0; p < one.grads.size(); ++p) {
    double scale = 0, diff = 0;
    for (size_t i = 0; i < one.grads[p].size(); ++i) {
      scale = std::max(scale, std::abs(one.grads[p][i]));
      diff = std::max(diff, std::abs(split.grads[p][i] - one.grads[p][i]));
    }
    EXPECT_LE(diff, 1e-10 * std::max(scale, 1e-30)) << "parameter " << p << " (max |grad| " << scale << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, CpModel,
    ::testing::Values(Case{"dense", false, MsaPhase::sparse, 0, false, false},
                      Case{"msa_warmup", true, MsaPhase::warmup, 0, false, false},
                      Case{"msa_sparse", true, MsaPhase::sparse, 0, false, false},
                      Case{"msa_sparse_sink_mean", true, MsaPhase::sparse, 1, true, false},
                      Case{"dense_rank1_without_loss", false, MsaPhase::sparse, 0, false, true},
                      Case{"msa_sparse_rank1_without_loss", true, MsaPhase::sparse, 0, false, true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace msa

int main(int argc, char** argv) {
  msa::MpiSession mpi(&argc, &argv);
  auto world = msa::make_mpi_world();
  msa::g_world = world.get();
  ::testing::InitGoogleTest(&argc, argv);
  if (world->rank() != 0) {  // one report: the other ranks print only their failures
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // Every rank's verdict counts: a failure on any rank fails the job.
  const double any = world->allreduce_max(double(failed));
  return any != 0 ? 1 : 0;
}
