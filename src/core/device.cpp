#include "core/device.h"

#include <cstdlib>

#if MSATRAIN_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/device_query.h"
#include "kernels/cuda/memory.h"
#include "kernels/cuda/op_profile.h"
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

int gpu_count() {
#if MSATRAIN_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

void synchronize(Device d) {
#if MSATRAIN_HAVE_CUDA
  if (d == Device::cuda) cuda::synchronize();
#endif
}

double device_memory_used_gib(Device d) {
#if MSATRAIN_HAVE_CUDA
  if (d == Device::cuda) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return double(total_b - free_b) / double(1ull << 30);
  }
#endif
  return 0.0;
}

int64_t device_allocation_count(Device d) {
#if MSATRAIN_HAVE_CUDA
  if (d == Device::cuda) return cuda::device_allocations();
#endif
  (void)d;
  return 0;
}

double device_arena_gib(Device d) {
#if MSATRAIN_HAVE_CUDA
  if (d == Device::cuda) return double(cuda::device_arena_mapped_bytes()) / double(1ull << 30);
#endif
  (void)d;
  return 0.0;
}

void device_profile_reset() {
#if MSATRAIN_HAVE_CUDA
  cuda::profile_reset();
#endif
}

std::string device_profile_report() {
#if MSATRAIN_HAVE_CUDA
  return cuda::profile_report();
#else
  return "";
#endif
}

#if MSATRAIN_HAVE_CUDA
struct ProfileScope::Impl {
  cuda::OpScope scope;
  explicit Impl(const char* name) : scope(name) {}
};
ProfileScope::ProfileScope(Device d, const char* name) {
  if (d == Device::cuda && cuda::profiling_enabled()) impl_ = std::make_unique<Impl>(name);
}
#else
struct ProfileScope::Impl {};
ProfileScope::ProfileScope(Device, const char*) {}
#endif
ProfileScope::~ProfileScope() = default;

}  // namespace msa
