// Dispatch of the ops in ops.h: shape checks, then device tensors to ops_cuda.cpp and host tensors to the Eigen reference kernels (kernels/cpu), for float and double.
#include <cmath>
#include <cstring>

#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/msa_index.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "ops/on_gpu.h"
#include "ops/ops.h"


namespace msa::ops {
namespace {

// Runs body with T bound to the tensor's floating type.
template <class F>
void dispatch_float(const Tensor& t, F&& body) {
  MSA_CHECK(t.device() == Device::cpu, "this op has no GPU kernel yet");
  switch (t.dtype()) {
    case DType::f32: body(float{}); break;
    case DType::f64: body(double{}); break;
    default: MSA_CHECK(false, "op needs f32 or f64, got " << dtype_name(t.dtype()));
  }
}

void same_dtype(const Tensor& a, const Tensor& b, const char* what) {
  MSA_CHECK(a.dtype() == b.dtype() && a.device() == b.device(), what << ": dtype/device mismatch");
}

int64_t rows(const Tensor& t) { return t.numel() / t.dim(-1); }

}  // namespace

void gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha, double beta) {
  MSA_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "gemm takes 2-D tensors");
  int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  MSA_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n, "gemm shapes: c " << shape_str(c.shape()) << ", a "
                                                                           << shape_str(a.shape()) << (trans_a ? "^T" : "")
                                                                           << ", b " << shape_str(b.shape())
                                                                           << (trans_b ? "^T" : ""));
  ON_GPU(c, gpu::gemm(c, a, trans_a, b, trans_b, alpha, beta));
  same_dtype(c, a, "gemm");
  same_dtype(c, b, "gemm");
  dispatch_float(c, [&](auto tag) {
    using T = decltype(tag);
    cpu::gemm<T>(c.data<T>(), a.data<T>(), trans_a, b.data<T>(), trans_b, m, n, k, T(alpha), T(beta));
  });
}

void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) {
  const int64_t c = x.dim(-1);
  MSA_CHECK(y.numel() == x.numel() && w.numel() == c && rstd.numel() == rows(x), "rmsnorm_forward shapes");
  ON_GPU(x, gpu::rmsnorm_forward(y, rstd, x, w, eps));
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_forward<T>(y.data<T>(), rstd.data<T>(), x.data<T>(), w.data<T>(), rows(x), c, eps);
  });
}

void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd) {
  const int64_t c = x.dim(-1);
  MSA_CHECK(dx.numel() == x.numel() && dy.numel() == x.numel() && dw.numel() == c && rstd.numel() == rows(x),
            "rmsnorm_backward shapes");
  ON_GPU(x, gpu::rmsnorm_backward(dx, dw, dy, x, w, rstd));
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_backward<T>(dx.data<T>(), dw.data<T>(), dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<T>(),
                             rows(x), c);
  });
}

void rope(Tensor& x, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse) {
  MSA_CHECK(x.ndim() == 4, "rope takes (B, T, H, d), got " << shape_str(x.shape()));
  MSA_CHECK(rot_dims % 2 == 0 && rot_dims <= x.dim(3), "rope: rot_dims " << rot_dims << " for head dim " << x.dim(3));
  MSA_CHECK(cos.numel() == x.dim(1) * (rot_dims / 2) && sin.numel() == cos.numel(), "rope table shape");
  if (rot_dims == 0) return;
  ON_GPU(x, gpu::rope(x, cos, sin, rot_dims, inverse));
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    cpu::rope_apply<T>(x.data<T>(), cos.data<T>(), sin.data<T>(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), rot_dims,
                       inverse);
  });
}

namespace {
cpu::AttentionShape attention_shape(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos,
                                    const Tensor& kpos, double scale, const BlockSelection& selection = {}) {
  MSA_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.shape() == k.shape(), "attention takes (B, T, H, d) tensors");
  cpu::AttentionShape s{q.dim(0), q.dim(1), k.dim(1), q.dim(2), k.dim(2), q.dim(3), scale};
  MSA_CHECK(k.dim(0) == s.batch && k.dim(3) == s.d && s.hq % s.hkv == 0,
            "attention shapes q " << shape_str(q.shape()) << " k " << shape_str(k.shape()));
  MSA_CHECK(qpos.numel() == s.tq && kpos.numel() == s.tk && qpos.dtype() == DType::i32, "attention positions");
  if (selection.sel) {
    const Tensor& sel = *selection.sel;
    MSA_CHECK(sel.ndim() == 4 && sel.dim(0) == s.batch && sel.dim(1) == s.hkv && sel.dim(2) == s.tq,
              "block selection " << shape_str(sel.shape()) << " for queries " << shape_str(q.shape()));
    s.sel = sel.data<int32_t>();
    s.topk = sel.dim(3);
    s.block_size = selection.block_size;
  }
  return s;
}
}  // namespace

