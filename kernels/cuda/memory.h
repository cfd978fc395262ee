// Device memory for Tensor storage: allocation (at build time only — the step allocates nothing), copies and
// memset on the compute stream. Host code.
#pragma once
#include <cstddef>

namespace msa::cuda {

enum class CopyKind { host_to_device, device_to_host, device_to_device };

void* device_alloc(size_t bytes);  // throws msa::Error naming the size when the GPU is out of memory
void device_free(void* ptr) noexcept;
// Ordered after earlier work on the compute stream; copies to the host wait for it.
void copy_bytes(void* dst, const void* src, size_t bytes, CopyKind kind);
// Host to device on the compute stream without waiting: the driver stages pageable host memory before the call
// returns, so src may be reused at once (small uploads such as row lists; src must not be pinned memory).
void upload_async(void* dst, const void* src, size_t bytes);
void zero_bytes(void* ptr, size_t bytes);
void synchronize();  // the compute stream

}  // namespace msa::cuda
