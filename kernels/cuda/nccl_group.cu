#include <nccl.h>

#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/nccl_group.h"
#include "kernels/cuda/runtime.h"

#define NCCL_CHECK(stmt)                                                                                    \
  do {                                                                                                      \
    ncclResult_t msa_nccl_r_ = (stmt);                                                                      \
    if (msa_nccl_r_ != ncclSuccess)                                                                         \
      ::msa::cuda::fail(std::string("NCCL: ") + ncclGetErrorString(msa_nccl_r_), #stmt, __FILE__, __LINE__); \
  } while (0)

namespace msa::cuda {

struct NcclGroup::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> timers;  // (start, end) of each timed collective, reused
  bool timing = false;
  size_t timed = 0;  // timers in use since take_busy_seconds()

  // Orders the communication stream after the compute stream's work so far, and starts a timer.
  void enqueue_after_compute() {
    CUDA_CHECK(cudaEventRecord(ready, compute_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(stream, ready, 0));
    if (!timing) return;
    if (timed == timers.size()) {
      timers.emplace_back();
      CUDA_CHECK(cudaEventCreate(&timers.back().first));
      CUDA_CHECK(cudaEventCreate(&timers.back().second));
    }
    CUDA_CHECK(cudaEventRecord(timers[timed].first, stream));
  }
  void stop_timer() {
    if (timing) CUDA_CHECK(cudaEventRecord(timers[timed++].second, stream));
  }
};

NcclGroup::NcclGroup(int rank, int size, const std::function<void(void*, int64_t)>& broadcast, bool timed)
    : s_(std::make_unique<State>()) {
  s_->timing = timed;
  ncclUniqueId id{};
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  broadcast(&id, sizeof id);
  NCCL_CHECK(ncclCommInitRank(&s_->comm, size, id, rank));
  CUDA_CHECK(cudaStreamCreateWithFlags(&s_->stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&s_->ready, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&s_->done, cudaEventDisableTiming));
}

NcclGroup::~NcclGroup() {
  if (s_->comm) ncclCommDestroy(s_->comm);
  if (s_->stream) cudaStreamDestroy(s_->stream);
  if (s_->ready) cudaEventDestroy(s_->ready);
  if (s_->done) cudaEventDestroy(s_->done);
  for (auto& [a, b] : s_->timers) cudaEventDestroy(a), cudaEventDestroy(b);
}

void NcclGroup::allreduce_sum_async(float* data, int64_t n) {
  // The gradient is complete once the compute stream reaches this point: the reduction waits for that only.
  s_->enqueue_after_compute();
  NCCL_CHECK(ncclAllReduce(data, data, size_t(n), ncclFloat32, ncclSum, s_->comm, s_->stream));
  s_->stop_timer();
}

void NcclGroup::allgather_bf16_async(const void* send, void* recv, int64_t count) {
  s_->enqueue_after_compute();
  NCCL_CHECK(ncclAllGather(send, recv, size_t(count), ncclBfloat16, s_->comm, s_->stream));
  s_->stop_timer();
}

void NcclGroup::reduce_scatter_sum_async(const float* send, float* recv, int64_t count) {
  s_->enqueue_after_compute();
  NCCL_CHECK(ncclReduceScatter(send, recv, size_t(count), ncclFloat32, ncclSum, s_->comm, s_->stream));
  s_->stop_timer();
}

double NcclGroup::take_busy_seconds() {
  double ms_total = 0;
  for (size_t i = 0; i < s_->timed; ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(s_->timers[i].second));
    CUDA_CHECK(cudaEventElapsedTime(&ms, s_->timers[i].first, s_->timers[i].second));
    ms_total += ms;
  }
  s_->timed = 0;
  return ms_total * 1e-3;
}

void NcclGroup::join() {
  CUDA_CHECK(cudaEventRecord(s_->done, s_->stream));
  CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), s_->done, 0));
}

void NcclGroup::alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                          const std::vector<int64_t>& recv_bytes) {
  int size = 0;
  NCCL_CHECK(ncclCommCount(s_->comm, &size));
  if (int64_t(send_bytes.size()) != size || int64_t(recv_bytes.size()) != size)
    fail("alltoallv needs one count per rank", "NcclGroup::alltoallv", __FILE__, __LINE__);
  s_->enqueue_after_compute();
  const char* from = static_cast<const char*>(send);
  char* to = static_cast<char*>(recv);
  NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < size; ++p) {  // empty messages are left out on both sides (the counts agree pairwise)
    if (send_bytes[p] > 0) NCCL_CHECK(ncclSend(from, size_t(send_bytes[p]), ncclChar, p, s_->comm, s_->stream));
    if (recv_bytes[p] > 0) NCCL_CHECK(ncclRecv(to, size_t(recv_bytes[p]), ncclChar, p, s_->comm, s_->stream));
    from += send_bytes[p];
    to += recv_bytes[p];
  }
  NCCL_CHECK(ncclGroupEnd());
  s_->stop_timer();
  join();
}

void NcclGroup::abort() noexcept {
  if (s_->comm) ncclCommAbort(s_->comm);
  s_->comm = nullptr;
}

}  // namespace msa::cuda
