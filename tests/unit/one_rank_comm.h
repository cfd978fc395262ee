// A one-rank Comm for unit tests: every collective is the identity; alltoall(v), allgather and reduce_scatter
// use Comm's one-rank defaults.
#pragma once
#include <cstdlib>
#include <memory>

#include "comm/comm.h"

namespace msa::test {

class OneRankComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(Tensor&) override {}
  void allreduce_sum(double*, int64_t) override {}
  double allreduce_max(double v) override { return v; }
  int64_t allreduce_min(int64_t v) override { return v; }
  void broadcast(void*, int64_t, int) override {}
  void barrier() override {}
  std::unique_ptr<Comm> split(int, int) override { return std::make_unique<OneRankComm>(); }
  [[noreturn]] void abort(int) override { std::abort(); }
};

}  // namespace msa::test