void attention_forward(Tensor& o, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos,
                       const Tensor& kpos, double scale, const BlockSelection& selection, bool plain_causal) {
  auto s = attention_shape(q, k, v, qpos, kpos, scale, selection);
  MSA_CHECK(o.shape() == q.shape() && lse.numel() == s.batch * s.hq * s.tq, "attention_forward output shapes");
  MSA_CHECK(q.device() == Device::cpu || !selection.sel, "block-sparse attention (MSA) has no GPU kernel yet");
  MSA_CHECK(!plain_causal || (s.tq == s.tk && !selection.sel), "plain causal attention with Tq " << s.tq << " != Tk "
                                                                << s.tk << " or a block selection");
  ON_GPU(q, gpu::attention_forward(o, lse, q, k, v, qpos, kpos, scale, plain_causal));
  dispatch_float(q, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_forward<T>(o.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(),
                              qpos.data<int32_t>(), kpos.data<int32_t>(), s);
  });
}

void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& o, const Tensor& lse,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos, const Tensor& kpos,
                        double scale, const BlockSelection& selection, bool plain_causal) {
  auto s = attention_shape(q, k, v, qpos, kpos, scale, selection);
  MSA_CHECK(dq.shape() == q.shape() && dk.shape() == k.shape() && dv.shape() == v.shape() && dout.shape() == q.shape(),
            "attention_backward shapes");
  MSA_CHECK(q.device() == Device::cpu || !selection.sel, "block-sparse attention (MSA) has no GPU kernel yet");
  MSA_CHECK(!plain_causal || (s.tq == s.tk && !selection.sel), "plain causal attention with Tq " << s.tq << " != Tk "
                                                                << s.tk << " or a block selection");
  ON_GPU(q, gpu::attention_backward(dq, dk, dv, dout, o, lse, q, k, v, qpos, kpos, scale, plain_causal));
  dk.zero_();  // the CPU kernel accumulates over the query heads of a group
  dv.zero_();
  dispatch_float(q, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(), o.data<T>(), lse.data<T>(),
                               q.data<T>(), k.data<T>(), v.data<T>(), qpos.data<int32_t>(), kpos.data<int32_t>(), s);
  });
}

namespace {
cpu::MsaIndexShape msa_index_shape(const Tensor& qi, const Tensor& ki, const MsaIndexParams& p) {
  MSA_CHECK(qi.ndim() == 4 && ki.ndim() == 3 && qi.dim(0) == ki.dim(0) && qi.dim(3) == ki.dim(2),
            "index shapes qI " << shape_str(qi.shape()) << " kI " << shape_str(ki.shape()));
  return cpu::MsaIndexShape{qi.dim(0), qi.dim(1), ki.dim(1), qi.dim(2), qi.dim(3),
                            1.0 / std::sqrt(double(qi.dim(3))), p.block_size, p.topk, p.sink_blocks,
                            p.force_local, p.mean_pool};
}
}  // namespace

void msa_select(Tensor& sel, const Tensor& qi, const Tensor& ki, const Tensor& qpos, const Tensor& kpos,
                const MsaIndexParams& p) {
  auto s = msa_index_shape(qi, ki, p);
  MSA_CHECK(sel.numel() == s.batch * s.hkv * s.tq * s.topk && sel.dtype() == DType::i32, "selection shape");
  MSA_CHECK(qpos.numel() == s.tq && kpos.numel() == s.tk, "index positions");
  dispatch_float(qi, [&](auto tag) {
    using T = decltype(tag);
    cpu::msa_select<T>(sel.data<int32_t>(), qi.data<T>(), ki.data<T>(), qpos.data<int32_t>(), kpos.data<int32_t>(),
                       s);
  });
}

