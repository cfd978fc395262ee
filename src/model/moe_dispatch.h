// Expert-parallel token dispatch (docs/moe.md). From the router's choices on this rank's N tokens, a plan:
//
//   source side   the kept (token, slot) assignments in send order: by global expert id, then token, then slot.
//                 Experts e*El .. e*El+El-1 live on ep rank e (El = n_experts / ep), so this order is also
//                 grouped by destination rank. Capacity drops are decided here, on the source rank, from its
//                 own tokens only, so the routing does not depend on the layout.
//   expert side   the rows received from every rank of the ep group (rank by rank, each grouped by local
//                 expert), and the expert-major order in which the grouped GEMM runs them.
//
// The per-(rank, local expert) row counts go first (alltoall), then the rows (alltoallv); results return along
// the same path with the counts swapped.
#pragma once
#include <memory>
#include <vector>

#include "comm/comm.h"
#include "config/config.h"
#include "core/tensor.h"

namespace msa {

struct DispatchPlan {
  // Source side.
  std::vector<int64_t> token;        // (A) token row of each kept assignment, in send order
  std::vector<int64_t> slot;         // (A) its entry t * k + j of the router's (N, k) gates
  std::vector<int64_t> send_counts;  // (ep) rows sent to each rank of the ep group
  std::vector<int64_t> routed;       // (E) assignments per global expert before the capacity drop
  int64_t dropped = 0;               // assignments over capacity
  // Expert side.
  std::vector<int64_t> recv_counts;   // (ep) rows received from each rank
  std::vector<int64_t> expert_order;  // (R) received row of each expert-major row
  std::vector<int64_t> offsets;       // (El + 1) expert-major row range of each local expert
};

// Per-expert capacity for n tokens: ceil(capacity_factor * n * top_k / n_experts); -1 = dropless.
int64_t expert_capacity(const MoeConfig& cfg, int64_t tokens);

// idx (N, k) int32 router choices (host). comm: the ep group (nullptr = one rank holding every expert).
// Collective over comm (exchanges the counts).
DispatchPlan plan_dispatch(const Tensor& idx, const MoeConfig& cfg, Comm* comm);

// Moves rows between the ranks of the ep group. Host rows go through MPI. Device rows go through NCCL grouped
// send/recv once use_nccl() was called (every rank of the job on its own GPU: the trainer decides, as for the
// gradients), else they are staged through host memory (device -> host, MPI alltoallv, host -> device), which is
// what ranks sharing one GPU need. On one rank (comm nullptr or of size 1) it is a copy.
class RowExchange {
 public:
  explicit RowExchange(Comm* comm);
  ~RowExchange();
  RowExchange(const RowExchange&) = delete;
  RowExchange& operator=(const RowExchange&) = delete;

  // From now on device rows travel by NCCL over the group. Collective over comm (creates the communicator).
  void use_nccl();
  bool uses_nccl() const { return nccl_ != nullptr; }
  // send holds send_counts[p] rows (of send.dim(-1) values) for rank p, rank by rank; recv (sum recv_counts,
  // cols) gets them rank by rank. Collective over comm.
  void exchange(const Tensor& send, const std::vector<int64_t>& send_counts, Tensor& recv,
                const std::vector<int64_t>& recv_counts);

 private:
  struct Nccl;
  Comm* comm_;
  std::unique_ptr<Nccl> nccl_;
  Tensor host_send_, host_recv_;  // staging for device rows without NCCL, grown to the largest exchange
};

}  // namespace msa
