// Fused ops equal the sequence of ops they replace, exactly (same float operations in the same order).
#include <gtest/gtest.h>

#include "core/rng.h"
#include "ops/ops.h"

namespace msa {
namespace {

Tensor random_tensor(const Shape& s, Rng& rng) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::vector<double> v(size_t(t.numel()));
  for (double& x : v) x = rng.normal();
  t.from_vector(v);
  return t;
}

// copy_columns_rope == copy_columns then rope, for the q block and the k block of a QKV row, both directions,
// with partial rotation (pass-through dims).
TEST(FusedOps, CopyColumnsRopeEqualsCopyThenRope) {
  Rng rng(3);
  const int64_t b = 2, t = 5, hq = 4, hkv = 2, d = 8, rot = 6, width = (hq + 2 * hkv) * d;
  const Tensor qkv = random_tensor({b * t, width}, rng);
  const Tensor cos = random_tensor({t, rot / 2}, rng), sin = random_tensor({t, rot / 2}, rng);
  for (bool inverse : {false, true}) {
    for (auto [col, heads] : {std::pair<int64_t, int64_t>{0, hq}, {hq * d, hkv}}) {
      Tensor fused = Tensor::zeros({b, t, heads, d}, DType::f32), ref = Tensor::zeros({b, t, heads, d}, DType::f32);
      Tensor fused2 = fused.view({b * t, heads * d}), ref2 = ref.view({b * t, heads * d});
      ops::copy_columns_rope(fused2, 0, qkv, col, heads * d, d, cos, sin, rot, inverse);
      ops::copy_columns(ref2, 0, qkv, col, heads * d);
      ops::rope(ref, cos, sin, rot, inverse);
      EXPECT_EQ(fused.to_vector(), ref.to_vector()) << "column " << col << (inverse ? " inverse" : "");
    }
  }
  // The backward direction writes into a column window of a wider matrix and leaves the rest alone.
  Tensor dq = random_tensor({b * t, hq * d}, rng), merged = Tensor::zeros({b * t, width}, DType::f32);
  ops::copy_columns_rope(merged, 0, dq, 0, hq * d, d, cos, sin, rot, true);
  const std::vector<double> m = merged.to_vector();
  for (int64_t n = 0; n < b * t; ++n)
    for (int64_t j = hq * d; j < width; ++j) ASSERT_EQ(m[size_t(n * width + j)], 0.0);
}

TEST(FusedOps, SumSquaresOfManyTensorsAndAdamWValue) {
  Rng rng(4);
  const Tensor a = random_tensor({7, 3}, rng), b = random_tensor({11}, rng);
  EXPECT_DOUBLE_EQ(ops::sum_squares({&a, &b}), ops::sum_squares(a) + ops::sum_squares(b));
  EXPECT_EQ(ops::sum_squares(std::vector<const Tensor*>{}), 0.0);
  // adamw_update with a value tensor of another dtype fills it from the updated master.
  Tensor p = random_tensor({9}, rng), m = Tensor::zeros({9}, DType::f32), v = Tensor::zeros({9}, DType::f32);
  const Tensor g = random_tensor({9}, rng);
  Tensor value = Tensor::zeros({9}, DType::f64);
  ops::adamw_update(p, m, v, g, {1e-2, 0.9, 0.95, 1e-8, 0.1, 1, 1.0}, &value);
  EXPECT_EQ(value.to_vector(), p.to_vector());
}

}  // namespace
}  // namespace msa
