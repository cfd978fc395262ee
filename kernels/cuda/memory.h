// Device memory for Tensor storage and op workspaces: one arena per process (a reserved address range backed as
// it grows; freed blocks are reused), copies and memset on the compute stream. Host code. Buffers are made when
// the model is built and in the first step; the steady-state step allocates nothing (device_allocations() is
// the check).
#pragma once
#include <cstddef>
#include <cstdint>

namespace msa::cuda {

enum class CopyKind { host_to_device, device_to_host, device_to_device };

void* device_alloc(size_t bytes);  // throws msa::Error naming the size when the GPU is out of memory
void device_free(void* ptr) noexcept;  // waits for the GPU's queued work before the block can be reused
int64_t device_allocations();           // device_alloc calls since the process started
size_t device_arena_mapped_bytes();     // physical memory the arena holds (0 on the cudaMalloc fallback)
// Ordered after earlier work on the compute stream; copies to the host wait for it.
void copy_bytes(void* dst, const void* src, size_t bytes, CopyKind kind);
// Host to device on the compute stream without waiting: the driver stages pageable host memory before the call
// returns, so src may be reused at once (small uploads such as row lists; src must not be pinned memory).
void upload_async(void* dst, const void* src, size_t bytes);
void zero_bytes(void* ptr, size_t bytes);
void synchronize();  // the compute stream

}  // namespace msa::cuda
