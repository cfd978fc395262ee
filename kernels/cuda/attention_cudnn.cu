// Causal GQA attention as cuDNN "fused flash attention" graphs, built with the backend API (cudnn_graph.h).
//
// cuDNN recognises the composite graphs below and runs them as one fused kernel (plus small helpers); on cuDNN
// 9.14 this pattern, not the newer SDPA_FWD / SDPA_BWD operation descriptors, is what serves causal training on
// Hopper. Tensors are 4-D (batch, head, seq, dim) views of our BSHD buffers through strides; K enters as K^T
// (B, Hkv, d, T) and V as V^T in the backward; GQA is Hkv < Hq heads on K and V.
//
//   forward   S = Q K^T * scale -> causal mask (row >= col, else -inf) -> softmax: M = max S, E = exp(S - M),
//             Z = sum E, stats = M + log Z (our lse), P = E / Z -> O = P V
//   backward  D = rowsum(dO * O) (workspace); P = exp(mask(Q K^T * scale - stats)); dV = P^T dO (summed over the
//             group's query heads); dS = P * (dO V^T - D) * scale; dK = dS^T Q (group sum); dQ = dS K through an
//             fp32 accumulator in the workspace.
#include "kernels/cuda/attention_cudnn.h"

#include <cudnn.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cudnn_check.h"
#include "kernels/cuda/memory.h"
#include "kernels/cuda/runtime.h"

// Set one attribute / one descriptor-valued attribute; a failure names the attribute, file and line.
#define DNN_SET(desc, attr, type, n, ptr) CUDNN_CHECK(cudnnBackendSetAttribute((desc).get(), attr, type, n, ptr))
#define DNN_SET_DESC(desc, attr, value)                                                                  \
  do {                                                                                                   \
    cudnnBackendDescriptor_t msa_dnn_v_ = (value);                                                       \
    CUDNN_CHECK(cudnnBackendSetAttribute((desc).get(), attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &msa_dnn_v_)); \
  } while (0)

