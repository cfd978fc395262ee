// Device-tensor MoE ops (ops_moe.h): dtype checks, the host row lists packed into one upload per call (into the
// grow-only scratch buffer, so steady-state steps allocate nothing), then the launchers in kernels/cuda/moe.h.
// Shapes and row ranges are checked by the caller in ops_moe_cpu.cpp.
#include <climits>
#include <cstring>

#include "kernels/cuda/memory.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/op_profile.h"
#include "kernels/cuda/runtime.h"
#include "ops/cuda_args.h"
#include "ops/ops_cuda.h"

namespace msa::ops::gpu {
namespace {

// Host lists of 4-byte words (int32 row ids, fp32 scales) packed into one buffer, uploaded with one copy.
class Upload {
 public:
  // Appends the words and returns their offset (in words).
  size_t add_rows(const std::vector<int64_t>& rows) {
    const size_t at = words_.size();
    for (int64_t r : rows) {
      MSA_CHECK(r <= INT32_MAX, "MoE row id " << r << " exceeds int32");
      words_.push_back(int32_t(r));
    }
    return at;
  }
  size_t add_floats(const std::vector<double>& v) {
    const size_t at = words_.size();
    words_.resize(at + v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const float f = float(v[i]);
      std::memcpy(&words_[at + i], &f, sizeof f);
    }
    return at;
  }
  // Uploads the words (after `extra_bytes` reserved for outputs at the end) and returns the device base.
  char* send(size_t extra_bytes = 0) {
    const size_t bytes = words_.size() * sizeof(int32_t);
    base_ = static_cast<char*>(cuda::scratch(bytes + extra_bytes + 16));
    cuda::upload_async(base_, words_.data(), bytes);
    return base_;
  }
  const int32_t* ints(size_t at) const { return reinterpret_cast<const int32_t*>(base_) + at; }
  const float* floats(size_t at) const { return reinterpret_cast<const float*>(base_) + at; }
  size_t bytes() const { return words_.size() * sizeof(int32_t); }

 private:
  std::vector<int32_t> words_;
  char* base_ = nullptr;
};

}  // namespace

void moe_route_forward(Tensor& scores, Tensor& idx, Tensor& gates, Tensor& lse, const Tensor& logits, int64_t k,
                       bool sigmoid, bool renorm) {
  cuda::OpScope scope("moe_route_forward");
  expect(logits, DType::f32, "moe_route_forward logits");
  expect(scores, DType::f32, "moe_route_forward scores");
  expect(gates, DType::f32, "moe_route_forward gates");
  expect(lse, DType::f32, "moe_route_forward lse");
  expect(idx, DType::i32, "moe_route_forward idx");
  cuda::moe_route_forward(f32(scores), static_cast<int32_t*>(idx.raw()), f32(gates), f32(lse), f32(logits),
                          logits.dim(0), logits.dim(1), k, sigmoid, renorm);
}

void moe_route_backward(Tensor& dlogits, const Tensor& dgates, const Tensor& scores, const Tensor& idx,
                        const Tensor& gates, const Tensor& lse, const Tensor& logits,
                        const std::vector<double>& aux_grad, double z_coef, bool sigmoid, bool renorm) {
  cuda::OpScope scope("moe_route_backward");
  MSA_CHECK(dlogits.device() == Device::cuda && (dlogits.dtype() == DType::bf16 || dlogits.dtype() == DType::f32),
            "moe_route_backward dlogits: a GPU bf16 or f32 tensor expected");
  expect(dgates, DType::f32, "moe_route_backward dgates");
  expect(scores, DType::f32, "moe_route_backward scores");
  expect(gates, DType::f32, "moe_route_backward gates");
  expect(lse, DType::f32, "moe_route_backward lse");
  expect(logits, DType::f32, "moe_route_backward logits");
  expect(idx, DType::i32, "moe_route_backward idx");
  Upload up;
  const size_t aux = up.add_floats(aux_grad);
  up.send();
  cuda::moe_route_backward(dlogits.raw(), dlogits.dtype() == DType::f32, f32(dgates), f32(scores),
                           static_cast<const int32_t*>(idx.raw()), f32(gates), f32(lse), f32(logits), up.floats(aux),
                           float(z_coef), logits.dim(0), logits.dim(1), idx.dim(-1), sigmoid, renorm);
}

void gather_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows, const std::vector<double>& scale) {
  cuda::OpScope scope("moe_gather_rows");
  expect(dst, DType::bf16, "gather_rows dst");
  expect(src, DType::bf16, "gather_rows src");
  if (rows.empty()) return;
  Upload up;
  const size_t r = up.add_rows(rows), s = up.add_floats(scale);
  up.send();
  cuda::gather_rows(bf(dst), bf(src), up.ints(r), scale.empty() ? nullptr : up.floats(s), int64_t(rows.size()),
                    src.dim(-1));
}

