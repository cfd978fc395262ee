// An NCCL communicator over the ranks of an MPI communicator (MPI only bootstraps it: rank 0 makes the unique
// id and broadcasts it), with its own stream so that its collectives (gradient sums, context parallel's key
// gathers) overlap compute-stream work queued after them. Each rank
// must own a different GPU (NCCL refuses two ranks on one device; the trainer uses the host-staged MPI path then).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace msa::cuda {

class NcclGroup {
 public:
  // broadcast(data, bytes) must broadcast from rank 0 over the same ranks (the MPI communicator's).
  // timed: record the communication stream's busy time per collective (take_busy_seconds).
  NcclGroup(int rank, int size, const std::function<void(void*, int64_t)>& broadcast, bool timed = false);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  // In-place sum of n fp32 values, queued on the communication stream after the compute stream's work so far.
  void allreduce_sum_async(float* data, int64_t n);
  // recv (size * count bf16 values, rank-major) = every rank's send (count values): queued like the sum.
  void allgather_bf16_async(const void* send, void* recv, int64_t count);
  // recv (count) = sum over the ranks of their send block for this rank (send: size * count fp32, rank-major).
  void reduce_scatter_sum_async(const float* send, float* recv, int64_t count);
  // The compute stream waits for every queued collective (no host wait).
  void join();
  // Timed groups: seconds the communication stream spent in the collectives queued since the last call (waits
  // for them); 0 for an untimed group.
  double take_busy_seconds();
  // All-to-all of bytes by grouped point-to-point (ncclGroupStart, ncclSend / ncclRecv per peer, ncclGroupEnd):
  // send holds send_bytes[p] bytes for rank p, rank by rank; recv gets recv_bytes[q] bytes from rank q, rank by
  // rank (the counts must agree pairwise). Ordered after the compute stream's work so far; the compute stream
  // then waits for it (no host wait).
  void alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                 const std::vector<int64_t>& recv_bytes);
  // Ends the communicator at once (after a failure on some rank), so that no rank waits in NCCL forever.
  void abort() noexcept;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace msa::cuda
