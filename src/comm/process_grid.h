// The parallel layout of a job: world = dp x cp ranks, and expert parallelism over ep ranks.
//
// Rank order (world rank r):  r = dp_index * cp + cp_index  — the cp ranks of one sequence are neighbours.
// Expert parallel: the ep group of rank r is the ep consecutive world ranks {g*ep, ..., g*ep + ep-1} with
// g = r / ep; its position in that group, r % ep, says which slice of the experts it holds. The ranks that hold
// the same experts (same r % ep) form the expert-data-parallel group, over which expert gradients are reduced.
//
//   dp       ranks with the same cp_index: non-expert gradients are summed over dp x cp (= world)
//   cp       ranks that share one sequence (all-gather K/V, reduce-scatter dK/dV)
//   ep       ranks that exchange routed tokens (all-to-all-v)
//   ep_dp    ranks that hold the same experts (expert gradients are summed over it)
#pragma once
#include <memory>

#include "comm/comm.h"

namespace msa {

class ProcessGrid {
 public:
  // Throws UserError when dp * cp != world size or ep does not divide it (validate_layout says it first).
  ProcessGrid(Comm& world, int dp, int cp, int ep);

  Comm& world() { return world_; }
  Comm& dp() { return *dp_; }
  Comm& cp() { return *cp_; }
  Comm& ep() { return *ep_; }
  Comm& ep_dp() { return *ep_dp_; }
  int dp_index() const { return world_.rank() / cp_size_; }
  int cp_index() const { return world_.rank() % cp_size_; }
  int ep_index() const { return world_.rank() % ep_size_; }
  int dp_size() const { return dp_size_; }
  int cp_size() const { return cp_size_; }
  int ep_size() const { return ep_size_; }

 private:
  Comm& world_;
  int dp_size_, cp_size_, ep_size_;
  std::unique_ptr<Comm> dp_, cp_, ep_, ep_dp_;
};

}  // namespace msa
