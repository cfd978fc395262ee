// Mixture-of-Experts feed-forward (docs/moe.md):
//   router: scores (N, E), top-k experts and gates per token
//   dispatch: each kept (token, expert) row goes to the ep rank holding the expert (alltoallv)
//   experts: SwiGLU per local expert, one grouped GEMM over the gathered rows
//   combine: the rows come back the same way; out[t] = sum_j gate[t,j] * expert_j(x[t]) (+ shared experts)
// Assignments over an expert's capacity are dropped: their slot adds nothing, the token passes on through the
// residual. The load-balancing and z losses of the router are added to the objective (stats().objective).
#pragma once
#include <memory>

#include "model/ffn_layer.h"
#include "model/layer_context.h"
#include "model/moe_dispatch.h"
#include "model/moe_experts.h"
#include "model/moe_router.h"

namespace msa {

class MoEFFN final : public FFNLayer {
 public:
  // prefix: "layers.3.ffn"; the routed experts held here are ctx.moe.n_experts / ep consecutive ids starting
  // at ep_rank * that, named prefix.experts.<global id>.
  MoEFFN(const std::string& prefix, LayerContext& ctx);
  const Tensor& forward(const Tensor& x) override;                          // x (N, C) -> (N, C)
  void backward(Tensor& dx, const Tensor& dout, const Tensor& x) override;  // dx (N, C) written
  void collect(ParamList& ps) override;
  MoeLayerStats moe_stats() const override { return stats_; }
  const DispatchPlan& plan() const { return plan_; }  // the last forward's routing (tests)

 private:
  LayerContext& ctx_;
  MoeConfig cfg_;
  MoeRouter router_;
  ExpertSet experts_;                  // the local routed experts
  std::unique_ptr<ExpertSet> shared_;  // shared experts, fused into one SwiGLU of width shared_experts x d_ff
  DispatchPlan plan_;
  std::vector<double> gate_of_row_;  // (A) gate of each sent row
  MoeLayerStats stats_;
  double weight_ = 0;                // ctx.weights.moe at the last forward
  Tensor out_;                       // (N, C)
  Tensor dgates_;                    // (N, k)
  Tensor idx_host_;                  // (N, k) int32: the router's choices on the host (device runs)
  // Row buffers (grown as routing needs): sent (A, C), received (R, C), expert-major (R, C).
  Tensor send_buf_, recv_buf_, xe_buf_, ye_buf_, y_send_buf_;
  Tensor xe_, y_send_;               // the last forward's expert inputs (R, C) and returned outputs (A, C)
};

// Every routed expert's weight tensors in a model (all of them, whichever rank holds them), in layer, expert,
// (w13, w2) order: the names MoEFFN gives its Params, their shapes and global expert ids. Checkpoints list them.
struct ExpertTensor {
  std::string name;
  Shape shape;
  int64_t expert;
};
std::vector<ExpertTensor> global_expert_tensors(const ModelConfig& model, const MoeConfig& moe);

}  // namespace msa
