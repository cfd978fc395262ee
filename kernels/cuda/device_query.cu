#include <cuda_runtime.h>

#include <sstream>

#include "kernels/cuda/device_query.h"

namespace msa::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_summary() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorString(err);
  }
  std::ostringstream os;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, i);
    os << (i ? "; " : "") << i << ": " << p.name << " (sm_" << p.major << p.minor << ", "
       << (p.totalGlobalMem >> 30) << " GiB)";
  }
  return os.str();
}

}  // namespace msa::cuda
