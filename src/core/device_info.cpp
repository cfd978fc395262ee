#include "core/device_info.h"

#ifdef MSATRAIN_HAVE_CUDA
#include "kernels/cuda/device_query.h"
#endif

namespace msa {

#ifdef MSATRAIN_HAVE_CUDA
bool cuda_backend_built() { return true; }
int cuda_device_count() { return cuda::device_count(); }
std::string cuda_device_summary() { return cuda::device_summary(); }
#else
bool cuda_backend_built() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_summary() { return "CUDA backend not built (no nvcc at configure time)"; }
#endif

}  // namespace msa
