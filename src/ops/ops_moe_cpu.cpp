// Dispatch of the MoE ops (ops_moe.h): shape and row checks, then device tensors to ops_moe_cuda.cpp and host
// tensors to kernels/cpu/moe_router.h and plain row loops, float and double.
#include "kernels/cpu/moe_router.h"
#include "ops/on_gpu.h"
#include "ops/ops.h"
#include "ops/ops_moe.h"


namespace msa::ops {
namespace {

template <class F>
void dispatch_float(const Tensor& t, F&& body) {
  MSA_CHECK(t.device() == Device::cpu, "MoE op: mixed host and device tensors");
  switch (t.dtype()) {
    case DType::f32: body(float{}); break;
    case DType::f64: body(double{}); break;
    default: MSA_CHECK(false, "op needs f32 or f64, got " << dtype_name(t.dtype()));
  }
}

void check_rows(const std::vector<int64_t>& rows, int64_t n, const char* what) {
  for (int64_t r : rows) MSA_CHECK(0 <= r && r < n, what << ": row " << r << " outside [0, " << n << ")");
}

}  // namespace

void moe_route_forward(Tensor& scores, Tensor& idx, Tensor& gates, Tensor& lse, const Tensor& logits, int64_t k,
                       bool sigmoid, bool renorm) {
  const int64_t n = logits.dim(0), e = logits.dim(1);
  MSA_CHECK(logits.ndim() == 2 && 1 <= k && k <= e, "moe_route_forward: logits " << shape_str(logits.shape())
                                                                                 << ", k " << k);
  MSA_CHECK(scores.numel() == n * e && idx.numel() == n * k && gates.numel() == n * k && lse.numel() == n &&
                idx.dtype() == DType::i32,
            "moe_route_forward shapes");
  ON_GPU(logits, gpu::moe_route_forward(scores, idx, gates, lse, logits, k, sigmoid, renorm));
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_route_forward<T>(scores.data<T>(), idx.data<int32_t>(), gates.data<T>(), lse.data<T>(),
                              logits.data<T>(), n, e, k, sigmoid, renorm);
  });
}

void moe_route_backward(Tensor& dlogits, const Tensor& dgates, const Tensor& scores, const Tensor& idx,
                        const Tensor& gates, const Tensor& lse, const Tensor& logits,
                        const std::vector<double>& aux_grad, double z_coef, bool sigmoid, bool renorm) {
  const int64_t n = logits.dim(0), e = logits.dim(1), k = idx.dim(-1);
  MSA_CHECK(dlogits.numel() == n * e && dgates.numel() == n * k && scores.numel() == n * e && gates.numel() == n * k &&
                lse.numel() == n && int64_t(aux_grad.size()) == e,
            "moe_route_backward shapes");
  ON_GPU(logits, gpu::moe_route_backward(dlogits, dgates, scores, idx, gates, lse, logits, aux_grad, z_coef, sigmoid,
                                         renorm));
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_route_backward<T>(dlogits.data<T>(), dgates.data<T>(), scores.data<T>(), idx.data<int32_t>(),
                               gates.data<T>(), lse.data<T>(), logits.data<T>(), aux_grad.data(), z_coef, n, e, k,
                               sigmoid, renorm);
  });
}

void gather_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows, const std::vector<double>& scale) {
  const int64_t c = src.dim(-1), m = int64_t(rows.size());
  MSA_CHECK(dst.numel() == m * c && (scale.empty() || int64_t(scale.size()) == m), "gather_rows shapes");
  check_rows(rows, src.numel() / c, "gather_rows");
  ON_GPU(src, gpu::gather_rows(dst, src, rows, scale));
  dispatch_float(src, [&](auto tag) {
    using T = decltype(tag);
    const T* s = src.data<T>();
    T* d = dst.data<T>();
    for (int64_t i = 0; i < m; ++i) {
      const T* from = s + rows[size_t(i)] * c;
      T* to = d + i * c;
      const T w = scale.empty() ? T(1) : T(scale[size_t(i)]);
      for (int64_t j = 0; j < c; ++j) to[j] = w * from[j];
    }
  });
}

void scatter_add_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows,
                      const std::vector<double>& scale) {
  const int64_t c = dst.dim(-1), m = int64_t(rows.size());
  MSA_CHECK(src.numel() == m * c && (scale.empty() || int64_t(scale.size()) == m), "scatter_add_rows shapes");
  check_rows(rows, dst.numel() / c, "scatter_add_rows");
  ON_GPU(dst, gpu::scatter_add_rows(dst, src, rows, scale));
  dispatch_float(dst, [&](auto tag) {
    using T = decltype(tag);
    const T* s = src.data<T>();
    T* d = dst.data<T>();
    for (int64_t i = 0; i < m; ++i) {
      const T* from = s + i * c;
      T* to = d + rows[size_t(i)] * c;
      const T w = scale.empty() ? T(1) : T(scale[size_t(i)]);
      for (int64_t j = 0; j < c; ++j) to[j] += w * from[j];
    }
  });
}

void row_dots(std::vector<double>& out, const Tensor& a, const std::vector<int64_t>& rows, const Tensor& b) {
  const int64_t c = a.dim(-1), m = int64_t(rows.size());
  MSA_CHECK(b.numel() == m * c, "row_dots shapes");
  check_rows(rows, a.numel() / c, "row_dots");
  ON_GPU(a, gpu::row_dots(out, a, rows, b));
  out.assign(size_t(m), 0.0);
  dispatch_float(a, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < m; ++i) {
      const T* x = a.data<T>() + rows[size_t(i)] * c;
      const T* y = b.data<T>() + i * c;
      double s = 0;
      for (int64_t j = 0; j < c; ++j) s += double(x[j]) * double(y[j]);
      out[size_t(i)] = s;
    }
  });
}

}  // namespace msa::ops
