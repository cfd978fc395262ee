#include <string>

#include "core/error.h"
#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cudnn_check.h"
#include "kernels/cuda/device_query.h"
#include "kernels/cuda/memory.h"
#include "kernels/cuda/runtime.h"

namespace msa::cuda {
namespace {

struct Runtime {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  cudnnHandle_t dnn = nullptr;  // on first use
  void* workspace = nullptr;
  size_t workspace_bytes = 64u << 20;  // cuBLASLt's split-K and Hopper kernels want tens of MiB
  int sms = 0;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  double* slot = nullptr;
  Runtime() {
    // A blocking stream: it orders itself with the legacy default stream, which pageable copies use.
    CUDA_CHECK(cudaStreamCreate(&stream));
    CUBLAS_CHECK(cublasLtCreate(&lt));
    workspace = device_alloc(workspace_bytes);  // every device buffer comes from the arena
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    slot = static_cast<double*>(device_alloc(sizeof(double)));
  }
};

// Function-local static: one per process, built on first use after use_device() (the CUDA context is per
// process too). Never destroyed explicitly: the driver reclaims it at exit, after MPI_Finalize.
Runtime& runtime() {
  static Runtime* r = new Runtime();
  return *r;
}

}  // namespace

int use_device(int local_rank) {
  const int n = device_count();
  if (n == 0) throw UserError("device: cuda, but " + device_summary());
  const int dev = local_rank % n;
  CUDA_CHECK(cudaSetDevice(dev));
  return dev;
}

cudaStream_t compute_stream() { return runtime().stream; }
cublasLtHandle_t blaslt_handle() { return runtime().lt; }
void* blaslt_workspace() { return runtime().workspace; }
size_t blaslt_workspace_bytes() { return runtime().workspace_bytes; }
int sm_count() { return runtime().sms; }

cudnnHandle_t cudnn_handle() {
  Runtime& r = runtime();
  if (!r.dnn) {
    CUDNN_CHECK(cudnnCreate(&r.dnn));
    CUDNN_CHECK(cudnnSetStream(r.dnn, r.stream));
  }
  return r.dnn;
}

std::string cudnn_status_message(cudnnStatus_t status) {
  char last[1024] = {};
  cudnnGetLastErrorString(last, sizeof last);
  return std::string("cuDNN status ") + cudnnGetErrorString(status) + (last[0] ? std::string(": ") + last : "");
}
double* reduction_slot() { return runtime().slot; }

void* scratch(size_t bytes) {
  Runtime& r = runtime();
  if (bytes > r.scratch_bytes) {
    device_free(r.scratch);  // waits for the work that may still use the old buffer
    r.scratch = nullptr;
    r.scratch = device_alloc(bytes);
    r.scratch_bytes = bytes;
  }
  return r.scratch;
}

}  // namespace msa::cuda
