// The CUDA runtime is usable here, or the tests say why not.
#include <vector>

#include "kernels/cuda/memory.h"
#include "kernels/cuda/runtime.h"
#include "tests/cuda/cuda_test_util.h"

namespace msa::test {

TEST(CudaDevice, ErrorsNameStatementAndPlace) {
  SKIP_WITHOUT_GPU();
  try {
    CUDA_CHECK(cudaSetDevice(1 << 20));  // no such device
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaSetDevice(1 << 20)"), std::string::npos) << what;
    EXPECT_NE(what.find("test_cuda_device.cpp"), std::string::npos) << what;
    EXPECT_NE(what.find("rank"), std::string::npos) << what;
  }
  cudaGetLastError();  // the runtime remembers the failed call: clear it for the tests that follow
}

// The arena: blocks are usable device memory, a freed block is reused at the same address (no new physical
// memory), a block larger than the current mapping grows it, and every allocation is counted.
TEST(CudaDevice, ArenaReusesFreedBlocksAndCountsAllocations) {
  SKIP_WITHOUT_GPU();
  cuda::compute_stream();  // the runtime's own buffers (cuBLASLt workspace, reduction slot) come first
  const int64_t before = cuda::device_allocations();
  void* a = cuda::device_alloc(3 << 20);
  const size_t mapped = cuda::device_arena_mapped_bytes();
  cuda::device_free(a);
  void* b = cuda::device_alloc(3 << 20);
  EXPECT_EQ(a, b) << "a freed block of the same size should be reused";
  EXPECT_EQ(cuda::device_arena_mapped_bytes(), mapped);
  const size_t big = size_t(1) << 30;  // past any chunk mapped so far by this test
  void* c = cuda::device_alloc(big);
  EXPECT_GE(cuda::device_arena_mapped_bytes(), big);
  // The memory works: write a pattern at both ends of the large block and read it back.
  std::vector<unsigned char> ones(4096, 0x5a), back(4096, 0);
  char* cc = static_cast<char*>(c);
  for (char* at : {cc, cc + big - ones.size()}) {
    cuda::copy_bytes(at, ones.data(), ones.size(), cuda::CopyKind::host_to_device);
    cuda::copy_bytes(back.data(), at, back.size(), cuda::CopyKind::device_to_host);
    EXPECT_EQ(back, ones);
  }
  cuda::device_free(b);
  cuda::device_free(c);
  EXPECT_EQ(cuda::device_allocations(), before + 3);
}

}  // namespace msa::test