MsaKlStats msa_index_kl(Tensor& dqi, Tensor& dki, const Tensor& qi, const Tensor& ki, const Tensor& q, const Tensor& k,
                        const Tensor& lse, const Tensor& sel, bool sparse_support, const Tensor& qpos,
                        const Tensor& kpos, const MsaIndexParams& p, double main_scale, double grad_coef,
                        bool want_recall) {
  auto s = msa_index_shape(qi, ki, p);
  auto main = attention_shape(q, k, k, qpos, kpos, main_scale);
  MSA_CHECK(dqi.shape() == qi.shape() && dki.shape() == ki.shape() && main.hkv == s.hkv, "index KL shapes");
  MsaKlStats out;
  dispatch_float(qi, [&](auto tag) {
    using T = decltype(tag);
    auto r = cpu::msa_index_kl<T>(dqi.data<T>(), dki.data<T>(), qi.data<T>(), ki.data<T>(), q.data<T>(), k.data<T>(),
                                  lse.data<T>(), sel.data<int32_t>(), sparse_support, qpos.data<int32_t>(),
                                  kpos.data<int32_t>(), s, main, grad_coef, want_recall);
    out = MsaKlStats{r.kl_sum, r.recall_sum, r.selected_share, r.rows};
  });
  return out;
}

void swiglu_forward(Tensor& h, const Tensor& gu) {
  const int64_t f = h.dim(-1);
  MSA_CHECK(gu.dim(-1) == 2 * f && rows(gu) == rows(h), "swiglu_forward shapes");
  ON_GPU(h, gpu::swiglu_forward(h, gu));
  dispatch_float(h, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_forward<T>(h.data<T>(), gu.data<T>(), rows(h), f);
  });
}

void swiglu_backward(Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  const int64_t f = dh.dim(-1);
  MSA_CHECK(gu.dim(-1) == 2 * f && dgu.shape() == gu.shape() && rows(gu) == rows(dh), "swiglu_backward shapes");
  ON_GPU(dh, gpu::swiglu_backward(dgu, dh, gu));
  dispatch_float(dh, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_backward<T>(dgu.data<T>(), dh.data<T>(), gu.data<T>(), rows(dh), f);
  });
}

void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids) {
  const int64_t c = table.dim(1);
  MSA_CHECK(out.numel() == ids.numel() * c, "embedding_forward shapes");
  ON_GPU(table, gpu::embedding_forward(out, table, ids));  // ids were checked against the vocabulary on load
  const int32_t* id = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    MSA_CHECK(id[i] >= 0 && id[i] < table.dim(0), "token id " << id[i] << " outside the vocabulary of " << table.dim(0));
  dispatch_float(table, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_forward<T>(out.data<T>(), table.data<T>(), id, ids.numel(), c);
  });
}

void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  const int64_t c = dtable.dim(1);
  MSA_CHECK(dout.numel() == ids.numel() * c, "embedding_backward shapes");
  ON_GPU(dtable, gpu::embedding_backward(dtable, dout, ids));
  dispatch_float(dtable, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_backward<T>(dtable.data<T>(), dout.data<T>(), ids.data<int32_t>(), ids.numel(), c);
  });
}

void cross_entropy(Tensor& losses, Tensor& logits, const Tensor& targets, double grad_scale, int64_t vocab) {
  const int64_t n = rows(logits), stride = logits.dim(-1), v = vocab > 0 ? vocab : stride;
  MSA_CHECK(losses.numel() == n && targets.numel() == n && v <= stride, "cross_entropy shapes");
  ON_GPU(logits, gpu::cross_entropy(losses, logits, targets, grad_scale, v));
  const int32_t* t = targets.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) MSA_CHECK(t[i] < v, "target id " << t[i] << " outside the vocabulary of " << v);
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::cross_entropy<T>(losses.data<T>(), logits.data<T>(), t, n, v, stride, T(grad_scale));
  });
}

