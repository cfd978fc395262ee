#include <cstdlib>
#include <sstream>

#include "core/error.h"
#include "kernels/cuda/cuda_check.h"

namespace msa::cuda {

int process_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return -1;
}

void fail(const std::string& what, const char* stmt, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);
  std::ostringstream os;
  os << "CUDA error: " << what << " in `" << stmt << "` at " << file << ":" << line << " (rank " << process_rank()
     << ", device " << device << ")";
  throw Error(os.str());
}

}  // namespace msa::cuda
