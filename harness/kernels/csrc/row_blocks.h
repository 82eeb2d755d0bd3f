// Column sums over the rows of a [rows, width] activation (the gradients of a bias or of a
// LayerNorm's weight and bias), made the same bits on any thread count: each fixed block of rows
// sums into its own row of partial sums, and the blocks are then added in block order. The
// partial sums are allocated uninitialised (block_partials) and each block zeroes its own row as
// it starts (zero_partial), in the caches of the thread that adds into it: zero-filled by
// at::zeros, they took a pass of their own, about 190 of them a BERT-Large step.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>

namespace harness_kernels {

constexpr int64_t kRowsPerBlock = 16;

inline int64_t row_blocks(int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

// [blocks of rows, width] float32 partial sums, uninitialised: each block zeroes its row first.
inline at::Tensor block_partials(int64_t rows, int64_t width, const at::TensorOptions& options) {
  return at::empty({row_blocks(rows), width}, options.dtype(at::kFloat));
}

inline void zero_partial(float* row, int64_t width) { std::fill_n(row, width, 0.0f); }

// partial: [blocks, width] float32. Returns [width] float32, the blocks added in block order.
inline at::Tensor sum_in_block_order(const at::Tensor& partial) {
  const int64_t blocks = partial.size(0), width = partial.size(1);
  auto total = at::zeros({width}, partial.options());
  float* t = total.data_ptr<float>();
  const float* s = partial.data_ptr<float>();
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = 0; i < width; ++i) t[i] += s[b * width + i];
  return total;
}

}  // namespace harness_kernels
