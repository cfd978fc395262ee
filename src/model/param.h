// A trainable parameter: its master value, its gradient (same shape and dtype), and how the optimizer treats it.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace msa {

enum class ParamKind { matrix, norm, embedding };

struct Param {
  std::string name;  // global name, e.g. "layers.3.attn.wqkv"; checkpoints store tensors under it
  Tensor value;
  Tensor grad;       // accumulated over micro-batches, zeroed at the start of each step
  ParamKind kind = ParamKind::matrix;

  Param() = default;
  Param(std::string n, const Shape& shape, DType dtype, Device device, ParamKind k)
      : name(std::move(n)), value(Tensor::zeros(shape, dtype, device)), grad(Tensor::zeros(shape, dtype, device)),
        kind(k) {}
};

using ParamList = std::vector<Param*>;

}  // namespace msa
