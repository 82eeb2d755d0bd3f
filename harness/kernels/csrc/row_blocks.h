// Column sums over the rows of a [rows, width] activation (the gradients of a bias or of a
// LayerNorm's weight and bias), made the same bits on any thread count: each fixed block of rows
// sums into its own row of partial sums, and the blocks are then added in block order.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include <cstdint>

namespace harness_kernels {

constexpr int64_t kRowsPerBlock = 16;

inline int64_t row_blocks(int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

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
