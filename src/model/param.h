// A trainable parameter: the value layers compute with, its master copy, its gradient, and how the optimizer
// treats it. On the CPU (f32 or f64) the master IS the value (shared memory). On the GPU the value is bf16 and
// the master and gradient fp32: AdamW updates the master, then sync_value() rounds it into the value.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace msa {

enum class ParamKind { matrix, norm, embedding };

// Which loss trains a parameter: the backbone learns from the LM loss, MSA's Index Branch only from the KL loss
// (spec §1, §4). The groups are clipped separately, so the KL term's scale cannot distort the backbone update.
enum class ParamGroup { backbone = 0, index = 1 };

struct Param {
  std::string name;  // global name, e.g. "layers.3.attn.wqkv"; checkpoints store tensors under it
  Tensor value;      // compute dtype (bf16 on the GPU)
  Tensor master;     // f32 / f64 master weights: what the optimizer updates and checkpoints store
  Tensor grad;       // master dtype; accumulated over micro-batches, zeroed at the start of each step
  ParamKind kind = ParamKind::matrix;
  ParamGroup group = ParamGroup::backbone;

  Param() = default;
  Param(std::string n, const Shape& shape, DType dtype, Device device, ParamKind k,
        ParamGroup g = ParamGroup::backbone)
      : name(std::move(n)),
        value(Tensor::zeros(shape, dtype, device)),
        master(dtype == DType::bf16 ? Tensor::zeros(shape, DType::f32, device) : value),
        grad(Tensor::zeros(shape, master.dtype(), device)),
        kind(k),
        group(g) {}

  // Sets the master weights (and the value) from host numbers.
  void assign(const std::vector<double>& values) {
    master.from_vector(values);
    sync_value();
  }
  // value = master rounded to the compute dtype (no-op when they share memory).
  void sync_value();
};

using ParamList = std::vector<Param*>;

}  // namespace msa
