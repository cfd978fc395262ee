// The CUDA runtime is usable here, or the tests say why not.
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

}  // namespace msa::test
