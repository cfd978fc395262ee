// ON_GPU(t, call): in an op's dispatch, hand a device tensor's call to the CUDA ops (ops_cuda.h) when this build
// has them, and name the problem when it does not. Included by the dispatching .cpp files only.
#pragma once
#include "core/error.h"

#if MSATRAIN_HAVE_CUDA
#include "ops/ops_cuda.h"
#define ON_GPU(t, call) \
  if ((t).device() == Device::cuda) return call
#else
#define ON_GPU(t, call) MSA_CHECK((t).device() == Device::cpu, "device tensors need the CUDA backend")
#endif
