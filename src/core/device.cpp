#include "core/device.h"

#include <cstdlib>

#if MSATRAIN_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/device_query.h"
#include "kernels/cuda/memory.h"
#include "kernels/cuda/runtime.h"
#endif

namespace msa {

Device parse_device(const std::string& name) { return name == "cuda" ? Device::cuda : Device::cpu; }

DType compute_dtype(Device d) { return d == Device::cuda ? DType::bf16 : DType::f32; }

std::string bind_gpu() {
#if MSATRAIN_HAVE_CUDA
  int local_rank = 0;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* v = std::getenv(var)) {
      local_rank = std::atoi(v);
      break;
    }
  const int dev = cuda::use_device(local_rank);
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, dev);
  return "GPU " + std::to_string(dev) + " (" + p.name + ")";
#else
  throw UserError("device: cuda, but this msatrain was built without the CUDA backend (no nvcc at configure time)");
#endif
}

void synchronize(Device d) {
#if MSATRAIN_HAVE_CUDA
  if (d == Device::cuda) cuda::synchronize();
#endif
}

}  // namespace msa
