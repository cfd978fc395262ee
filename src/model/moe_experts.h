// A set of SwiGLU experts run as grouped GEMMs over their gathered rows: rows [offsets[g], offsets[g+1]) of the
// input go through expert g. The MoE layer holds its local routed experts in one set and its shared experts
// (one SwiGLU of width shared_experts x d_ff over every token) in another.
#pragma once
#include <vector>

#include "model/param.h"

namespace msa {

class ExpertSet {
 public:
  // names[g]: the parameter prefix of expert g (".w13" (2F, C) and ".w2" (C, F) are appended); ids[g]: its
  // global routed-expert id (Param::expert), or -1 for experts that every rank holds.
  ExpertSet(const std::vector<std::string>& names, const std::vector<int64_t>& ids, int64_t d_model, int64_t hidden,
            DType dtype, Device device);
  // y (R, C) written from x (R, C); x must stay unchanged until backward.
  void forward(Tensor& y, const Tensor& x, const std::vector<int64_t>& offsets);
  // dx (R, C) written from dy (R, C); weight grads accumulated.
  void backward(Tensor& dx, const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets);
  void collect(ParamList& ps);
  int64_t size() const { return int64_t(w13_.size()); }

 private:
  int64_t hidden_;
  DType dtype_;
  Device device_;
  std::vector<Param> w13_;  // (2F, C) each: gate rows then up rows
  std::vector<Param> w2_;   // (C, F) each
  // Row buffers, grown when a forward routes more rows than they hold (routing varies by step).
  Tensor gu_buf_, h_buf_, dh_buf_, dgu_buf_;
  Tensor gu_, h_;  // views of the last forward: (R, 2F), (R, F)
};

// A (rows, cols) view of buf's leading rows; buf is reallocated (larger, contents lost) when too small.
Tensor grow_rows(Tensor& buf, int64_t rows, int64_t cols, DType dtype, Device device);

}  // namespace msa