namespace msa::cuda {
namespace {

using Dims = std::array<int64_t, 4>;
constexpr cudnnDataType_t kF32 = CUDNN_DATA_FLOAT, kBf16 = CUDNN_DATA_BFLOAT16, kI32 = CUDNN_DATA_INT32,
                          kBool = CUDNN_DATA_BOOLEAN;

// Owns one backend descriptor.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) { CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_)); }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(Desc&& other) noexcept : d_(std::exchange(other.d_, nullptr)) {}
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc& operator=(Desc&&) = delete;
  cudnnBackendDescriptor_t get() const { return d_; }
  void finalize() const { CUDNN_CHECK(cudnnBackendFinalize(d_)); }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// Tensors of the variant pack, by unique id; virtual intermediates get ids from 1000 on.
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV, kScale, kNegInf, kOne, kRowDot, kDQAcc, kSeqQ, kSeqK
};

struct Tensor {
  cudnnBackendDescriptor_t d;
  Dims dim, stride;
};

// One operation graph under construction: owns every descriptor until its execution plan exists.
class Graph {
 public:
  Tensor io(int64_t uid, cudnnDataType_t dt, Dims dim, Dims stride) { return make(uid, dt, dim, stride, false, false); }
  Tensor temp(cudnnDataType_t dt, Dims dim, Dims stride) { return make(next_uid_++, dt, dim, stride, true, false); }
  // A scalar passed by value: its variant-pack pointer is a host address.
  Tensor scalar(int64_t uid, cudnnDataType_t dt = kF32) {
    return make(uid, dt, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  }

  // y = op(x [, b] [, t]); y given. math = the precision the op computes in; axis for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, const Tensor& x, const Tensor* b, const Tensor* t, const Tensor& y,
                 cudnnDataType_t math = kF32, int64_t axis = -1) {
    Desc& pw = keep(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    DNN_SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    DNN_SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math);
    if (axis >= 0) DNN_SET(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    pw.finalize();
    Desc& op = keep(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw.get());
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x.d);
    if (b) DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b->d);
    if (t) DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t->d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y.d);
    add(op);
  }
  // New virtual y shaped like x.
  Tensor unary(cudnnPointwiseMode_t mode, const Tensor& x, cudnnDataType_t out = kF32, cudnnDataType_t math = kF32,
               int64_t axis = -1) {
    Tensor y = temp(out, x.dim, x.stride);
    pointwise(mode, x, nullptr, nullptr, y, math, axis);
    return y;
  }
  Tensor binary(cudnnPointwiseMode_t mode, const Tensor& x, const Tensor& b, cudnnDataType_t out = kF32,
                cudnnDataType_t math = kF32) {
    Tensor y = temp(out, x.dim, x.stride);
    pointwise(mode, x, &b, nullptr, y, math);
    return y;
  }
  // y = keep ? x : otherwise
  Tensor select(const Tensor& x, const Tensor& otherwise, const Tensor& keep_mask) {
    Tensor y = temp(kF32, x.dim, x.stride);
    pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, &otherwise, &keep_mask, y);
    return y;
  }

  // c = a b over the last two dims (a batch dim of 1 or of fewer heads broadcasts). Overrides: per-batch M, N, K.
  void matmul(const Tensor& a, const Tensor& b, const Tensor& c, const Tensor* m = nullptr, const Tensor* n = nullptr,
              const Tensor* k = nullptr) {
    Desc& mm = keep(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    DNN_SET(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &kF32);
    mm.finalize();
    Desc& op = keep(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a.d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, b.d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c.d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm.get());
    if (m) DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, m->d);
    if (n) DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, n->d);
    if (k) DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, k->d);
    add(op);
  }
  // y = reduce(x) over the dims where y has extent 1 (or fewer heads: the GQA group sum).
  void reduction(cudnnReduceTensorOp_t mode, const Tensor& x, const Tensor& y) {
    Desc& rd = keep(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    DNN_SET(rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    DNN_SET(rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &kF32);
    rd.finalize();
    Desc& op = keep(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x.d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y.d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd.get());
    add(op);
  }
  // y: the same elements as x under y's dims / strides (how the graph spells a transpose).
  void reshape(const Tensor& x, const Tensor& y) {
    Desc& op = keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x.d);
    DNN_SET_DESC(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y.d);
    add(op);
  }

  // The finalized operation graph, then an execution plan from the first engine configuration of cuDNN's
  // heuristics (mode A, then the fallback list) that builds. Returns the plan and its workspace bytes.
  std::pair<Desc, int64_t> plan(cudnnHandle_t handle) {
    Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    DNN_SET(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    DNN_SET(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops_.size()), ops_.data());
    graph.finalize();
    std::string why = "no engine configuration";
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
      DNN_SET_DESC(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph.get());
      DNN_SET(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
      heur.finalize();
      int64_t count = 0;
      CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                           0, &count, nullptr));
      std::vector<Desc> cfgs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (int64_t i = 0; i < count; ++i) raw.push_back(cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).get());
      CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                           count, &count, raw.data()));
      for (int64_t i = 0; i < count; ++i) {
        Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        DNN_SET(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
        DNN_SET_DESC(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[size_t(i)]);
        if (const cudnnStatus_t st = cudnnBackendFinalize(plan.get()); st != CUDNN_STATUS_SUCCESS) {
          why = "cudnnBackendFinalize(execution plan): " + cudnn_status_message(st);
          continue;
        }
        int64_t ws = 0;
        CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                                             1, nullptr, &ws));
        return {std::move(plan), ws};
      }
    }
    fail("cuDNN found no engine for the attention graph (" + why + ")", "Graph::plan", __FILE__, __LINE__);
  }

 private:
  Tensor make(int64_t uid, cudnnDataType_t dt, Dims dim, Dims stride, bool is_virtual, bool by_value) {
    Desc& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t align = 16;
    DNN_SET(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    DNN_SET(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim.data());
    DNN_SET(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride.data());
    DNN_SET(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    DNN_SET(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    DNN_SET(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) DNN_SET(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    t.finalize();
    return Tensor{t.get(), dim, stride};
  }
  Desc& keep(cudnnBackendDescriptorType_t type) { return *descs_.emplace_back(std::make_unique<Desc>(type)); }
  void add(const Desc& op) {
    op.finalize();
    ops_.push_back(op.get());
  }

  std::vector<std::unique_ptr<Desc>> descs_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_uid_ = 1000;
};

// ---- the two graphs ----------------------------------------------------------------------------------------

struct Shape {
  int64_t b, t, hq, hkv, d;
  Dims q() const { return {b, hq, t, d}; }
  Dims q_stride() const { return {t * hq * d, d, hq * d, 1}; }  // (B, T, Hq, d) memory
  Dims kv() const { return {b, hkv, t, d}; }
  Dims kv_stride() const { return {t * hkv * d, d, hkv * d, 1}; }
  Dims kv_t() const { return {b, hkv, d, t}; }  // K^T, V^T: the same memory, last two dims swapped
  Dims kv_t_stride() const { return {t * hkv * d, d, 1, hkv * d}; }
  Dims row() const { return {b, hq, t, 1}; }  // per-query statistics (B, Hq, T)
  Dims row_stride() const { return {hq * t, t, 1, 1}; }
  Dims scores() const { return {b, hq, t, t}; }
  Dims scores_stride() const { return {hq * t * t, t * t, t, 1}; }
  Dims scores_t_stride() const { return {hq * t * t, t * t, 1, t}; }  // the transposed view of the scores
  Dims full_head() const { return {b, hq, t, d}; }  // per-query-head dK / dV / dQ before the group sum
  Dims full_head_stride() const { return {hq * t * d, t * d, d, 1}; }
};

// x where key col <= query row, else -inf (cuDNN's composite causal mask).
Tensor causal_mask(Graph& g, const Tensor& x, const Tensor& neg_inf) {
  const Tensor row = g.unary(CUDNN_POINTWISE_GEN_INDEX, x, kI32, kF32, 2);
  const Tensor col = g.unary(CUDNN_POINTWISE_GEN_INDEX, x, kI32, kF32, 3);
  const Tensor keep = g.binary(CUDNN_POINTWISE_CMP_GE, row, col, kBool, kBool);
  return g.select(x, neg_inf, keep);
}

// x where row < seq_q and col < seq_k (per batch), else -inf.
Tensor padding_mask(Graph& g, const Tensor& x, const Tensor& seq_q, const Tensor& seq_k, const Tensor& neg_inf) {
  const Tensor row = g.unary(CUDNN_POINTWISE_GEN_INDEX, x, kI32, kI32, 2);
  const Tensor col = g.unary(CUDNN_POINTWISE_GEN_INDEX, x, kI32, kI32, 3);
  const Tensor row_in = g.binary(CUDNN_POINTWISE_CMP_LT, row, seq_q, kBool, kBool);
  const Tensor col_in = g.binary(CUDNN_POINTWISE_CMP_LT, col, seq_k, kBool, kBool);
  const Tensor keep = g.binary(CUDNN_POINTWISE_LOGICAL_AND, row_in, col_in, kBool, kBool);
  return g.select(x, neg_inf, keep);
}

std::pair<Desc, int64_t> forward_plan(const Shape& s, cudnnHandle_t handle) {
  Graph g;
  const Tensor q = g.io(kQ, kBf16, s.q(), s.q_stride());
  const Tensor kt = g.io(kK, kBf16, s.kv_t(), s.kv_t_stride());
  const Tensor v = g.io(kV, kBf16, s.kv(), s.kv_stride());
  const Tensor o = g.io(kO, kBf16, s.q(), s.q_stride());
  const Tensor stats = g.io(kStats, kF32, s.row(), s.row_stride());
  const Tensor scale = g.scalar(kScale), neg_inf = g.scalar(kNegInf);

  const Tensor qk = g.temp(kF32, s.scores(), s.scores_stride());
  g.matmul(q, kt, qk);
  const Tensor scores = causal_mask(g, g.binary(CUDNN_POINTWISE_MUL, qk, scale), neg_inf);
  const Tensor max = g.temp(kF32, s.row(), s.row_stride());
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, scores, max);
  const Tensor e = g.unary(CUDNN_POINTWISE_EXP, g.binary(CUDNN_POINTWISE_SUB, scores, max));
  const Tensor z = g.temp(kF32, s.row(), s.row_stride());
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
  const Tensor log_z = g.unary(CUDNN_POINTWISE_LOG, z);
  g.pointwise(CUDNN_POINTWISE_ADD, max, &log_z, nullptr, stats);
  const Tensor p = g.temp(kBf16, s.scores(), s.scores_stride());  // the P V operand is bf16, like Q, K, V
  g.pointwise(CUDNN_POINTWISE_DIV, e, &z, nullptr, p);
  g.matmul(p, v, o);
  return g.plan(handle);
}

// padded: the backward's sequence-length padding mask and GEMM overrides, which cuDNN up to 9.15 needs when
// T % 128 != 0 (cudnn_frontend adds the same workaround); seq_q / seq_k hold T for every batch.
std::pair<Desc, int64_t> backward_plan(const Shape& s, bool padded, cudnnHandle_t handle) {
  Graph g;
  const Tensor q = g.io(kQ, kBf16, s.q(), s.q_stride());
  const Tensor kt = g.io(kK, kBf16, s.kv_t(), s.kv_t_stride());
  const Tensor vt = g.io(kV, kBf16, s.kv_t(), s.kv_t_stride());
  const Tensor o = g.io(kO, kBf16, s.q(), s.q_stride());
  const Tensor d_o = g.io(kDO, kBf16, s.q(), s.q_stride());
  const Tensor stats = g.io(kStats, kF32, s.row(), s.row_stride());
  const Tensor dq = g.io(kDQ, kBf16, s.q(), s.q_stride());
  const Tensor dk = g.io(kDK, kBf16, s.kv(), s.kv_stride());
  const Tensor dv = g.io(kDV, kBf16, s.kv(), s.kv_stride());
  const Tensor scale = g.scalar(kScale), neg_inf = g.scalar(kNegInf), one = g.scalar(kOne);
  const Tensor row_dot = g.io(kRowDot, kF32, s.row(), s.row_stride());  // workspace
  const Tensor dq_acc = g.io(kDQAcc, kF32, s.full_head(), s.full_head_stride());  // workspace
  std::unique_ptr<Tensor> seq_q, seq_k;
  if (padded) {
    seq_q = std::make_unique<Tensor>(g.io(kSeqQ, kI32, {s.b, 1, 1, 1}, {1, 1, 1, 1}));
    seq_k = std::make_unique<Tensor>(g.io(kSeqK, kI32, {s.b, 1, 1, 1}, {1, 1, 1, 1}));
  }
  const Tensor* sq = seq_q.get();
  const Tensor* sk = seq_k.get();
  const bool gqa = s.hq != s.hkv;

  // D = rowsum(dO * O)
  const Tensor dot = g.temp(kF32, s.q(), {s.hq * s.t * s.d, s.t * s.d, s.hq * s.d, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, d_o, &o, nullptr, dot);
  const Tensor dot_sum = g.temp(kF32, s.row(), s.row_stride());
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, dot, dot_sum);
  g.pointwise(CUDNN_POINTWISE_MUL, dot_sum, &one, nullptr, row_dot);

  // P = exp(mask(Q K^T * scale - stats))
  const Tensor qk = g.temp(kF32, s.scores(), s.scores_stride());
  g.matmul(q, kt, qk, sq, sk);
  Tensor scores = g.binary(CUDNN_POINTWISE_SUB, g.binary(CUDNN_POINTWISE_MUL, qk, scale), stats);
  if (padded) scores = padding_mask(g, scores, *sq, *sk, neg_inf);
  const Tensor p = g.unary(CUDNN_POINTWISE_EXP, causal_mask(g, scores, neg_inf));

  // A key-side gradient: out = x^T rhs (x a (Tq, Tk) score-shaped tensor), summed over the group's query heads.
  auto key_grad = [&](const Tensor& x, const Tensor& rhs, const Tensor& out) {
    const Tensor x_t = g.temp(kBf16, s.scores(), s.scores_t_stride());
    g.reshape(x, x_t);
    if (gqa) {
      const Tensor full = g.temp(kBf16, s.full_head(), s.full_head_stride());
      g.matmul(x_t, rhs, full, sk, nullptr, sq);
      g.reduction(CUDNN_REDUCE_TENSOR_ADD, full, out);
    } else {
      g.matmul(x_t, rhs, out, sk, nullptr, sq);
    }
  };

  key_grad(p, d_o, dv);  // dV = P^T dO

  // dS = P * (dO V^T - D) * scale
  const Tensor dp = g.temp(kF32, s.scores(), s.scores_stride());
  g.matmul(d_o, vt, dp, sq, sk);
  const Tensor ds = g.binary(CUDNN_POINTWISE_MUL,
                             g.binary(CUDNN_POINTWISE_MUL, g.binary(CUDNN_POINTWISE_SUB, dp, row_dot), p), scale);

  key_grad(ds, q, dk);  // dK = dS^T Q

  // dQ = dS K, accumulated in fp32, then converted
  const Tensor k = g.temp(kF32, s.kv(), s.kv_stride());  // a virtual view: intermediate type, as cudnn_frontend
  g.reshape(kt, k);
  g.matmul(ds, k, dq_acc, sq, nullptr, sk);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_acc, nullptr, nullptr, dq);
  return g.plan(handle);
}

// ---- plan cache --------------------------------------------------------------------------------------------

constexpr size_t kAlign = 256;
size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

struct Plans {
  bool ok = false;
  std::unique_ptr<Desc> fwd, bwd;
  size_t fwd_ws = 0, bwd_ws = 0;  // engine workspace bytes
  bool padded = false;
  int32_t* seq_lens = nullptr;  // (2, B) device, padded backward only: T for each batch, twice
};

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;  // B, Tq, Tk, Hq, Hkv, d

Shape shape_of(const AttentionDims& d) { return Shape{d.batch, d.tq, d.hq, d.hkv, d.d}; }

Plans build(const AttentionDims& dims) {
  Plans p;
  if (dims.tq != dims.tk) {
    std::fprintf(stderr, "msatrain: cuDNN attention needs Tq == Tk (got %lld, %lld): using our kernel\n",
                 (long long)dims.tq, (long long)dims.tk);
    return p;
  }
  const Shape s = shape_of(dims);
  try {
    cudnnHandle_t h = cudnn_handle();
    auto [fwd, fwd_ws] = forward_plan(s, h);
    p.padded = s.t % 128 != 0 && cudnnGetVersion() < 91600;
    auto [bwd, bwd_ws] = backward_plan(s, p.padded, h);
    p.fwd = std::make_unique<Desc>(std::move(fwd));
    p.bwd = std::make_unique<Desc>(std::move(bwd));
    p.fwd_ws = size_t(fwd_ws);
    p.bwd_ws = size_t(bwd_ws);
    if (p.padded) {
      const std::vector<int32_t> lens(size_t(2 * s.b), int32_t(s.t));
      p.seq_lens = static_cast<int32_t*>(device_alloc(lens.size() * sizeof(int32_t)));  // from the arena, per plan
      CUDA_CHECK(cudaMemcpy(p.seq_lens, lens.data(), lens.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    }
    p.ok = true;
  } catch (const Error& e) {
    std::fprintf(stderr,
                 "msatrain: cuDNN %zu attention unavailable for B %lld T %lld Hq %lld Hkv %lld d %lld, using our "
                 "kernel: %s\n",
                 cudnnGetVersion(), (long long)s.b, (long long)s.t, (long long)s.hq, (long long)s.hkv,
                 (long long)s.d, e.what());
  }
  return p;
}

// Plans by shape, built once per process (a training run calls one or two shapes thousands of times).
const Plans& plans_for(const AttentionDims& dims) {
  static std::mutex mu;
  static std::map<Key, Plans> cache;
  std::lock_guard<std::mutex> lock(mu);
  const Key key{dims.batch, dims.tq, dims.tk, dims.hq, dims.hkv, dims.d};
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, build(dims)).first;
  return it->second;
}

const Plans& supported_plans(const AttentionDims& dims) {
  const Plans& p = plans_for(dims);
  MSA_CHECK(p.ok, "cuDNN attention called for a shape it does not support (check cudnn_attention_supported)");
  return p;
}

void execute(const Desc& plan, const std::vector<std::pair<int64_t, const void*>>& tensors, void* workspace,
             cudaStream_t stream) {
  cudnnHandle_t h = cudnn_handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
  for (const auto& [uid, ptr] : tensors) {
    uids.push_back(uid);
    ptrs.push_back(const_cast<void*>(ptr));
  }
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  DNN_SET(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(uids.size()), uids.data());
  DNN_SET(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(ptrs.size()), ptrs.data());
  DNN_SET(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  pack.finalize();
  CUDNN_CHECK(cudnnBackendExecute(h, plan.get(), pack.get()));
}

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
constexpr float kOneValue = 1.0f;

}  // namespace

bool cudnn_attention_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("MSATRAIN_ATTENTION");
    const std::string v = e ? e : "";
    if (v.empty() || v == "cudnn") return true;
    if (v == "own") return false;
    throw UserError("MSATRAIN_ATTENTION=" + v + ": expected own or cudnn");
  }();
  return on;
}

