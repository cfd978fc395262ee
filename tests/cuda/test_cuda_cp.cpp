// Context parallel's NCCL path on one GPU: its row gather against a host permutation, and a one-rank group
// through the whole NCCL path (all-gather, row gather, fp32 reduce-scatter, conversions), which must give back
// what went in. The multi-rank exchange itself needs several GPUs (tests/mpi/test_cuda_cp.sh covers the
// host-staged path on one GPU; docs/context_parallel.md says what has run where).
#include <numeric>

#include "kernels/cuda/moe.h"
#include "model/context_parallel.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/unit/one_rank_comm.h"

namespace msa::test {
namespace {

Tensor random_device(const Shape& shape, DType dt, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const std::vector<float> v = random_floats(size_t(n), seed, 1.0f);
  Tensor t = Tensor::empty(shape, dt, Device::cuda);
  t.from_vector(std::vector<double>(v.begin(), v.end()));
  return t;
}

// The row gather the NCCL path runs (cuda::gather_rows, shared with the MoE dispatch) moves every row exactly to
// where a host permutation puts it, for a K/V row width (16-byte path) and an odd one (element path).
TEST(CudaContextParallel, RowGatherMatchesTheHostPermutation) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 301;
  std::vector<int32_t> perm(rows);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = rows - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t((i * 7919) % (i + 1))]);
  Tensor map = Tensor::empty({rows}, DType::i32, Device::cuda);
  map.from_vector(std::vector<double>(perm.begin(), perm.end()));
  for (const int64_t width : {256, 6}) {
    Tensor src = random_device({rows, width}, DType::bf16, 5), dst = Tensor::empty({rows, width}, DType::bf16, Device::cuda);
    cuda::gather_rows(static_cast<__nv_bfloat16*>(dst.raw()), static_cast<const __nv_bfloat16*>(src.raw()),
                      static_cast<const int32_t*>(map.raw()), nullptr, rows, width);
    const std::vector<double> s = src.to_vector(), d = dst.to_vector();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c)
        ASSERT_EQ(d[size_t(r * width + c)], s[size_t(perm[size_t(r)] * width + c)]) << "row " << r << ", width " << width;
  }
}

TEST(CudaContextParallel, OneRankNcclGatherAndScatterGiveBackTheirInput) {
  SKIP_WITHOUT_GPU();
  OneRankComm comm;
  ContextParallel cp(comm, 256, /*nccl=*/true);
  ASSERT_TRUE(cp.uses_nccl());
  Tensor k = random_device({2, 256, 2, 64}, DType::bf16, 7), v = random_device({2, 256, 2, 64}, DType::bf16, 8);
  Tensor k_all = Tensor::zeros(k.shape(), DType::bf16, Device::cuda), v_all = Tensor::zeros(v.shape(), DType::bf16, Device::cuda);
  cp.begin_gather(k_all, k);
  cp.begin_gather(v_all, v);
  cp.finish_gathers();
  EXPECT_EQ(k_all.to_vector(), k.to_vector());
  EXPECT_EQ(v_all.to_vector(), v.to_vector());
  Tensor dk = Tensor::zeros(k.shape(), DType::bf16, Device::cuda);
  cp.scatter_key_grads(dk, k_all);  // bf16 -> fp32 sum over one rank -> bf16: exact
  EXPECT_EQ(dk.to_vector(), k.to_vector());
  const ContextParallel::Traffic t = cp.take_traffic();
  EXPECT_GT(t.seconds, 0.0);
  EXPECT_EQ(t.bytes_in, 0);  // one rank receives nothing from others
  EXPECT_EQ(cp.take_traffic().seconds, 0.0);
}

}  // namespace
}  // namespace msa::test
