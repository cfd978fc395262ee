// CUDNN_CHECK: like CUDA_CHECK for cuDNN status codes; the message carries cuDNN's own last error text.
#pragma once
#include <cudnn.h>

#include <string>

#include "kernels/cuda/cuda_check.h"

namespace msa::cuda {
// "cuDNN status NAME: <cuDNN's last error message>"
std::string cudnn_status_message(cudnnStatus_t status);
}  // namespace msa::cuda

#define CUDNN_CHECK(stmt)                                                                               \
  do {                                                                                                  \
    cudnnStatus_t msa_cudnn_st_ = (stmt);                                                               \
    if (msa_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                                          \
      ::msa::cuda::fail(::msa::cuda::cudnn_status_message(msa_cudnn_st_), #stmt, __FILE__, __LINE__);  \
  } while (0)
