// Gradient checks (double, central differences) for every layer of the dense model and for the model's loss.
#include <gtest/gtest.h>

#include "gradcheck.h"
#include "model/attention_gqa.h"
#include "model/block.h"
#include "model/rmsnorm.h"
#include "model/swiglu_ffn.h"
#include "model/transformer.h"
#include "ops/ops.h"

namespace msa {
namespace {

using test::expect_gradient;
using test::random_tensor;
using test::weighted_sum;

ModelConfig small_config() { return test::small_model_config(11, 7); }

// Checks a layer with signature forward(x) -> out, backward(dx, dout, x) against finite differences, for the
// input and every parameter, with loss = sum(out * r).
template <class Layer>
void check_layer(const std::string& what, Layer& layer, LayerContext& ctx, Rng& rng, bool dx_accumulates) {
  const int64_t n = ctx.rows(), c = ctx.cfg.d_model;
  Tensor x = random_tensor({n, c}, rng);
  Tensor r = random_tensor({n, c}, rng);
  ParamList ps;
  layer.collect(ps);
  test::randomise(ps, rng, 0.3);
  auto loss = [&] { return weighted_sum(layer.forward(x), r); };
  loss();
  for (Param* p : ps) p->grad.zero_();
  Tensor dx = Tensor::zeros({n, c}, DType::f64);
  layer.backward(dx, r, x);
  (void)dx_accumulates;
  expect_gradient(what + " dx", x, dx, loss);
  for (Param* p : ps) expect_gradient(what + " " + p->name, p->value, p->grad, loss);
}

TEST(Gradcheck, RMSNorm) {
  Rng rng(1);
  RMSNorm norm("norm", 5, 8, 1e-5, DType::f64, Device::cpu);
  ParamList ps;
  norm.collect(ps);
  test::randomise(ps, rng, 0.5);
  Tensor x = random_tensor({5, 8}, rng), r = random_tensor({5, 8}, rng);
  auto loss = [&] { return weighted_sum(norm.forward(x), r); };
  loss();
  Tensor dx = Tensor::zeros({5, 8}, DType::f64);
  norm.backward(dx, r, x);
  expect_gradient("rmsnorm dx", x, dx, loss);
  expect_gradient("rmsnorm w", ps[0]->value, ps[0]->grad, loss);
}

TEST(Gradcheck, AttentionGQAWithQKNormAndPartialRope) {
  Rng rng(2);
  LayerContext ctx(small_config(), DType::f64, Device::cpu, 2, 7);
  AttentionGQA attn("attn", ctx);
  check_layer("attention", attn, ctx, rng, false);
}

TEST(Gradcheck, AttentionGQAPlain) {
  Rng rng(3);
  ModelConfig cfg = small_config();
  cfg.qk_norm = false;
  cfg.rotary_fraction = 1.0;
  cfg.n_kv_heads = 1;  // one group of 4 heads
  LayerContext ctx(cfg, DType::f64, Device::cpu, 1, 9);
  AttentionGQA attn("attn", ctx);
  check_layer("attention", attn, ctx, rng, false);
}

TEST(Gradcheck, SwiGLU) {
  Rng rng(4);
  LayerContext ctx(small_config(), DType::f64, Device::cpu, 2, 5);
  SwiGLUFFN ffn("ffn", ctx);
  check_layer("ffn", ffn, ctx, rng, false);
}

TEST(Gradcheck, Block) {
  Rng rng(5);
  LayerContext ctx(small_config(), DType::f64, Device::cpu, 2, 7);
  Block block(0, ctx);
  const int64_t n = ctx.rows(), c = ctx.cfg.d_model;
  ParamList ps;
  block.collect(ps);
  test::randomise(ps, rng, 0.3);
  Tensor x = random_tensor({n, c}, rng), r = random_tensor({n, c}, rng);
  auto loss = [&] { return weighted_sum(block.forward(x), r); };
  loss();
  Tensor dres = Tensor::zeros({n, c}, DType::f64);
  dres.copy_from(r);
  block.backward(dres);
  expect_gradient("block dx", x, dres, loss);
  for (Param* p : ps) expect_gradient("block " + p->name, p->value, p->grad, loss);
}

void check_model(bool tied) {
  Rng rng(6);
  ModelConfig cfg = small_config();
  cfg.tie_embeddings = tied;
  Transformer model(cfg, DType::f64, Device::cpu, 2, 7);
  model.init_weights(rng);
  test::randomise(model.params(), rng, 0.3);
  Tensor tokens = Tensor::empty({2, 7}, DType::i32), targets = Tensor::empty({2, 7}, DType::i32);
  for (int64_t i = 0; i < 14; ++i) {
    tokens.data<int32_t>()[i] = int32_t(rng.next_u64() % cfg.vocab_size);
    targets.data<int32_t>()[i] = i == 3 ? -1 : int32_t(rng.next_u64() % cfg.vocab_size);  // one ignored target
  }
  const double scale = 1.0 / 13.0;
  auto loss = [&] { return scale * model.forward(tokens, targets, 0.0); };
  model.zero_grads();
  model.forward(tokens, targets, scale);
  model.backward();
  for (Param* p : model.params()) expect_gradient("model " + p->name, p->value, p->grad, loss);
}

TEST(Gradcheck, ModelTiedEmbeddings) { check_model(true); }
TEST(Gradcheck, ModelUntiedHead) { check_model(false); }

}  // namespace
}  // namespace msa
