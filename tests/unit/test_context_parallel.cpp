// Context parallel on one process: the zigzag chunk/position mapping, the loader's chunks, and the gather /
// scatter pair over a one-rank group (the multi-rank numerics are tests/mpi/test_cp_*.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "data/loader.h"
#include "data/shard.h"
#include "data_test_util.h"
#include "model/context_parallel.h"
#include "tests/unit/one_rank_comm.h"

namespace msa {
namespace {

using OneRank = test::OneRankComm;

TEST(ContextParallelLayout, ZigzagChunks) {
  // T = 16, cp = 4: chunks of 2; rank c holds chunks c and 7 - c.
  EXPECT_EQ(cp_local_positions(16, 4, 0), (std::vector<int32_t>{0, 1, 14, 15}));
  EXPECT_EQ(cp_local_positions(16, 4, 1), (std::vector<int32_t>{2, 3, 12, 13}));
  EXPECT_EQ(cp_local_positions(16, 4, 2), (std::vector<int32_t>{4, 5, 10, 11}));
  EXPECT_EQ(cp_local_positions(16, 4, 3), (std::vector<int32_t>{6, 7, 8, 9}));
  std::vector<int32_t> whole(16);
  std::iota(whole.begin(), whole.end(), 0);
  EXPECT_EQ(cp_local_positions(16, 1, 0), whole);
}

TEST(ContextParallelLayout, EveryPositionOnceAndCausalWorkBalanced) {
  for (const int cp : {1, 2, 3, 4, 8, 64}) {
    const int64_t t = 2 * cp * 5;
    std::vector<int> seen(size_t(t), 0);
    std::vector<int64_t> work;  // causal (query, key) pairs per rank: sum of (pos + 1)
    for (int r = 0; r < cp; ++r) {
      const auto pos = cp_local_positions(t, cp, r);
      ASSERT_EQ(int64_t(pos.size()), t / cp);
      int64_t w = 0;
      for (int32_t p : pos) ++seen[size_t(p)], w += p + 1;
      work.push_back(w);
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; })) << "cp " << cp;
    EXPECT_TRUE(std::all_of(work.begin(), work.end(), [&](int64_t w) { return w == work[0]; })) << "cp " << cp;
  }
}

TEST(ContextParallelLayout, OneRankGatherAndScatterAreTheIdentity) {
  OneRank comm;
  ContextParallel cp(comm, 8);
  ASSERT_EQ(cp.local_len(), 8);
  Tensor local = Tensor::zeros({2, 8, 3}, DType::f64), full = Tensor::zeros({2, 8, 3}, DType::f64);
  std::vector<double> v(48);
  std::iota(v.begin(), v.end(), 1.0);
  local.from_vector(v);
  cp.gather_keys(full, local);
  EXPECT_EQ(full.to_vector(), v);
  Tensor back = Tensor::zeros({2, 8, 3}, DType::f64);
  cp.scatter_key_grads(back, full);
  EXPECT_EQ(back.to_vector(), v);
}

// A group member that only knows its place (the layout needs no collective).
class PlaceOnlyComm final : public Comm {
 public:
  PlaceOnlyComm(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(Tensor&) override { unused(); }
  void allreduce_sum(double*, int64_t) override { unused(); }
  double allreduce_max(double) override { unused(); }
  int64_t allreduce_min(int64_t) override { unused(); }
  void broadcast(void*, int64_t, int) override { unused(); }
  void barrier() override { unused(); }
  std::unique_ptr<Comm> split(int, int) override { unused(); }
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  [[noreturn]] static void unused() { throw Error("PlaceOnlyComm: no collectives in this test"); }
  int rank_, size_;
};

// The NCCL path's row map: the all-gather leaves rank r's local row (b, i) at rank-major row (r B + b) 2L + i,
// which belongs at full row b T + pos_r[i]; over the group that is every full row exactly once.
TEST(ContextParallelLayout, GatheredRowMapCoversTheSequenceOnce) {
  PlaceOnlyComm comm(1, 2);
  ContextParallel cp(comm, 8);  // chunks of 2: rank 0 holds 0 1 6 7, rank 1 holds 2 3 4 5
  EXPECT_EQ(cp.full_row_of_gathered(1), (std::vector<int32_t>{0, 1, 6, 7, 2, 3, 4, 5}));
  EXPECT_EQ(cp.full_row_of_gathered(2),
            (std::vector<int32_t>{0, 1, 6, 7, 8, 9, 14, 15, 2, 3, 4, 5, 10, 11, 12, 13}));
  PlaceOnlyComm four(3, 4);
  ContextParallel cp4(four, 64);
  std::vector<int32_t> rows = cp4.full_row_of_gathered(3);
  std::sort(rows.begin(), rows.end());
  std::vector<int32_t> all(3 * 64);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(rows, all);
}

// Each cp rank's loader gives exactly its positions' tokens and targets of the windows the whole sequence has.
TEST(ContextParallelLayout, LoaderHandsEachRankItsChunks) {
  testing_data::TempDir dir;
  std::vector<uint32_t> ids(200);
  std::iota(ids.begin(), ids.end(), 3u);
  write_shard(dir / "train_000.bin", ids, 256);
  write_shard(dir / "val_000.bin", ids, 256);
  testing_data::write_text(dir / "meta.yaml",
                           "format_version: 1\ntokenizer: bytes\nvocab_size: 256\nsplits:\n  train:\n    documents: 1\n"
                           "    tokens: 200\n    shards: [train_000.bin]\n  val:\n    documents: 1\n    tokens: 200\n"
                           "    shards: [val_000.bin]\n");
  const TokenDataset train(dir.str(), "train"), val(dir.str(), "val");
  const int64_t seq = 16, batch = 3, cp = 4;
  const WindowSampler sampler(train, seq, 99);
  const ValidationWindows windows(val, seq, 4);  // 4 windows: the last batch row of the second load pads
  for (const int64_t first : {0, 2}) {
    Tensor tokens = Tensor::empty({batch, seq}, DType::i32), targets = Tensor::empty({batch, seq}, DType::i32);
    Tensor vtok = Tensor::empty({batch, seq}, DType::i32), vtgt = Tensor::empty({batch, seq}, DType::i32);
    sampler.load(first, tokens, targets);
    windows.load(first, vtok, vtgt);
    for (int r = 0; r < cp; ++r) {
      const auto pos = cp_local_positions(seq, int(cp), r);
      const int64_t t = int64_t(pos.size());
      Tensor lt = Tensor::empty({batch, t}, DType::i32), lg = Tensor::empty({batch, t}, DType::i32);
      Tensor vt = Tensor::empty({batch, t}, DType::i32), vg = Tensor::empty({batch, t}, DType::i32);
      sampler.load(first, lt, lg, pos);
      windows.load(first, vt, vg, pos);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < t; ++i) {
          const int64_t full = b * seq + pos[size_t(i)], local = b * t + i;
          EXPECT_EQ(lt.data<int32_t>()[local], tokens.data<int32_t>()[full]) << r << " " << b << " " << i;
          EXPECT_EQ(lg.data<int32_t>()[local], targets.data<int32_t>()[full]);
          EXPECT_EQ(vt.data<int32_t>()[local], vtok.data<int32_t>()[full]);
          EXPECT_EQ(vg.data<int32_t>()[local], vtgt.data<int32_t>()[full]);
        }
    }
  }
}

}  // namespace
}  // namespace msa
