// The per-process CUDA state every kernel launcher shares: the compute stream, the cuBLASLt handle and its
// workspace, the cuDNN handle. Created on first use on the current device (select it first with use_device); it lives for the
// process, like the CUDA context it belongs to.
#pragma once
#include <cublasLt.h>
#include <cudnn.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace msa::cuda {

// Binds this process to a GPU: local_rank % device_count (ranks of one node share GPUs round-robin).
// Returns the device id. Throws a UserError-style msa::Error when there is no GPU.
int use_device(int local_rank);

cudaStream_t compute_stream();
cublasLtHandle_t blaslt_handle();
void* blaslt_workspace();
size_t blaslt_workspace_bytes();
int sm_count();
// cuDNN's handle, created on first use (loading cuDNN costs time and memory that runs without it need not pay)
// and bound to compute_stream(); a caller on another stream sets its own with cudnnSetStream.
cudnnHandle_t cudnn_handle();
// A grow-only device scratch buffer (op workspaces, reduction results): it reaches its size in the first step
// and is then reused, so the steady-state step allocates nothing. Its contents do not survive the next call.
void* scratch(size_t bytes);
// One double on the device for reductions (separate from scratch, so an op may use both).
double* reduction_slot();

}  // namespace msa::cuda
