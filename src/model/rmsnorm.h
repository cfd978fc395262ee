// RMSNorm layer over the last dimension with a learned scale.
#pragma once
#include "model/param.h"

namespace msa {

class RMSNorm {
 public:
  RMSNorm(const std::string& name, int64_t rows, int64_t dim, double eps, DType dtype, Device device);
  // x (rows, dim) -> out() (rows, dim)
  const Tensor& forward(const Tensor& x);
  // dx += d/dx given dy; weight grad accumulated. x is the forward's input.
  void backward(Tensor& dx, const Tensor& dy, const Tensor& x);
  const Tensor& out() const { return out_; }
  void collect(ParamList& ps) { ps.push_back(&weight_); }
  Param& weight() { return weight_; }

 private:
  Param weight_;  // (dim), initialised to 1
  double eps_;
  Tensor out_;    // (rows, dim)
  Tensor rstd_;   // (rows)
};

}  // namespace msa
