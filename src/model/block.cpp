#include "model/block.h"

#include "model/attention_gqa.h"
#include "model/attention_msa.h"
#include "model/moe_ffn.h"
#include "ops/ops.h"

namespace msa {

namespace {
std::string layer_name(int layer, const char* part) { return "layers." + std::to_string(layer) + "." + part; }
}  // namespace

Block::Block(int layer, LayerContext& ctx, bool use_msa, bool use_moe)
    : ctx_(ctx),
      norm1_(layer_name(layer, "attn_norm"), ctx.rows(), ctx.cfg.d_model, ctx.cfg.norm_eps, ctx.dtype, ctx.device),
      norm2_(layer_name(layer, "ffn_norm"), ctx.rows(), ctx.cfg.d_model, ctx.cfg.norm_eps, ctx.dtype, ctx.device),
      attn_(use_msa ? std::unique_ptr<AttentionLayer>(std::make_unique<AttentionMSA>(layer_name(layer, "attn"), ctx))
                    : std::make_unique<AttentionGQA>(layer_name(layer, "attn"), ctx)),
      ffn_(use_moe ? std::unique_ptr<FFNLayer>(std::make_unique<MoEFFN>(layer_name(layer, "ffn"), ctx))
                   : std::make_unique<SwiGLUFFN>(layer_name(layer, "ffn"), ctx)),
      mid_(Tensor::zeros({ctx.rows(), ctx.cfg.d_model}, ctx.dtype, ctx.device)),
      out_(Tensor::zeros({ctx.rows(), ctx.cfg.d_model}, ctx.dtype, ctx.device)) {}

void Block::collect(ParamList& ps) {
  norm1_.collect(ps);
  attn_->collect(ps);
  norm2_.collect(ps);
  ffn_->collect(ps);
}

const Tensor& Block::forward(const Tensor& x) {
  x_ = x;
  mid_.copy_from(x);
  ops::add_inplace(mid_, attn_->forward(norm1_.forward(x)));
  out_.copy_from(mid_);
  ops::add_inplace(out_, ffn_->forward(norm2_.forward(mid_)));
  return out_;
}

void Block::backward(Tensor& dres) {
  // dres = d/d(out); the residual passes it straight to mid, the FFN branch adds through norm2.
  ffn_->backward(ctx_.d_norm, dres, norm2_.out());
  norm2_.backward(dres, ctx_.d_norm, mid_);
  // dres = d/d(mid); likewise through the attention branch to x.
  attn_->backward(ctx_.d_norm, dres, norm1_.out());
  norm1_.backward(dres, ctx_.d_norm, x_);
}

}  // namespace msa
