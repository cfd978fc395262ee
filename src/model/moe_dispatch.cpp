#include "model/moe_dispatch.h"

#include <cmath>
#include <numeric>

#include "core/device.h"
#include "model/moe_experts.h"  // grow_rows

#if MSATRAIN_HAVE_CUDA
#include "kernels/cuda/nccl_group.h"
#endif

namespace msa {

int64_t expert_capacity(const MoeConfig& cfg, int64_t tokens) {
  if (cfg.capacity_factor <= 0) return -1;
  return int64_t(std::ceil(cfg.capacity_factor * double(tokens * cfg.top_k) / double(cfg.n_experts)));
}

DispatchPlan plan_dispatch(const Tensor& idx, const MoeConfig& cfg, Comm* comm) {
  MSA_CHECK(idx.device() == Device::cpu && idx.dtype() == DType::i32 && idx.ndim() == 2, "plan_dispatch: idx");
  const int64_t n = idx.dim(0), k = idx.dim(1), e = cfg.n_experts;
  const int64_t ep = comm ? comm->size() : 1, el = e / ep;
  MSA_CHECK(k == cfg.top_k && e % ep == 0, "plan_dispatch: k " << k << ", " << e << " experts over " << ep << " ranks");
  const int32_t* ids = idx.data<int32_t>();
  DispatchPlan p;
  p.routed.assign(size_t(e), 0);

  // Capacity: slot 0 of every token first, then slot 1, ...: a token's first choice wins over another's second.
  const int64_t cap = expert_capacity(cfg, n);
  std::vector<char> kept(size_t(n * k), 1);
  std::vector<int64_t> taken(size_t(e), 0);
  for (int64_t j = 0; j < k; ++j)
    for (int64_t t = 0; t < n; ++t) {
      const int64_t x = ids[t * k + j];
      MSA_CHECK(0 <= x && x < e, "router chose expert " << x << " of " << e);
      ++p.routed[size_t(x)];
      if (cap >= 0 && taken[size_t(x)] >= cap) {
        kept[size_t(t * k + j)] = 0;
        ++p.dropped;
      } else {
        ++taken[size_t(x)];
      }
    }

  // Send order: by expert, then token, then slot (buckets filled in token order).
  std::vector<std::vector<int64_t>> bucket(static_cast<size_t>(e));
  for (int64_t s = 0; s < n * k; ++s)
    if (kept[size_t(s)]) bucket[size_t(ids[s])].push_back(s);
  for (const auto& b : bucket)
    for (int64_t s : b) p.token.push_back(s / k), p.slot.push_back(s);

  // Counts: taken[] is this rank's per-expert row count, which is block by block the count for each ep rank.
  std::vector<int64_t> recv(static_cast<size_t>(e));
  if (comm) comm->alltoall(taken.data(), recv.data(), el);
  else recv = taken;
  p.send_counts.assign(size_t(ep), 0);
  p.recv_counts.assign(size_t(ep), 0);
  for (int64_t r = 0; r < ep; ++r)
    for (int64_t l = 0; l < el; ++l) {
      p.send_counts[size_t(r)] += taken[size_t(r * el + l)];
      p.recv_counts[size_t(r)] += recv[size_t(r * el + l)];  // recv[r * el + l]: rank r's rows for local expert l
    }
  // Expert-major order: local expert, then source rank, then the source's order.
  std::vector<int64_t> start(static_cast<size_t>(e));  // first received row of (rank r, local expert l)
  int64_t row = 0;
  for (int64_t i = 0; i < e; ++i) start[size_t(i)] = row, row += recv[size_t(i)];
  p.offsets.assign(size_t(el + 1), 0);
  for (int64_t l = 0; l < el; ++l) {
    for (int64_t r = 0; r < ep; ++r)
      for (int64_t i = 0; i < recv[size_t(r * el + l)]; ++i) p.expert_order.push_back(start[size_t(r * el + l)] + i);
    p.offsets[size_t(l + 1)] = int64_t(p.expert_order.size());
  }
  return p;
}

#if MSATRAIN_HAVE_CUDA
struct RowExchange::Nccl {
  cuda::NcclGroup group;
  explicit Nccl(Comm& comm)
      : group(comm.rank(), comm.size(), [&](void* data, int64_t bytes) { comm.broadcast(data, bytes, 0); }) {}
};
#else
struct RowExchange::Nccl {};
#endif

RowExchange::RowExchange(Comm* comm) : comm_(comm) {}
RowExchange::~RowExchange() = default;

void RowExchange::use_nccl() {
#if MSATRAIN_HAVE_CUDA
  if (comm_ && !nccl_) nccl_ = std::make_unique<Nccl>(*comm_);
#else
  MSA_CHECK(false, "NCCL needs the CUDA backend");
#endif
}

void RowExchange::exchange(const Tensor& send, const std::vector<int64_t>& send_counts, Tensor& recv,
                           const std::vector<int64_t>& recv_counts) {
  const int64_t cols = send.dim(-1);
  const int64_t sent = std::accumulate(send_counts.begin(), send_counts.end(), int64_t(0));
  const int64_t got = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t(0));
  MSA_CHECK(send.dim(0) == sent && recv.dim(0) == got && recv.dim(-1) == cols && send.dtype() == recv.dtype() &&
                send.device() == recv.device(),
            "exchange_rows: send " << shape_str(send.shape()) << " for " << sent << " rows, recv "
                                   << shape_str(recv.shape()) << " for " << got);
  ProfileScope scope(send.device(), "moe_exchange");
  if (!comm_ || comm_->size() == 1) {
    if (sent > 0) recv.copy_from(send);
    return;
  }
  std::vector<int64_t> sc(send_counts), rc(recv_counts);
  for (auto& c : sc) c *= cols;
  for (auto& c : rc) c *= cols;
  if (send.device() == Device::cpu) {
    comm_->alltoallv(send.raw(), sc, recv.raw(), rc, send.dtype());
    return;
  }
#if MSATRAIN_HAVE_CUDA
  if (nccl_) {
    const int64_t bytes = int64_t(dtype_size(send.dtype()));
    for (auto& c : sc) c *= bytes;
    for (auto& c : rc) c *= bytes;
    nccl_->group.alltoallv(send.raw(), sc, recv.raw(), rc);
    return;
  }
#endif
  // Host-staged (ranks sharing one GPU): the staging buffers grow to the largest exchange, then stay.
  Tensor hs = grow_rows(host_send_, sent, cols, send.dtype(), Device::cpu);
  Tensor hr = grow_rows(host_recv_, got, cols, send.dtype(), Device::cpu);
  if (sent > 0) hs.copy_from(send);
  comm_->alltoallv(hs.raw(), sc, hr.raw(), rc, send.dtype());
  if (got > 0) recv.copy_from(hr);
}

}  // namespace msa
