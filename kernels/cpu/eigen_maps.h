// Eigen views over row-major buffers, the layout every msatrain tensor uses.
#pragma once
#include <Eigen/Dense>

namespace msa::cpu {

template <class T> using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T> using MatMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T> using ConstMatMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// rows x cols view whose consecutive rows are `stride` elements apart (stride >= cols).
template <class T> MatMap<T> mat(T* p, int64_t rows, int64_t cols, int64_t stride) {
  return MatMap<T>(p, rows, cols, Eigen::OuterStride<>(stride));
}
template <class T> ConstMatMap<T> mat(const T* p, int64_t rows, int64_t cols, int64_t stride) {
  return ConstMatMap<T>(p, rows, cols, Eigen::OuterStride<>(stride));
}

}  // namespace msa::cpu
