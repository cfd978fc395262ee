// CUBLAS_CHECK: like CUDA_CHECK for cuBLAS / cuBLASLt status codes.
#pragma once
#include <cublas_api.h>

#include <string>

#include "kernels/cuda/cuda_check.h"

#define CUBLAS_CHECK(stmt)                                                                               \
  do {                                                                                                   \
    cublasStatus_t msa_blas_st_ = (stmt);                                                                \
    if (msa_blas_st_ != CUBLAS_STATUS_SUCCESS)                                                           \
      ::msa::cuda::fail(std::string("cuBLAS status ") + std::to_string(int(msa_blas_st_)), #stmt, __FILE__, \
                        __LINE__);                                                                       \
  } while (0)
