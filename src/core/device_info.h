// What accelerators this process can see. Without the CUDA backend compiled in, there are none.
#pragma once
#include <string>

namespace msa {

bool cuda_backend_built();
int cuda_device_count();       // 0 without the backend or without a GPU
std::string cuda_device_summary();  // "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" per device, or why there is none

}  // namespace msa
