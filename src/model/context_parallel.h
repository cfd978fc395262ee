// Context parallel (CP): one sequence split over the cp ranks of grid.cp().
//
// Layout ("zigzag"): the sequence of T tokens is cut into 2*cp chunks of L = T / (2 cp) tokens; cp rank c holds
// chunks c and 2cp-1-c, in that order, so every rank holds 2L tokens and the same causal attention work (one
// early chunk, one late chunk). Everything but attention is per token and runs on the local tokens.
//
// Attention needs every earlier key: each layer gathers K, V (and MSA's index keys kI) from the whole cp group
// into the global position order (gather_keys), attends its local queries to them, and in the backward sums the
// partial key gradients of every rank into the rows of the rank that owns those tokens (scatter_key_grads).
// These are the only communication of a CP layer. Two transports:
// - NCCL (ranks with a GPU each): an all-gather of the local rows into a rank-major buffer, then one permutation
//   kernel into position order; for the gradients a permutation into rank-major fp32, a reduce-scatter (fp32
//   sums, as on the host path) and a conversion. Collectives run on their own stream and the host never waits;
//   begin_gather / finish_gathers let a layer queue its K and V gathers and compute something else meanwhile.
// - Host-staged (CPU tensors, or ranks sharing one GPU, where NCCL cannot run): MPI collectives on host copies;
//   key gradients are summed in fp32.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "comm/comm.h"
#include "core/tensor.h"

namespace msa {

// Global positions (2L) of the tokens cp rank `index` holds, in local order: chunk index, then chunk 2cp-1-index.
std::vector<int32_t> cp_local_positions(int64_t seq_len, int cp, int index);

class ContextParallel {
 public:
  // comm: the cp group (ranks that share one sequence), ordered by cp index. seq_len: the global T.
  // nccl: device tensors travel through NCCL (every rank of the group must own its GPU and pass the same value).
  ContextParallel(Comm& comm, int64_t seq_len, bool nccl = false);
  ~ContextParallel();
  bool uses_nccl() const;
  int size() const { return comm_.size(); }
  int index() const { return comm_.rank(); }
  int64_t seq_len() const { return seq_len_; }
  int64_t local_len() const { return seq_len_ / size(); }         // 2L tokens per rank
  const std::vector<int32_t>& local_positions() const { return local_pos_; }

  // full (B, T, ...) = the whole sequence in global position order, from every rank's local (B, 2L, ...).
  void gather_keys(Tensor& full, const Tensor& local);
  // The same in two halves: begin queues the gather (NCCL; the host path completes it at once), finish_gathers
  // completes every queued one. full and local must stay alive and unchanged in between.
  void begin_gather(Tensor& full, const Tensor& local);
  void finish_gathers();
  // local (B, 2L, ...) = sum over the cp ranks of their full (B, T, ...) rows at this rank's positions
  // (written, not accumulated). full holds each rank's partial key gradients.
  void scatter_key_grads(Tensor& local, const Tensor& full);
  // Wall seconds spent in gather_keys / scatter_key_grads and bytes received from other ranks since the last
  // call; then both restart from 0. Host-staged GPU path: the clock starts after the queued work is done; NCCL:
  // the communication stream's busy time (take_traffic waits for it).
  struct Traffic {
    double seconds = 0;
    int64_t bytes_in = 0;
  };
  Traffic take_traffic();

  // Row maps of the NCCL path, exposed for tests: for row j of the rank-major gathered buffer (cp, B, 2L), the
  // row of the position-ordered full (B, T) it belongs to.
  std::vector<int32_t> full_row_of_gathered(int64_t batch) const;

 private:
  Comm& comm_;
  int64_t seq_len_;
  std::vector<int32_t> local_pos_;
  std::vector<std::vector<int32_t>> rank_pos_;  // [r]: positions rank r holds, for the rank-major staging
  Tensor send_, recv_;  // flat staging buffers in rank-major order, grown on first use
  Tensor host_full_, host_local_, sum32_send_, sum32_recv_;  // device tensors: their host copies (grown once)
  Traffic traffic_;
  struct NcclPath;  // the NCCL path's state (communicator, device staging, row maps); null on the host path
  std::unique_ptr<NcclPath> nccl_;
  void gather_host(Tensor& full, const Tensor& local);
  void scatter_host(Tensor& local, const Tensor& full);
  void check_shapes(const Tensor& full, const Tensor& local, int64_t& batch, int64_t& width) const;
  // NCCL path: device row maps for a micro-batch of `batch` sequences: (full row -> gathered row,
  // gathered row -> full row), as gather_rows wants them.
  std::pair<const int32_t*, const int32_t*> row_maps(int64_t batch);
};

}  // namespace msa
