// Small GPU ops over flat buffers: residual adds, scaling, dtype conversion, column copies and reductions.
// `f32` flags say whether a buffer holds fp32 (else bf16). All run on the compute stream.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace msa::cuda {

void add_inplace(void* y, bool y_f32, const void* x, bool x_f32, int64_t n, float alpha);  // y += alpha x
void scale_inplace(void* y, bool y_f32, int64_t n, float alpha);                           // y *= alpha
void convert(void* dst, bool dst_f32, const void* src, bool src_f32, int64_t n);           // dst = src
// dst[:, dst_col : dst_col + width] = src[:, src_col : src_col + width]; elem_bytes per element.
void copy_columns(void* dst, int64_t dst_cols, int64_t dst_col, const void* src, int64_t src_cols, int64_t src_col,
                  int64_t rows, int64_t width, int elem_bytes);
// Reductions, accumulated in double; they wait for the stream.
double sum(const void* x, bool f32, int64_t n);
double sum_squares(const void* x, bool f32, int64_t n);
bool all_finite(const void* x, bool f32, int64_t n);
// Sum of squares over many buffers of one dtype: one accumulator, one wait for the stream.
double sum_squares_many(const std::vector<std::pair<const void*, int64_t>>& buffers, bool f32);

}  // namespace msa::cuda