void scatter_add_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows,
                      const std::vector<double>& scale) {
  cuda::OpScope scope("moe_scatter_add_rows");
  expect(dst, DType::bf16, "scatter_add_rows dst");
  expect(src, DType::bf16, "scatter_add_rows src");
  if (rows.empty()) return;
  // CSR of destination row -> its source rows in the order of i (a stable counting sort), so every destination
  // sums its sources in one fixed order: results do not depend on how the GPU schedules the blocks.
  const int64_t n = dst.numel() / dst.dim(-1), m = int64_t(rows.size());
  std::vector<int64_t> count(size_t(n) + 1, 0);
  for (int64_t r : rows) ++count[size_t(r) + 1];
  std::vector<int64_t> dst_rows, start{0};
  for (int64_t r = 0; r < n; ++r)
    if (count[size_t(r) + 1] > 0) dst_rows.push_back(r), start.push_back(start.back() + count[size_t(r) + 1]);
  for (int64_t r = 0; r < n; ++r) count[size_t(r) + 1] += count[size_t(r)];  // first slot of each row
  std::vector<int64_t> src_rows(static_cast<size_t>(m));
  std::vector<double> src_scale(scale.empty() ? 0 : size_t(m));
  for (int64_t i = 0; i < m; ++i) {
    const int64_t p = count[size_t(rows[size_t(i)])]++;
    src_rows[size_t(p)] = i;
    if (!scale.empty()) src_scale[size_t(p)] = scale[size_t(i)];
  }
  Upload up;
  const size_t d = up.add_rows(dst_rows), st = up.add_rows(start), sr = up.add_rows(src_rows),
               sc = up.add_floats(src_scale);
  up.send();
  cuda::scatter_add_rows(bf(dst), bf(src), up.ints(d), up.ints(st), up.ints(sr),
                         scale.empty() ? nullptr : up.floats(sc), int64_t(dst_rows.size()), dst.dim(-1));
}

void row_dots(std::vector<double>& out, const Tensor& a, const std::vector<int64_t>& rows, const Tensor& b) {
  cuda::OpScope scope("moe_row_dots");
  expect(a, DType::bf16, "row_dots a");
  expect(b, DType::bf16, "row_dots b");
  const int64_t m = int64_t(rows.size());
  out.assign(size_t(m), 0.0);
  if (m == 0) return;
  Upload up;
  const size_t r = up.add_rows(rows);
  char* base = up.send(size_t(m) * sizeof(float));
  float* dev_out = reinterpret_cast<float*>(base + (up.bytes() + 15) / 16 * 16);
  cuda::row_dots(dev_out, bf(a), up.ints(r), bf(b), m, a.dim(-1));
  std::vector<float> host(static_cast<size_t>(m));
  cuda::copy_bytes(host.data(), dev_out, size_t(m) * sizeof(float), cuda::CopyKind::device_to_host);
  for (int64_t i = 0; i < m; ++i) out[size_t(i)] = host[size_t(i)];
}

}  // namespace msa::ops::gpu
