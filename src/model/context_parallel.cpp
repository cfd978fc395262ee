#include "model/context_parallel.h"

#include <chrono>
#include <cstring>

#include "core/device.h"
#include "ops/ops.h"

namespace msa {

std::vector<int32_t> cp_local_positions(int64_t seq_len, int cp, int index) {
  MSA_CHECK(cp >= 1 && index >= 0 && index < cp && seq_len % (2 * int64_t(cp)) == 0,
            "cp layout: seq_len " << seq_len << ", cp " << cp << ", index " << index);
  const int64_t chunk = seq_len / (2 * int64_t(cp));
  std::vector<int32_t> pos;
  pos.reserve(size_t(2 * chunk));
  for (const int64_t c : {int64_t(index), 2 * int64_t(cp) - 1 - index})
    for (int64_t i = 0; i < chunk; ++i) pos.push_back(static_cast<int32_t>(c * chunk + i));
  return pos;
}

ContextParallel::ContextParallel(Comm& comm, int64_t seq_len)
    : comm_(comm), seq_len_(seq_len), local_pos_(cp_local_positions(seq_len, comm.size(), comm.rank())) {
  for (int r = 0; r < comm.size(); ++r) rank_pos_.push_back(cp_local_positions(seq_len, comm.size(), r));
}

void ContextParallel::check_shapes(const Tensor& full, const Tensor& local, int64_t& batch, int64_t& width) const {
  MSA_CHECK(local.ndim() >= 2 && full.ndim() == local.ndim() && local.dim(1) == local_len() &&
                full.dim(1) == seq_len_ && full.dim(0) == local.dim(0) && full.dtype() == local.dtype(),
            "context parallel: full " << shape_str(full.shape()) << " and local " << shape_str(local.shape())
                                      << " for seq_len " << seq_len_ << " over " << size() << " ranks");
  MSA_CHECK(full.device() == local.device(), "context parallel: full and local on different devices");
  batch = local.dim(0);
  width = local.numel() / (batch * local_len());
  MSA_CHECK(full.numel() == batch * seq_len_ * width, "context parallel: row widths differ");
}

Tensor ContextParallel::staging(Tensor& buf, int64_t numel, DType dtype) {
  // One buffer per direction, grown to the largest use (K/V rows and kI rows share it): no allocation per step.
  if (!buf.defined() || buf.numel() < numel || buf.dtype() != dtype) buf = Tensor::empty({numel}, dtype, Device::cpu);
  return buf.slice(0, numel);
}

namespace {
// A host tensor shaped like t, reusing buf's memory when it is large enough.
Tensor host_like(Tensor& buf, const Tensor& t, DType dtype) {
  if (!buf.defined() || buf.numel() < t.numel() || buf.dtype() != dtype) buf = Tensor::empty({t.numel()}, dtype);
  return buf.slice(0, t.numel()).view(t.shape());
}
}  // namespace

ContextParallel::Traffic ContextParallel::take_traffic() {
  const Traffic t = traffic_;
  traffic_ = {};
  return t;
}

void ContextParallel::gather_keys(Tensor& full, const Tensor& local) {
  synchronize(local.device());  // the clock measures communication, not the queued compute before it
  const auto t0 = std::chrono::steady_clock::now();
  traffic_.bytes_in += int64_t(local.nbytes()) * (size() - 1);
  if (local.device() == Device::cpu) {
    gather_host(full, local);
  } else {  // host-staged: device -> host, gather, host -> device
    Tensor h_local = host_like(host_local_, local, local.dtype()), h_full = host_like(host_full_, full, full.dtype());
    h_local.copy_from(local);
    gather_host(h_full, h_local);
    full.copy_from(h_full);
  }
  traffic_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void ContextParallel::scatter_key_grads(Tensor& local, const Tensor& full) {
  synchronize(full.device());
  const auto t0 = std::chrono::steady_clock::now();
  // What travels: the rows themselves on the CPU, their fp32 sums on the host-staged GPU path.
  const int64_t row_bytes = full.device() == Device::cpu ? int64_t(dtype_size(local.dtype())) : 4;
  traffic_.bytes_in += local.numel() * row_bytes * (size() - 1);
  if (full.device() == Device::cpu) {
    scatter_host(local, full);
  } else {  // host-staged, and summed in fp32 on the host (MPI has no bf16 sum)
    Tensor h_full = host_like(host_full_, full, full.dtype()), f32_full = host_like(sum32_send_, full, DType::f32);
    Tensor f32_local = host_like(sum32_recv_, local, DType::f32), h_local = host_like(host_local_, local, local.dtype());
    h_full.copy_from(full);
    ops::convert(f32_full, h_full);
    scatter_host(f32_local, f32_full);
    ops::convert(h_local, f32_local);
    local.copy_from(h_local);
  }
  traffic_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void ContextParallel::gather_host(Tensor& full, const Tensor& local) {
  int64_t batch = 0, width = 0;
  check_shapes(full, local, batch, width);
  const int64_t n = local.numel(), tl = local_len(), cp = size();
  const size_t row = size_t(width) * dtype_size(local.dtype());
  Tensor recv = staging(recv_, n * cp, local.dtype());
  comm_.allgather(local.view({n}), recv);
  // recv (cp, B, 2L, W) rank-major; rank r's local row i is global position pos_r[i].
  const char* src = static_cast<const char*>(recv.raw());
  char* dst = static_cast<char*>(full.raw());
  for (int r = 0; r < cp; ++r) {
    const std::vector<int32_t>& pos = rank_pos_[size_t(r)];
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < tl; ++i)
        std::memcpy(dst + size_t(b * seq_len_ + pos[size_t(i)]) * row, src + size_t((r * batch + b) * tl + i) * row,
                    row);
  }
}

void ContextParallel::scatter_host(Tensor& local, const Tensor& full) {
  int64_t batch = 0, width = 0;
  check_shapes(full, local, batch, width);
  const int64_t n = local.numel(), tl = local_len(), cp = size();
  const size_t row = size_t(width) * dtype_size(local.dtype());
  Tensor send = staging(send_, n * cp, local.dtype());
  // Pack full (B, T, W) rank-major into (cp, B, 2L, W): block r holds the rows rank r owns.
  const char* src = static_cast<const char*>(full.raw());
  char* dst = static_cast<char*>(send.raw());
  for (int r = 0; r < cp; ++r) {
    const std::vector<int32_t>& pos = rank_pos_[size_t(r)];
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < tl; ++i)
        std::memcpy(dst + size_t((r * batch + b) * tl + i) * row, src + size_t(b * seq_len_ + pos[size_t(i)]) * row,
                    row);
  }
  Tensor out = local.view({n});
  comm_.reduce_scatter_sum(send, out);
}

}  // namespace msa