void copy_columns(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width) {
  const int64_t n = rows(dst), dw = dst.dim(-1), sw = src.dim(-1);
  MSA_CHECK(rows(src) == n && dst_col + width <= dw && src_col + width <= sw, "copy_columns shapes");
  same_dtype(dst, src, "copy_columns");
  ON_GPU(dst, gpu::copy_columns(dst, dst_col, src, src_col, width));
  const size_t es = dtype_size(dst.dtype());
  char* d = static_cast<char*>(dst.raw());
  const char* s = static_cast<const char*>(src.raw());
  for (int64_t i = 0; i < n; ++i) std::memcpy(d + (i * dw + dst_col) * es, s + (i * sw + src_col) * es, width * es);
}

void copy_columns_rope(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width,
                       int64_t head_dim, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse) {
  const int64_t n = rows(dst), dw = dst.dim(-1), sw = src.dim(-1);
  MSA_CHECK(rows(src) == n && dst_col + width <= dw && src_col + width <= sw && width % head_dim == 0 &&
                rot_dims % 2 == 0 && rot_dims <= head_dim && cos.dim(-1) * 2 == rot_dims && n % cos.dim(0) == 0,
            "copy_columns_rope shapes");
  same_dtype(dst, src, "copy_columns_rope");
  ON_GPU(dst, gpu::copy_columns_rope(dst, dst_col, src, src_col, width, head_dim, cos, sin, rot_dims, inverse));
  dispatch_float(dst, [&](auto tag) {
    using T = decltype(tag);
    cpu::rope_copy_columns<T>(dst.data<T>(), dw, dst_col, src.data<T>(), sw, src_col, n, width, head_dim,
                              cos.data<T>(), sin.data<T>(), cos.dim(0), rot_dims, inverse);
  });
}

void add_inplace(Tensor& y, const Tensor& x, double alpha) {
  MSA_CHECK(y.numel() == x.numel(), "add_inplace sizes " << shape_str(y.shape()) << " " << shape_str(x.shape()));
  ON_GPU(y, gpu::add_inplace(y, x, alpha));
  same_dtype(y, x, "add_inplace");
  dispatch_float(y, [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    const T* xp = x.data<T>();
    const T a = T(alpha);
    for (int64_t i = 0; i < y.numel(); ++i) yp[i] += a * xp[i];
  });
}

void scale_inplace(Tensor& y, double alpha) {
  ON_GPU(y, gpu::scale_inplace(y, alpha));
  dispatch_float(y, [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) yp[i] *= T(alpha);
  });
}

double sum_squares(const Tensor& x) {
  ON_GPU(x, gpu::sum_squares(x));
  double s = 0;
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) s += double(p[i]) * double(p[i]);
  });
  return s;
}

double sum(const Tensor& x) {
  ON_GPU(x, gpu::sum(x));
  double s = 0;
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) s += double(p[i]);
  });
  return s;
}

double sum_squares(const std::vector<const Tensor*>& xs) {
  if (xs.empty()) return 0.0;
  ON_GPU(*xs[0], gpu::sum_squares(xs));
  double s = 0;
  for (const Tensor* x : xs) s += sum_squares(*x);
  return s;
}

bool all_finite(const Tensor& x) {
  ON_GPU(x, gpu::all_finite(x));
  bool ok = true;
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel() && ok; ++i) ok = std::isfinite(p[i]);
  });
  return ok;
}

void adamw_update(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, const AdamWHyper& h, Tensor* value) {
  MSA_CHECK(p.numel() == m.numel() && p.numel() == v.numel() && p.numel() == g.numel(), "adamw shapes");
  MSA_CHECK(!value || value->numel() == p.numel(), "adamw value shape");
  ON_GPU(p, gpu::adamw_update(p, m, v, g, h, value));
  dispatch_float(p, [&](auto tag) {
    using T = decltype(tag);
    cpu::adamw_update<T>(p.data<T>(), m.data<T>(), v.data<T>(), g.data<T>(), p.numel(),
                         cpu::AdamWStep{h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.step, h.grad_scale});
  });
  if (value && value->raw() != p.raw()) convert(*value, p);
}

void convert(Tensor& dst, const Tensor& src) {
  MSA_CHECK(dst.numel() == src.numel() && dst.device() == src.device(),
            "convert " << shape_str(src.shape()) << " into " << shape_str(dst.shape()));
  ON_GPU(dst, gpu::convert(dst, src));
  dst.from_vector(src.to_vector());  // host f32 / f64 / bf16: build and load time, and host-staged transfers
}

}  // namespace msa::ops
