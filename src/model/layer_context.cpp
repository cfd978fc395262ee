#include "model/layer_context.h"

#include <cmath>
#include <numeric>

#include "config/load.h"

namespace msa {

LayerContext::LayerContext(const ModelConfig& c, DType dt, Device dev, int64_t b, int64_t t)
    : cfg(c), dtype(dt), device(dev), batch(b), seq(t) {
  rot_dims = rotary_dims(c);
  const int64_t n = rows(), qkv = (c.n_heads + 2 * c.n_kv_heads) * c.head_dim;
  d_norm = Tensor::zeros({n, c.d_model}, dt, dev);
  d_attn = Tensor::zeros({n, c.n_heads * c.head_dim}, dt, dev);
  d_qkv = Tensor::zeros({n, qkv}, dt, dev);
  d_q = Tensor::zeros({b, t, c.n_heads, c.head_dim}, dt, dev);
  d_k = Tensor::zeros({b, t, c.n_kv_heads, c.head_dim}, dt, dev);
  d_v = Tensor::zeros({b, t, c.n_kv_heads, c.head_dim}, dt, dev);
  d_q_pre = Tensor::zeros({n * c.n_heads, c.head_dim}, dt, dev);
  d_k_pre = Tensor::zeros({n * c.n_kv_heads, c.head_dim}, dt, dev);
  d_h = Tensor::zeros({n, c.ffn_hidden}, dt, dev);
  d_gu = Tensor::zeros({n, 2 * c.ffn_hidden}, dt, dev);
  std::vector<int32_t> pos(t);
  std::iota(pos.begin(), pos.end(), 0);
  set_positions(pos);
}

void LayerContext::set_positions(const std::vector<int32_t>& pos) {
  MSA_CHECK(static_cast<int64_t>(pos.size()) == seq, "positions for " << pos.size() << " tokens, layer holds " << seq);
  const int64_t half = rot_dims / 2;
  positions = Tensor::empty({seq}, DType::i32, device);
  rope_cos = Tensor::empty({seq, half}, dtype, device);
  rope_sin = Tensor::empty({seq, half}, dtype, device);
  std::vector<double> c(seq * half), s(seq * half), p(seq);
  for (int64_t t = 0; t < seq; ++t) {
    p[t] = pos[t];
    for (int64_t i = 0; i < half; ++i) {
      // angle in double: large positions (1M tokens) keep their precision
      double freq = std::pow(cfg.rope_theta, -2.0 * double(i) / double(rot_dims));
      double a = double(pos[t]) * freq;
      c[t * half + i] = std::cos(a);
      s[t * half + i] = std::sin(a);
    }
  }
  positions.from_vector(p);
  rope_cos.from_vector(c);
  rope_sin.from_vector(s);
}

}  // namespace msa
