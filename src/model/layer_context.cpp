#include "model/layer_context.h"

#include <cmath>
#include <numeric>

#include "config/load.h"
#include "model/context_parallel.h"

namespace msa {

namespace {

// cos and sin (T, rot/2) of pos * theta^(-2i/rot), the angle in double so that 1M-token positions keep precision.
void rope_tables(Tensor& cos_t, Tensor& sin_t, const std::vector<int32_t>& pos, int64_t rot, double theta,
                 DType dtype, Device device) {
  const int64_t seq = static_cast<int64_t>(pos.size()), half = rot / 2;
  cos_t = Tensor::empty({seq, half}, dtype, device);
  sin_t = Tensor::empty({seq, half}, dtype, device);
  std::vector<double> c(seq * half), s(seq * half);
  for (int64_t t = 0; t < seq; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(pos[t]) * std::pow(theta, -2.0 * double(i) / double(rot));
      c[t * half + i] = std::cos(a);
      s[t * half + i] = std::sin(a);
    }
  cos_t.from_vector(c);
  sin_t.from_vector(s);
}

}  // namespace

LayerContext::LayerContext(const ModelConfig& c, const AttentionConfig& a, DType dt, Device dev, int64_t b, int64_t t)
    : cfg(c), attn(a), dtype(dt), device(dev), batch(b), seq(t), key_seq(t) {
  rot_dims = rotary_dims(c);
  index_rot_dims = std::llround(c.rotary_fraction * double(a.index_head_dim));
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
  positions = Tensor::empty({seq}, DType::i32, device);
  std::vector<double> p(pos.begin(), pos.end());
  positions.from_vector(p);
  rope_tables(rope_cos, rope_sin, pos, rot_dims, cfg.rope_theta, stat_dtype(), device);
  rope_tables(index_rope_cos, index_rope_sin, pos, index_rot_dims, cfg.rope_theta, stat_dtype(), device);
  host_positions = pos;
  if (!cp) key_positions = positions, host_key_positions = pos;
  plain_causal = !cp;
  for (size_t i = 0; i < pos.size() && plain_causal; ++i) plain_causal = pos[i] == int32_t(i);
}

void LayerContext::use_context_parallel(ContextParallel& c) {
  MSA_CHECK(c.local_len() == seq, "context parallel over " << c.size() << " ranks holds " << c.local_len()
                                                           << " tokens per rank, the layers were sized for " << seq);
  cp = &c;
  key_seq = c.seq_len();
  set_positions(c.local_positions());
  std::vector<double> all(static_cast<size_t>(key_seq));
  for (int64_t j = 0; j < key_seq; ++j) all[size_t(j)] = double(j);
  key_positions = Tensor::empty({key_seq}, DType::i32, device);
  key_positions.from_vector(all);
  host_key_positions.assign(all.begin(), all.end());
  d_k_all = Tensor::zeros({batch, key_seq, cfg.n_kv_heads, cfg.head_dim}, dtype, device);
  d_v_all = Tensor::zeros({batch, key_seq, cfg.n_kv_heads, cfg.head_dim}, dtype, device);
}

}  // namespace msa
