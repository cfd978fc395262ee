// An NCCL communicator over the ranks of an MPI communicator (MPI only bootstraps it: rank 0 makes the unique
// id and broadcasts it), with its own stream so that gradient reductions overlap the backward pass. Each rank
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
  NcclGroup(int rank, int size, const std::function<void(void*, int64_t)>& broadcast);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  // In-place sum of n fp32 values, queued on the communication stream after the compute stream's work so far.
  void allreduce_sum_async(float* data, int64_t n);
  // The compute stream waits for every queued reduction (no host wait).
  void join();
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
