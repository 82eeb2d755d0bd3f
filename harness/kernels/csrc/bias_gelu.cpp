// GELU(y + bias), BERT's FFN activation after the intermediate GEMM (run without its bias),
// forward and backward in one pass over each row (harness.kernels.layers).
//
// Stock PyTorch adds the bias in the GEMM, saves the pre-activation, applies GELU in a second
// pass, and backward makes one pass for GELU's gradient and another to sum the bias's. Here the
// forward writes only the activation, the backward recomputes y + bias from the saved GEMM output
// and sums the bias gradient in the same pass, over fixed blocks of rows added in block order:
// the same bits on any thread count. GELU is the exact (erf) one: 0.5 z (1 + erf(z / sqrt 2)),
// its derivative Phi(z) + z phi(z).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include "elements.h"
#include "fast_math.h"
#include "prefetch.h"
#include "row_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using harness_kernels::erf_from_exp;
using harness_kernels::fast_erf;
using harness_kernels::fast_exp;
using harness_kernels::kRowsAhead;
using harness_kernels::load;
using harness_kernels::prefetch_read;
using harness_kernels::prefetch_write;
using harness_kernels::store;

using harness_kernels::block_partials;
using harness_kernels::kRowsPerBlock;
using harness_kernels::row_blocks;
using harness_kernels::sum_in_block_order;
using harness_kernels::zero_partial;
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// Each row through its own pointers: read through the OpenMP region's shared pointers, GCC reloads
// them every element (a store could change them) and leaves the loop scalar.
template <typename T>
void forward_row(const T* __restrict y, const float* __restrict bias, T* __restrict out, int64_t width) {
#pragma omp simd
  for (int64_t i = 0; i < width; ++i) {
    const float z = load(y, i) + bias[i];
    store(out, i, 0.5f * z * (1.f + fast_erf(z * kInvSqrt2)));
  }
}

template <typename T>
void forward_rows(const T* y, const float* bias, T* out, int64_t rows, int64_t width) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if (r + kRowsAhead < rows) {
      prefetch_read(y + (r + kRowsAhead) * width, width);
      prefetch_write(out + (r + kRowsAhead) * width, width);
    }
    forward_row(y + r * width, bias, out + r * width, width);
  }
}

// dy and the bias gradient's block of one row; the bias gradient sums the gradient as stored (as
// stock sums its bf16 gradient).
template <typename T>
void backward_row(const T* __restrict grad, const T* __restrict y, const float* __restrict bias, T* __restrict dy,
                  float* __restrict db, int64_t width) {
#pragma omp simd
  for (int64_t i = 0; i < width; ++i) {
    const float z = load(y, i) + bias[i];
    const float x = z * kInvSqrt2;
    const float e = fast_exp(-x * x);  // e^(-z^2 / 2): in phi(z), and in erf's tail
    const float cdf = 0.5f * (1.f + erf_from_exp(x, e));
    const float dz = load(grad, i) * (cdf + z * kInvSqrt2Pi * e);
    store(dy, i, dz);
    db[i] += load(dy, i);
  }
}

template <typename T>
void backward_rows(const T* grad, const T* y, const float* bias, T* dy, float* dbias_blocks, int64_t rows,
                   int64_t width) {
  const int64_t blocks = row_blocks(rows);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    zero_partial(dbias_blocks + b * width, width);
    for (int64_t r = b * kRowsPerBlock; r < std::min(rows, (b + 1) * kRowsPerBlock); ++r)
      backward_row(grad + r * width, y + r * width, bias, dy + r * width, dbias_blocks + b * width, width);
  }
}

void check_rows(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.dim() == 2, what,
              " must be a contiguous [rows, width] CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, what,
              " must be float32 or bfloat16");
}

void check_bias(const at::Tensor& bias, int64_t width) {
  TORCH_CHECK(bias.device().is_cpu() && bias.is_contiguous() && bias.scalar_type() == at::kFloat &&
                  bias.numel() == width,
              "bias must be a contiguous float32 CPU tensor of the rows' width");
}

}  // namespace

// y: [rows, width] float32 or bfloat16, the GEMM's output without bias; bias: [width] float32.
// Returns GELU(y + bias) in y's dtype.
at::Tensor bias_gelu_forward(const at::Tensor& y, const at::Tensor& bias) {
  check_rows(y, "y");
  const int64_t rows = y.size(0), width = y.size(1);
  check_bias(bias, width);
  auto out = at::empty_like(y);
  if (y.scalar_type() == at::kFloat)
    forward_rows(y.data_ptr<float>(), bias.data_ptr<float>(), out.data_ptr<float>(), rows, width);
  else
    forward_rows(y.data_ptr<at::BFloat16>(), bias.data_ptr<float>(), out.data_ptr<at::BFloat16>(), rows, width);
  return out;
}

// grad: the activation's gradient, y: the forward's input, alike. Returns (dy in their dtype, dbias
// float32).
std::vector<at::Tensor> bias_gelu_backward(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& bias) {
  check_rows(grad, "grad");
  check_rows(y, "y");
  TORCH_CHECK(grad.sizes() == y.sizes() && grad.scalar_type() == y.scalar_type(), "grad and y must be alike");
  const int64_t rows = y.size(0), width = y.size(1);
  check_bias(bias, width);
  auto dy = at::empty_like(y);
  auto blocks_sum = block_partials(rows, width, bias.options());
  if (y.scalar_type() == at::kFloat)
    backward_rows(grad.data_ptr<float>(), y.data_ptr<float>(), bias.data_ptr<float>(), dy.data_ptr<float>(),
                  blocks_sum.data_ptr<float>(), rows, width);
  else
    backward_rows(grad.data_ptr<at::BFloat16>(), y.data_ptr<at::BFloat16>(), bias.data_ptr<float>(),
                  dy.data_ptr<at::BFloat16>(), blocks_sum.data_ptr<float>(), rows, width);
  return {dy, sum_in_block_order(blocks_sum)};
}
