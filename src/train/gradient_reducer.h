// Sums every gradient over the ranks that share its parameter once the last micro-batch's backward is done:
// experts over the expert-data-parallel group, everything else over the world (with NCCL: each over its own
// communicator).
//
// On GPUs with one GPU per rank the sums go through NCCL on their own stream and start while the backward pass
// goes on: ready() is called with each block's parameters as soon as the backward is past that block. Elsewhere
// (CPU, or ranks sharing one GPU, where NCCL refuses) they go through MPI (host-staged for device tensors) in
// finish().
#pragma once
#include <memory>
#include <unordered_set>

#include "comm/comm.h"
#include "model/param.h"

namespace msa {

class GradientReducer {
 public:
  // use_nccl: the world's ranks each own a GPU and the gradients live there.
  GradientReducer(const ParamList& params, Comm& world, Comm& ep_dp, bool use_nccl);
  ~GradientReducer();
  bool uses_nccl() const { return nccl_ != nullptr; }
  // These gradients are final for this step: start their sums now when that overlaps (NCCL); else a no-op.
  void ready(const ParamList& done);
  // Every gradient summed (those not started yet now); on the GPU the compute stream then waits for the sums.
  void finish();

 private:
  struct Nccl;
  ParamList params_;
  Comm& world_;
  Comm& ep_dp_;
  std::unique_ptr<Nccl> nccl_;        // over the world
  std::unique_ptr<Nccl> ep_dp_nccl_;  // over ep_dp, when that is neither the world nor one rank
  std::unordered_set<const Param*> started_;  // sums already queued this step
};

// True when this process can use NCCL for device gradients: more than one rank, every rank of this node on its
// own GPU (the launcher says how many ranks the node runs), and MSATRAIN_NCCL is not "0". The trainer takes NCCL
// only when every rank says so (an allreduce), so that all ranks take the same path.
bool nccl_usable(int world_size);

}  // namespace msa
