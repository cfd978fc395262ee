#include "model/context_parallel.h"

#include <chrono>
#include <cstring>

#include "core/device.h"
#include "ops/ops.h"

#if MSATRAIN_HAVE_CUDA
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/moe.h"  // gather_rows: the row gather the MoE dispatch uses too
#include "kernels/cuda/nccl_group.h"
#endif

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

#if MSATRAIN_HAVE_CUDA
struct ContextParallel::NcclPath {
  cuda::NcclGroup group;
  int64_t map_batch = -1;
  Tensor unpack_map, pack_map;  // device int32: full row -> gathered row; gathered row -> full row
  std::vector<Tensor> gathered;  // one rank-major receive buffer per queued gather (K, V, kI), reused
  Tensor pack16, send32, recv32;  // staging of the gradient reduce-scatter: rank-major bf16, then fp32
  struct Pending {
    Tensor* full;
    size_t buffer;
  };
  std::vector<Pending> pending;
  explicit NcclPath(Comm& comm)
      : group(comm.rank(), comm.size(), [&comm](void* p, int64_t n) { comm.broadcast(p, n, 0); }, true) {}
};
#else
struct ContextParallel::NcclPath {};
#endif

ContextParallel::ContextParallel(Comm& comm, int64_t seq_len, bool nccl)
    : comm_(comm), seq_len_(seq_len), local_pos_(cp_local_positions(seq_len, comm.size(), comm.rank())) {
  for (int r = 0; r < comm.size(); ++r) rank_pos_.push_back(cp_local_positions(seq_len, comm.size(), r));
#if MSATRAIN_HAVE_CUDA
  if (nccl) nccl_ = std::make_unique<NcclPath>(comm);
#else
  MSA_CHECK(!nccl, "context parallel over NCCL needs the CUDA backend");
#endif
}

ContextParallel::~ContextParallel() = default;

bool ContextParallel::uses_nccl() const { return nccl_ != nullptr; }

std::vector<int32_t> ContextParallel::full_row_of_gathered(int64_t batch) const {
  const int64_t tl = local_len();
  std::vector<int32_t> rows;
  rows.reserve(size_t(size() * batch * tl));
  for (int r = 0; r < size(); ++r)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < tl; ++i) rows.push_back(int32_t(b * seq_len_ + rank_pos_[size_t(r)][size_t(i)]));
  return rows;
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

namespace {
// numel values of buf's memory, which is (re)made only when too small or of another dtype or device: one buffer
// per use, grown to the largest (K/V rows and kI rows share it), so no step allocates.
Tensor staging(Tensor& buf, int64_t numel, DType dtype, Device device = Device::cpu) {
  if (!buf.defined() || buf.numel() < numel || buf.dtype() != dtype || buf.device() != device)
    buf = Tensor::empty({numel}, dtype, device);
  return buf.slice(0, numel);
}
// A host tensor shaped like t, from buf's memory.
Tensor host_like(Tensor& buf, const Tensor& t, DType dtype) { return staging(buf, t.numel(), dtype).view(t.shape()); }
}  // namespace

ContextParallel::Traffic ContextParallel::take_traffic() {
#if MSATRAIN_HAVE_CUDA
  if (nccl_) traffic_.seconds += nccl_->group.take_busy_seconds();  // the NCCL stream's busy time
#endif
  const Traffic t = traffic_;
  traffic_ = {};
  return t;
}

void ContextParallel::gather_keys(Tensor& full, const Tensor& local) {
  begin_gather(full, local);
  finish_gathers();
}

