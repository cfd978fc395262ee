// The attention slot of a block: dense GQA or MSA. Both read the normed layer input and write (N, C).
#pragma once
#include "core/tensor.h"
#include "model/param.h"

namespace msa {

// What an MSA layer measured in its last forward (spec §4 metrics); zero for dense layers.
struct MsaLayerStats {
  double kl_sum = 0;          // sum over (t, g) rows of KL(teacher || student)
  double recall_sum = 0;      // sum over rows of the dense attention mass inside the selected blocks
  double selected_share_sum = 0;
  int64_t rows = 0;           // (t, g) rows in the sums
  bool recall_measured = false;
  double objective = 0;       // kl_coef * weights.kl / Hkv * kl_sum: this layer's term of the trained loss
};

class AttentionLayer {
 public:
  virtual ~AttentionLayer() = default;
  virtual const Tensor& forward(const Tensor& x) = 0;                          // x (N, C) -> (N, C)
  virtual void backward(Tensor& dx, const Tensor& dout, const Tensor& x) = 0;  // dx (N, C) written
  virtual void collect(ParamList& ps) = 0;
  virtual MsaLayerStats msa_stats() const { return {}; }
  // (query, KV group, key) triples the last forward's Main Branch attended (the work context parallel balances).
  virtual int64_t attended_pairs() const = 0;
};

}  // namespace msa
