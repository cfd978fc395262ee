#include "train/gradient_reducer.h"

#include <cstdlib>

#include "core/device.h"

#if MSATRAIN_HAVE_CUDA
#include "kernels/cuda/nccl_group.h"
#endif

namespace msa {

#if MSATRAIN_HAVE_CUDA
struct GradientReducer::Nccl {
  cuda::NcclGroup group;
  explicit Nccl(Comm& world)
      : group(world.rank(), world.size(), [&](void* data, int64_t bytes) { world.broadcast(data, bytes, 0); }) {}
};
#else
struct GradientReducer::Nccl {};
#endif

GradientReducer::GradientReducer(const ParamList& params, Comm& world, Comm& ep_dp, bool use_nccl)
    : params_(params), world_(world), ep_dp_(ep_dp) {
#if MSATRAIN_HAVE_CUDA
  if (use_nccl) nccl_ = std::make_unique<Nccl>(world);
  // Experts sum over ep_dp: the world's communicator when that is the world (ep = 1), else one of its own.
  if (use_nccl && ep_dp.size() > 1 && ep_dp.size() < world.size()) ep_dp_nccl_ = std::make_unique<Nccl>(ep_dp);
#else
  MSA_CHECK(!use_nccl, "NCCL needs the CUDA backend");
#endif
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::ready(const ParamList& done) {
#if MSATRAIN_HAVE_CUDA
  if (!nccl_) return;
  Nccl* expert_group = ep_dp_.size() == world_.size() ? nccl_.get() : ep_dp_nccl_.get();
  for (Param* p : done) {
    Nccl* group = p->expert >= 0 ? expert_group : nccl_.get();
    if (!group || !started_.insert(p).second) continue;  // no group: ep_dp has one rank, nothing to sum
    group->group.allreduce_sum_async(static_cast<float*>(p->grad.raw()), p->grad.numel());
  }
#endif
}

void GradientReducer::finish() {
  ready(params_);  // NCCL: everything not started yet (the embedding, whose gradient completes last)
  for (Param* p : params_) {
    if (started_.count(p)) continue;
    (p->expert >= 0 ? ep_dp_ : world_).allreduce_sum(p->grad);
  }
#if MSATRAIN_HAVE_CUDA
  if (nccl_) nccl_->group.join();
  if (ep_dp_nccl_) ep_dp_nccl_->group.join();
#endif
  started_.clear();
}

bool nccl_usable(int world_size) {
  if (world_size < 2) return false;
  if (const char* env = std::getenv("MSATRAIN_NCCL"); env && std::string(env) == "0") return false;
  int local_ranks = 0;  // unknown (no launcher variable): assume ranks may share a GPU, take the host path
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
    if (const char* v = std::getenv(var)) {
      local_ranks = std::atoi(v);
      break;
    }
  return local_ranks >= 1 && gpu_count() >= local_ranks;
}

}  // namespace msa
