// The NCCL group on one rank: it bootstraps through the given broadcast, and an in-place sum queued between
// compute-stream work leaves the values right. On one rank a sum is the identity, so this cannot show the stream
// ordering itself; that needs two GPUs (not lent so far: docs/benchmarks.md).
#include "kernels/cuda/nccl_group.h"
#include "kernels/cuda/runtime.h"
#include "ops/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {
namespace {

TEST(CudaNccl, OneRankBootstrapAndInPlaceSum) {
  SKIP_WITHOUT_GPU();
  int broadcasts = 0;
  cuda::NcclGroup group(0, 1, [&](void*, int64_t bytes) {
    EXPECT_GT(bytes, 0);
    ++broadcasts;
  });
  EXPECT_EQ(broadcasts, 1);
  Tensor g = Tensor::zeros({1 << 20}, DType::f32, Device::cuda);
  std::vector<double> ones(size_t(1) << 20, 1.0);
  Tensor h = Tensor::empty({1 << 20}, DType::f32);
  h.from_vector(ones);
  g.copy_from(h);
  ops::scale_inplace(g, 3.0);  // compute-stream work the sum must wait for
  group.allreduce_sum_async(static_cast<float*>(g.raw()), g.numel());
  group.join();
  ops::scale_inplace(g, 2.0);  // ordered after the sum by join()
  const std::vector<double> v = g.to_vector();
  EXPECT_EQ(v.front(), 6.0);
  EXPECT_EQ(v.back(), 6.0);
}

}  // namespace
}  // namespace msa::test
