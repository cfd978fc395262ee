// One check for every CUDA, cuBLAS, cuDNN and NCCL call: on failure it throws msa::Error naming the statement,
// file, line, MPI rank and device (the CLI then aborts every rank). Host code; usable from .cu and .cpp files.
#pragma once
#include <cuda_runtime.h>

#include <string>

namespace msa::cuda {

// Throws msa::Error with "<what> in `stmt` at file:line (rank R, device D)".
[[noreturn]] void fail(const std::string& what, const char* stmt, const char* file, int line);
// The MPI rank for messages (from the launcher's environment; -1 when unknown).
int process_rank();

}  // namespace msa::cuda

#define CUDA_CHECK(stmt)                                                              \
  do {                                                                                \
    cudaError_t msa_cuda_err_ = (stmt);                                               \
    if (msa_cuda_err_ != cudaSuccess)                                                 \
      ::msa::cuda::fail(cudaGetErrorString(msa_cuda_err_), #stmt, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: catches bad launch configurations at once (execution errors surface at the next sync).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
