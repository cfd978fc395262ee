// The whole dense model on the GPU (bf16 compute, fp32 master weights) against the CPU backend (fp32), from the
// same weights and tokens: the first step's loss and per-parameter gradient norms, then 50 AdamW steps whose
// loss curves must track each other within bf16 tolerance.
#include <cmath>

#include "core/rng.h"
#include "kernels/cuda/memory.h"
#include "model/transformer.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {
namespace {

ModelConfig gpu_test_config() {
  ModelConfig c;
  c.vocab_size = 320;  // not a multiple of anything nice, on purpose
  c.d_model = 256;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.ffn_hidden = 512;
  c.seq_len = 128;
  c.qk_norm = true;
  c.rotary_fraction = 0.5;
  c.tie_embeddings = false;
  return c;
}

// Copies every master weight of `from` into `to` (same architecture, any device).
void copy_weights(Transformer& to, Transformer& from) {
  for (size_t i = 0; i < to.params().size(); ++i) to.params()[i]->assign(from.params()[i]->master.to_vector());
}

// A learnable stream: token t+1 = (a * token t + b) mod V with a few random restarts, so the loss falls fast.
void make_batch(Tensor& tokens, Tensor& targets, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  const int64_t n = tokens.numel();
  std::vector<double> tok(n), tgt(n);
  int64_t cur = int64_t(rng.next_u64() % vocab);
  for (int64_t i = 0; i < n; ++i) {
    tok[i] = double(cur);
    cur = (rng.next_u64() % 16 == 0) ? int64_t(rng.next_u64() % vocab) : (cur * 7 + 3) % vocab;
    tgt[i] = double(cur);
  }
  tgt[5] = -1;  // an ignored position
  tokens.from_vector(tok);
  targets.from_vector(tgt);
}

TEST(CudaModel, FirstStepLossAndGradientsMatchCpuThen50StepsTrack) {
  SKIP_WITHOUT_GPU();
  const ModelConfig cfg = gpu_test_config();
  const int64_t b = 2, t = cfg.seq_len, n = b * t;
  Transformer cpu(cfg, DType::f32, Device::cpu, b, t), gpu(cfg, DType::bf16, Device::cuda, b, t);
  Rng rng(11);
  cpu.init_weights(rng);
  copy_weights(gpu, cpu);

  Tensor tok_h = Tensor::empty({b, t}, DType::i32), tgt_h = Tensor::empty({b, t}, DType::i32);
  Tensor tok_d = Tensor::empty({b, t}, DType::i32, Device::cuda), tgt_d = Tensor::empty({b, t}, DType::i32, Device::cuda);
  const double w = 1.0 / double(n);

  // First step: loss and every gradient's norm.
  make_batch(tok_h, tgt_h, cfg.vocab_size, 1);
  tok_d.copy_from(tok_h);
  tgt_d.copy_from(tgt_h);
  cpu.zero_grads();
  gpu.zero_grads();
  const double loss_cpu = cpu.forward(tok_h, tgt_h, w) * w;
  const double loss_gpu = gpu.forward(tok_d, tgt_d, w) * w;
  cpu.backward();
  gpu.backward();
  EXPECT_NEAR(loss_gpu, loss_cpu, 5e-3 * loss_cpu);
  for (size_t i = 0; i < cpu.params().size(); ++i) {
    const double gc = std::sqrt(ops::sum_squares(cpu.params()[i]->grad));
    const double gg = std::sqrt(ops::sum_squares(gpu.params()[i]->grad));
    EXPECT_NEAR(gg, gc, 3e-2 * gc + 1e-7) << cpu.params()[i]->name;
    const double err = rel_error(
        [&] { auto v = gpu.params()[i]->grad.to_vector(); return std::vector<float>(v.begin(), v.end()); }(),
        [&] { auto v = cpu.params()[i]->grad.to_vector(); return std::vector<float>(v.begin(), v.end()); }());
    EXPECT_LT(err, 6e-2) << cpu.params()[i]->name << " gradient direction";
  }

  // 50 steps of AdamW on both, on one fixed batch (a smooth, monotone curve: with fresh small batches and a high
  // learning rate the trajectories are chaotic and bf16 rounding alone moves them apart); they must stay together.
  TrainConfig tc;
  tc.lr = 1e-3;
  AdamW opt_cpu(cpu.params(), tc), opt_gpu(gpu.params(), tc);
  double first = 0, last_cpu = 0, last_gpu = 0;
  int64_t allocs_after_first_steps = 0;
  for (int step = 0; step < 50; ++step) {
    if (step == 2) allocs_after_first_steps = cuda::device_allocations();  // GEMM plans, scratch: made by now
    if (step == 0) {
      make_batch(tok_h, tgt_h, cfg.vocab_size, 100);
      tok_d.copy_from(tok_h);
      tgt_d.copy_from(tgt_h);
    }
    cpu.zero_grads();
    gpu.zero_grads();
    last_cpu = cpu.forward(tok_h, tgt_h, w) * w;
    last_gpu = gpu.forward(tok_d, tgt_d, w) * w;
    cpu.backward();
    gpu.backward();
    opt_cpu.step(tc.lr, 1.0);
    opt_gpu.step(tc.lr, 1.0);
    if (step == 0) first = last_cpu;
    EXPECT_NEAR(last_gpu, last_cpu, 0.03 * last_cpu + 0.02) << "step " << step;
  }
  EXPECT_LT(last_cpu, 0.5 * first) << "the model should learn the stream";
  EXPECT_EQ(cuda::device_allocations(), allocs_after_first_steps) << "the steady-state step allocated device memory";
  EXPECT_NEAR(last_gpu, last_cpu, 0.05 * last_cpu + 0.02);
}

}  // namespace
}  // namespace msa::test
