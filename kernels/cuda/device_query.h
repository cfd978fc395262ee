// Device discovery through the CUDA runtime (host code; compiled by nvcc with the rest of kernels/cuda).
#pragma once
#include <string>

namespace msa::cuda {

int device_count();          // 0 when no driver or no GPU is present
std::string device_summary();

}  // namespace msa::cuda
