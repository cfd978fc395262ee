// Which compute device this process uses. The one place outside kernels/ and ops/ that knows whether the build
// has a CUDA backend.
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace msa {

// Device::cuda for "cuda", Device::cpu for "cpu" (the config's `device` key).
Device parse_device(const std::string& name);
// The dtype layers compute in on that device: bf16 on the GPU, fp32 on the CPU.
DType compute_dtype(Device d);
// Binds this process to a GPU (local rank modulo the GPUs of the node) and returns a one-line description.
// Throws UserError when the build has no CUDA backend or the machine no GPU.
std::string bind_gpu();
// GPUs this process can see (0 without the CUDA backend or a driver).
int gpu_count();
// Waits for the GPU's queued work (timings); no-op on the CPU.
void synchronize(Device d);
// GPU memory in use on this process's device (all processes, as the driver reports it), in GiB; 0 on the CPU.
double device_memory_used_gib(Device d);
// Device buffers allocated since the process started (the arena's count; 0 on the CPU): a step that
// allocates nothing leaves it unchanged.
int64_t device_allocation_count(Device d);
// Physical memory held by the GPU arena (kernels/cuda/memory.h), in GiB; 0 on the CPU.
double device_arena_gib(Device d);
// The per-op GPU time table when MSATRAIN_PROFILE_OPS=1 (kernels/cuda/op_profile.h), else "".
std::string device_profile_report();
void device_profile_reset();

// Names the GPU work queued while it lives (code outside ops/, e.g. an exchange) in that per-op table; nothing
// on the CPU or when profiling is off.
class ProfileScope {
 public:
  ProfileScope(Device d, const char* name);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace msa
