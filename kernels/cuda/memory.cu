#include <sstream>

#include "core/error.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/memory.h"
#include "kernels/cuda/runtime.h"

namespace msa::cuda {

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    std::ostringstream os;
    os << "out of GPU memory: allocating " << bytes << " bytes with " << (free_b >> 20) << " MiB free of "
       << (total_b >> 20) << " MiB (" << cudaGetErrorString(err) << ")";
    fail(os.str(), "cudaMalloc", __FILE__, __LINE__);
  }
  return p;
}

void device_free(void* ptr) noexcept { cudaFree(ptr); }

void copy_bytes(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (bytes == 0) return;
  const cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                              : cudaMemcpyDeviceToDevice;
  cudaStream_t s = compute_stream();
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, s));
  if (kind != CopyKind::device_to_device) CUDA_CHECK(cudaStreamSynchronize(s));  // host memory is pageable
}

void upload_async(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, compute_stream()));
}

void zero_bytes(void* ptr, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, compute_stream()));
}

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(compute_stream())); }

}  // namespace msa::cuda