bool cudnn_attention_supported(const AttentionDims& dims) { return plans_for(dims).ok; }

size_t cudnn_attention_forward_workspace_bytes(const AttentionDims& dims) {
  return aligned(supported_plans(dims).fwd_ws);
}

size_t cudnn_attention_backward_workspace_bytes(const AttentionDims& dims) {
  const size_t rows = size_t(dims.batch * dims.hq * dims.tq);
  return aligned(supported_plans(dims).bwd_ws) + aligned(rows * sizeof(float)) +
         aligned(rows * size_t(dims.d) * sizeof(float));
}

void cudnn_attention_forward(__nv_bfloat16* o, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, const AttentionDims& dims, void* workspace,
                             cudaStream_t stream) {
  const Plans& p = supported_plans(dims);
  const float scale = dims.scale;
  execute(*p.fwd, {{kQ, q}, {kK, k}, {kV, v}, {kO, o}, {kStats, lse}, {kScale, &scale}, {kNegInf, &kMinusInf}},
          workspace, stream);
}

void cudnn_attention_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout,
                              const __nv_bfloat16* o, const float* lse, const __nv_bfloat16* q,
                              const __nv_bfloat16* k, const __nv_bfloat16* v, const AttentionDims& dims,
                              void* workspace, cudaStream_t stream) {
  const Plans& p = supported_plans(dims);
  const float scale = dims.scale;
  // Workspace: [engine | rowsum(dO * O) (B, Hq, T) fp32 | dQ accumulator (B, Hq, T, d) fp32]
  char* ws = static_cast<char*>(workspace);
  void* row_dot = ws + aligned(p.bwd_ws);
  void* dq_acc = ws + aligned(p.bwd_ws) + aligned(size_t(dims.batch * dims.hq * dims.tq) * sizeof(float));
  std::vector<std::pair<int64_t, const void*>> t = {
      {kQ, q},          {kK, k},         {kV, v},          {kO, o},           {kDO, dout},       {kStats, lse},
      {kDQ, dq},        {kDK, dk},       {kDV, dv},        {kScale, &scale},  {kNegInf, &kMinusInf},
      {kOne, &kOneValue}, {kRowDot, row_dot}, {kDQAcc, dq_acc}};
  if (p.padded) {
    t.push_back({kSeqQ, p.seq_lens});
    t.push_back({kSeqK, p.seq_lens + dims.batch});
  }
  execute(*p.bwd, t, workspace, stream);
}

}  // namespace msa::cuda
