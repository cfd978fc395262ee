#include <cuda.h>

#include <memory>
#include <mutex>
#include <sstream>

#include "core/block_allocator.h"
#include "core/error.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/memory.h"
#include "kernels/cuda/runtime.h"

namespace msa::cuda {
namespace {

[[noreturn]] void out_of_memory(size_t bytes, const std::string& why) {
  size_t free_b = 0, total_b = 0;
  cudaGetLastError();
  cudaMemGetInfo(&free_b, &total_b);
  std::ostringstream os;
  os << "out of GPU memory: allocating " << bytes << " bytes with " << (free_b >> 20) << " MiB free of "
     << (total_b >> 20) << " MiB (" << why << ")";
  fail(os.str(), "device_alloc", __FILE__, __LINE__);
}

// The driver's virtual-memory calls, looked up through the runtime: the build links no libcuda, so that the
// binaries start on machines without a driver (CI).
struct Vmm {
  decltype(&::cuDeviceGetAttribute) attribute = nullptr;
  decltype(&::cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&::cuMemAddressReserve) reserve = nullptr;
  decltype(&::cuMemCreate) create = nullptr;
  decltype(&::cuMemMap) map = nullptr;
  decltype(&::cuMemSetAccess) set_access = nullptr;
  decltype(&::cuMemRelease) release = nullptr;

  bool load() {
    return get("cuDeviceGetAttribute", attribute) && get("cuMemGetAllocationGranularity", granularity) && get("cuMemAddressReserve", reserve) &&
           get("cuMemCreate", create) && get("cuMemMap", map) && get("cuMemSetAccess", set_access) &&
           get("cuMemRelease", release);
  }
  template <class F>
  static bool get(const char* name, F& fn) {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess || !p) {
      cudaGetLastError();
      return false;
    }
    fn = reinterpret_cast<F>(p);
    return true;
  }
};

// One arena per process: a virtual address range as large as the GPU's memory, reserved once, backed by
// physical memory up to the allocator's high-water mark (mapped in chunks as it rises, never moved). Freed
// blocks are reused, so a run that builds its buffers once holds one contiguous range of about its peak size.
// Without the driver's virtual memory support every block is its own cudaMalloc (same interface, same count).
class DeviceArena {
 public:
  DeviceArena() {
    CUDA_CHECK(cudaGetDevice(&device_));
    int vmm = 0;
    if (!vmm_.load() ||
        vmm_.attribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device_) != CUDA_SUCCESS || !vmm)
      return;
    prop_.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop_.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop_.location.id = device_;
    size_t gran = 0;
    if (vmm_.granularity(&gran, &prop_, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) != CUDA_SUCCESS || gran == 0) return;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const size_t reserve = (total_b + gran - 1) / gran * gran;
    CUdeviceptr base = 0;
    if (vmm_.reserve(&base, reserve, gran, 0, 0) != CUDA_SUCCESS) return;
    base_ = base;
    granularity_ = gran;
    blocks_ = std::make_unique<BlockAllocator>(reserve, 256);
  }

  void* allocate(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    ++allocations_;
    if (!blocks_) {  // no virtual memory management: one cudaMalloc per block
      void* p = nullptr;
      const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
      if (err != cudaSuccess) out_of_memory(bytes, cudaGetErrorString(err));
      return p;
    }
    const size_t off = blocks_->allocate(bytes);
    if (off == SIZE_MAX) out_of_memory(bytes, "the arena's address range is full");
    map_up_to(off, blocks_->high_water());
    return reinterpret_cast<void*>(base_ + off);
  }

  void free(void* p) {
    if (!p) return;
    // Work still queued on any stream may use the block: reuse only after it is done (frees are rare: buffers
    // grow to their size in the first step and live as long as the model).
    cudaDeviceSynchronize();
    std::lock_guard<std::mutex> lock(mu_);
    if (!blocks_) return void(cudaFree(p));
    blocks_->free(size_t(reinterpret_cast<CUdeviceptr>(p) - base_));
  }

  int64_t allocations() const { return allocations_; }
  size_t mapped() const { return mapped_; }

 private:
  // Maps physical memory over [mapped_, end): chunks of at least 64 MiB (fewer, larger mappings), or exactly
  // what is needed when the GPU has no more than that.
  void map_up_to(size_t off, size_t end) {
    if (end <= mapped_) return;
    const size_t need = (end - mapped_ + granularity_ - 1) / granularity_ * granularity_;
    const size_t chunk = std::max(need, (size_t(64) << 20) / granularity_ * granularity_);
    for (const size_t size : {chunk, need}) {
      if (mapped_ + size > blocks_->capacity()) continue;
      CUmemGenericAllocationHandle h{};
      if (vmm_.create(&h, size, &prop_, 0) != CUDA_SUCCESS) continue;
      const CUdeviceptr at = base_ + mapped_;
      CUmemAccessDesc access{};
      access.location = prop_.location;
      access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      const bool ok = vmm_.map(at, size, 0, h, 0) == CUDA_SUCCESS && vmm_.set_access(at, size, &access, 1) == CUDA_SUCCESS;
      vmm_.release(h);  // the mapping keeps the memory alive
      if (!ok) fail("mapping " + std::to_string(size) + " bytes into the GPU arena failed", "cuMemMap", __FILE__, __LINE__);
      mapped_ += size;
      return;
    }
    blocks_->free(off);
    out_of_memory(end - mapped_, "the arena could not map more physical memory");
  }

  std::mutex mu_;
  int device_ = 0;
  Vmm vmm_;
  CUmemAllocationProp prop_{};
  CUdeviceptr base_ = 0;
  size_t granularity_ = 0, mapped_ = 0;
  std::unique_ptr<BlockAllocator> blocks_;
  int64_t allocations_ = 0;
};

DeviceArena& arena() {
  static DeviceArena* a = new DeviceArena();  // lives for the process, like the CUDA context
  return *a;
}

}  // namespace

void* device_alloc(size_t bytes) { return arena().allocate(bytes); }

void device_free(void* ptr) noexcept {
  try {
    arena().free(ptr);
  } catch (...) {  // a free of an unknown pointer is a bug, but must not throw out of a destructor
  }
}

int64_t device_allocations() { return arena().allocations(); }
size_t device_arena_mapped_bytes() { return arena().mapped(); }

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
