// The grouped GEMM of ops_moe.h as a loop of GEMMs over the groups' row ranges (device-agnostic: it runs
// wherever ops::gemm does). A device grouped kernel replaces this one function.
#include "ops/ops.h"
#include "ops/ops_moe.h"

namespace msa::ops {

void grouped_gemm(Tensor& c, const Tensor& a, const std::vector<const Tensor*>& b, bool trans_b,
                  const std::vector<int64_t>& offsets) {
  MSA_CHECK(offsets.size() == b.size() + 1 && offsets.front() == 0 && offsets.back() == a.dim(0) &&
                c.dim(0) == a.dim(0),
            "grouped_gemm: " << b.size() << " groups, offsets end at " << offsets.back() << ", a "
                             << shape_str(a.shape()) << ", c " << shape_str(c.shape()));
  for (size_t g = 0; g < b.size(); ++g) {
    if (offsets[g + 1] == offsets[g]) continue;
    Tensor cg = c.slice(offsets[g], offsets[g + 1]);
    gemm(cg, a.slice(offsets[g], offsets[g + 1]), false, *b[g], trans_b);
  }
}

void grouped_gemm_weight_grad(const std::vector<Tensor*>& db, const Tensor& dy, const Tensor& x,
                              const std::vector<int64_t>& offsets) {
  MSA_CHECK(offsets.size() == db.size() + 1 && offsets.front() == 0 && offsets.back() == dy.dim(0) &&
                x.dim(0) == dy.dim(0),
            "grouped_gemm_weight_grad: " << db.size() << " groups, dy " << shape_str(dy.shape()) << ", x "
                                         << shape_str(x.shape()));
  for (size_t g = 0; g < db.size(); ++g) {
    if (offsets[g + 1] == offsets[g]) continue;
    gemm(*db[g], dy.slice(offsets[g], offsets[g + 1]), true, x.slice(offsets[g], offsets[g + 1]), false, 1.0, 1.0);
  }
}

}  // namespace msa::ops