void ContextParallel::begin_gather(Tensor& full, const Tensor& local) {
  traffic_.bytes_in += int64_t(local.nbytes()) * (size() - 1);
#if MSATRAIN_HAVE_CUDA
  if (nccl_ && local.device() == Device::cuda) {
    int64_t batch = 0, width = 0;
    check_shapes(full, local, batch, width);
    MSA_CHECK(local.dtype() == DType::bf16, "context parallel over NCCL gathers bf16 keys");
    NcclPath& n = *nccl_;
    const size_t slot = n.pending.size();
    if (n.gathered.size() <= slot) n.gathered.emplace_back();
    const Tensor buf = staging(n.gathered[slot], local.numel() * size(), DType::bf16, Device::cuda);
    n.group.allgather_bf16_async(local.raw(), buf.raw(), local.numel());
    n.pending.push_back({&full, slot});
    return;
  }
#endif
  synchronize(local.device());  // the clock measures communication, not the queued compute before it
  const auto t0 = std::chrono::steady_clock::now();
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

void ContextParallel::finish_gathers() {
#if MSATRAIN_HAVE_CUDA
  if (!nccl_ || nccl_->pending.empty()) return;
  NcclPath& n = *nccl_;
  n.group.join();
  for (const NcclPath::Pending& p : n.pending) {
    Tensor& full = *p.full;
    const int64_t batch = full.dim(0), width = full.numel() / (batch * seq_len_);
    cuda::gather_rows(static_cast<__nv_bfloat16*>(full.raw()), static_cast<const __nv_bfloat16*>(n.gathered[p.buffer].raw()),
                      row_maps(batch).first, nullptr, batch * seq_len_, width);
  }
  n.pending.clear();
#endif
}

void ContextParallel::scatter_key_grads(Tensor& local, const Tensor& full) {
  // What travels: the rows themselves on the CPU, their fp32 sums on the GPU paths.
  const int64_t row_bytes = full.device() == Device::cpu ? int64_t(dtype_size(local.dtype())) : 4;
  traffic_.bytes_in += local.numel() * row_bytes * (size() - 1);
#if MSATRAIN_HAVE_CUDA
  if (nccl_ && full.device() == Device::cuda) {
    int64_t batch = 0, width = 0;
    check_shapes(full, local, batch, width);
    MSA_CHECK(local.dtype() == DType::bf16, "context parallel over NCCL scatters bf16 key gradients");
    NcclPath& n = *nccl_;
    const int64_t count = local.numel();
    const Tensor pack = staging(n.pack16, count * size(), DType::bf16, Device::cuda);
    const Tensor send = staging(n.send32, count * size(), DType::f32, Device::cuda);
    const Tensor recv = staging(n.recv32, count, DType::f32, Device::cuda);
    // full (B, T, W) -> rank-major (cp, B, 2L, W), block r the rows rank r owns; summed in fp32.
    cuda::gather_rows(static_cast<__nv_bfloat16*>(pack.raw()), static_cast<const __nv_bfloat16*>(full.raw()),
                      row_maps(batch).second, nullptr, count * size() / width, width);
    cuda::convert(send.raw(), true, pack.raw(), false, count * size());
    n.group.reduce_scatter_sum_async(static_cast<const float*>(send.raw()), static_cast<float*>(recv.raw()), count);
    n.group.join();
    cuda::convert(local.raw(), false, recv.raw(), true, count);
    return;
  }
#endif
  synchronize(full.device());
  const auto t0 = std::chrono::steady_clock::now();
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

#if MSATRAIN_HAVE_CUDA
std::pair<const int32_t*, const int32_t*> ContextParallel::row_maps(int64_t batch) {
  NcclPath& n = *nccl_;
  if (n.map_batch != batch) {  // built once per micro-batch size
    const std::vector<int32_t> pack = full_row_of_gathered(batch);
    std::vector<double> unpack(pack.size()), packd(pack.begin(), pack.end());
    for (size_t j = 0; j < pack.size(); ++j) unpack[size_t(pack[j])] = double(j);
    n.pack_map = Tensor::empty({int64_t(pack.size())}, DType::i32, Device::cuda);
    n.unpack_map = Tensor::empty({int64_t(pack.size())}, DType::i32, Device::cuda);
    n.pack_map.from_vector(packd);
    n.unpack_map.from_vector(unpack);
    n.map_batch = batch;
  }
  return {static_cast<const int32_t*>(n.unpack_map.raw()), static_cast<const int32_t*>(n.pack_map.raw())};
}
#endif

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
