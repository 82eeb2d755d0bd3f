// The transpose of a [rows, cols] matrix (bf16 or fp32), written contiguous: the weight gradient's
// GEMM reads its output gradient transposed (harness.kernels.layers).
//
// dW = g^T x reads g, [tokens, out], as an [out, tokens] matrix. Handed a transposed view,
// oneDNN's AMX matmul packs it in a slow path: on the AMX Xeon, BERT-Large's QKV and FFN weight
// gradients ran at 1240-1420 GFLOP/s standalone, 2050-2270 on a contiguous copy, the copy included
// (docs/fused-amx.md). torch's own transposing copy took 0.7-2.8 ms for these shapes; fbgemm's
// (in torch, vectorised for the host at run time) 0.13-0.68 ms, on column blocks in parallel here.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "transpose_tile.h"

#include <algorithm>
#include <cstdint>

namespace {

// Columns a task transposes: 64 of them are 64 rows of the output, each written whole.
constexpr int64_t kColumnsPerBlock = 64;

template <typename T>
void transpose_blocks(const T* src, T* dst, int64_t rows, int64_t cols) {
  const int64_t blocks = (cols + kColumnsPerBlock - 1) / kColumnsPerBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kColumnsPerBlock, n = std::min(kColumnsPerBlock, cols - c0);
    harness_kernels::transpose_tile(src + c0, rows, n, cols, dst + c0 * rows, rows);
  }
}

}  // namespace

// x: [rows, cols], contiguous, bf16 or fp32. Returns [cols, rows] in x's dtype.
at::Tensor transpose_2d(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "x must be a contiguous 2-D tensor");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat, "x must be bfloat16 or float32");
  const int64_t rows = x.size(0), cols = x.size(1);
  auto out = at::empty({cols, rows}, x.options());
  if (x.scalar_type() == at::kFloat)
    transpose_blocks(x.const_data_ptr<float>(), out.data_ptr<float>(), rows, cols);
  else
    transpose_blocks(x.const_data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(), rows, cols);
  return out;
}
