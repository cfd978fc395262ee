// Learning rate at a step: linear warmup from 0 to lr over warmup_steps, then cosine or linear decay to min_lr
// at the last step (or constant).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "config/config.h"

namespace msa {

inline double lr_at(int64_t step, const TrainConfig& c) {  // step is 0-based
  if (step < c.warmup_steps) return c.lr * double(step + 1) / double(c.warmup_steps);
  if (c.decay == "constant") return c.lr;
  const int64_t span = c.steps - c.warmup_steps;
  const double p = span <= 1 ? 1.0 : std::min(1.0, double(step - c.warmup_steps) / double(span - 1));
  if (c.decay == "linear") return c.lr - (c.lr - c.min_lr) * p;
  return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + std::cos(M_PI * p));  // cosine
}

}  // namespace msa
