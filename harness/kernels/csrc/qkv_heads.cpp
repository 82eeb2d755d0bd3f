// The query/key/value projection's output to attention's per-head layout, its bias added, forward
// and backward in one pass over each row (harness.kernels.layers).
//
// Stock PyTorch adds the bias in the GEMM, views [B*S, 3H] as q, k and v of [B, heads, S, D], and
// the batched GEMMs copy each of them to a contiguous batch; backward stacks the three gradients,
// copies them back to [B*S, 3H] and sums the bias gradient in another pass. Here one pass writes
// the three contiguous batches with the bias added, and one pass writes the rows' gradient from
// the three gradients and sums the bias gradient over fixed blocks of rows added in block order:
// the same bits on any thread count. The key gradient may come as its transpose, [B, heads, D, S],
// which is how the scores' GEMM (q k^T) leaves it: each block of rows then transposes its tiles in
// the caches, where a contiguous copy of the key gradient would first make a pass over memory.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "elements.h"
#include "prefetch.h"
#include "row_blocks.h"
#include "transpose_tile.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace {

using harness_kernels::block_partials;
using harness_kernels::kRowsAhead;
using harness_kernels::kRowsPerBlock;
using harness_kernels::load;
using harness_kernels::prefetch_read;
using harness_kernels::prefetch_write;
using harness_kernels::row_blocks;
using harness_kernels::store;
using harness_kernels::sum_in_block_order;
using harness_kernels::transpose_tile;
using harness_kernels::zero_partial;

// The layout: row r = b * seq + s of the projection holds, for part p (q, k, v) and head h, the
// head_dim values at column (p * heads + h) * head_dim; the batches are [3, B, heads, S, head_dim].
struct Layout {
  int64_t batch, seq, heads, head_dim;
  int64_t width() const { return 3 * heads * head_dim; }
  int64_t rows() const { return batch * seq; }
  // where row r's segment of part 0, head 0 lies in the batches; segment (p, h) lies
  // (p * batch * heads + h) * seq * head_dim further: two divisions a row, not four a segment
  int64_t row_offset(int64_t r) const { return ((r / seq) * heads * seq + r % seq) * head_dim; }
  int64_t head_stride() const { return seq * head_dim; }
  int64_t part_stride() const { return batch * heads * seq * head_dim; }
};

// Each segment through its own pointers: read through the OpenMP region's shared pointers, GCC
// reloads them every element and leaves the loop scalar.
template <typename T>
void add_bias(const T* __restrict y, const float* __restrict bias, T* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) store(out, i, load(y, i) + bias[i]);
}

template <typename T>
void forward_rows(const T* y, const float* bias, T* out, const Layout& l) {
  const int64_t width = l.width(), D = l.head_dim;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < l.rows(); ++r) {
    if (r + kRowsAhead < l.rows()) {
      const int64_t next = r + kRowsAhead, row = l.row_offset(next);
      prefetch_read(y + next * width, width);
      for (int64_t p = 0; p < 3; ++p)
        for (int64_t h = 0; h < l.heads; ++h) prefetch_write(out + row + p * l.part_stride() + h * l.head_stride(), D);
    }
    const int64_t row = l.row_offset(r);
    for (int64_t p = 0; p < 3; ++p)
      for (int64_t h = 0; h < l.heads; ++h) {
        const int64_t column = (p * l.heads + h) * D;
        add_bias(y + r * width + column, bias + column, out + row + p * l.part_stride() + h * l.head_stride(), D);
      }
  }
}

// One segment of the rows' gradient, and its share of the bias gradient's block: the bias
// gradient sums the gradient as stored (as stock sums its bf16 gradient).
template <typename T>
void gather_segment(const T* __restrict grad, T* __restrict dy, float* __restrict db, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    dy[i] = grad[i];  // a copy of the bits: no rounding to redo
    db[i] += load(grad, i);
  }
}

// A segment's share of the bias gradient's block, from the rows' gradient already written.
template <typename T>
void sum_segment(const T* __restrict dy, float* __restrict db, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) db[i] += load(dy, i);
}

// Rows [first, end) of the key columns of dy from the key gradient's transpose, [B, heads, D, S]:
// per sequence the rows cover and per head, a [D, rows] tile transposed.
template <typename T>
void keys_from_transpose(const T* dk_t, int64_t first, int64_t end, T* dy, const Layout& l) {
  const int64_t width = l.width(), D = l.head_dim;
  for (int64_t r = first; r < end;) {
    const int64_t b = r / l.seq, s = r % l.seq, n = std::min(end - r, l.seq - s);
    for (int64_t h = 0; h < l.heads; ++h)
      transpose_tile(dk_t + ((b * l.heads + h) * D) * l.seq + s, D, n, l.seq, dy + r * width + (l.heads + h) * D,
                     width);
    r += n;
  }
}

template <typename T>
void backward_rows(const T* const* grads, bool k_transposed, T* dy, float* dbias_blocks, const Layout& l) {
  const int64_t width = l.width(), blocks = row_blocks(l.rows()), D = l.head_dim;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kRowsPerBlock, end = std::min(l.rows(), (b + 1) * kRowsPerBlock);
    zero_partial(dbias_blocks + b * width, width);
    if (k_transposed) keys_from_transpose(grads[1], first, end, dy, l);
    for (int64_t r = first; r < end; ++r) {
      if (r + kRowsAhead < l.rows()) {
        const int64_t next = r + kRowsAhead, row = l.row_offset(next);
        prefetch_write(dy + next * width, width);
        for (int64_t p = 0; p < 3; p += k_transposed ? 2 : 1)
          for (int64_t h = 0; h < l.heads; ++h) prefetch_read(grads[p] + row + h * l.head_stride(), D);
      }
      // each gradient is one part's [B, heads, S, D] (the keys' [B, heads, D, S] if k_transposed)
      const int64_t row = l.row_offset(r);
      for (int64_t p = 0; p < 3; ++p)
        for (int64_t h = 0; h < l.heads; ++h) {
          const int64_t column = (p * l.heads + h) * D;
          if (p == 1 && k_transposed)
            sum_segment(dy + r * width + column, dbias_blocks + b * width + column, D);
          else
            gather_segment(grads[p] + row + h * l.head_stride(), dy + r * width + column,
                           dbias_blocks + b * width + column, D);
        }
    }
  }
}

void check_float_or_bf16(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), what, " must be a contiguous CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, what,
              " must be float32 or bfloat16");
}

}  // namespace

// y: [B * S, 3 * heads * head_dim] float32 or bfloat16, the projection without its bias; bias:
// [3 * heads * head_dim] float32. Returns [3, B, heads, S, head_dim] in y's dtype: q, k, v.
at::Tensor qkv_heads_forward(const at::Tensor& y, const at::Tensor& bias, int64_t batch, int64_t heads) {
  check_float_or_bf16(y, "y");
  TORCH_CHECK(batch > 0 && heads > 0, "batch and heads must be positive");
  TORCH_CHECK(y.dim() == 2 && y.size(1) % (3 * heads) == 0 && y.size(0) % batch == 0,
              "y must be [batch * seq, 3 * heads * head_dim]");
  const Layout l{batch, y.size(0) / batch, heads, y.size(1) / (3 * heads)};
  TORCH_CHECK(bias.device().is_cpu() && bias.is_contiguous() && bias.scalar_type() == at::kFloat &&
                  bias.numel() == l.width(),
              "bias must be a contiguous float32 CPU tensor of y's width");
  auto out = at::empty({3, l.batch, l.heads, l.seq, l.head_dim}, y.options());
  if (y.scalar_type() == at::kFloat)
    forward_rows(y.data_ptr<float>(), bias.data_ptr<float>(), out.data_ptr<float>(), l);
  else
    forward_rows(y.data_ptr<at::BFloat16>(), bias.data_ptr<float>(), out.data_ptr<at::BFloat16>(), l);
  return out;
}

// dq, dk, dv: [B, heads, S, head_dim], alike; with k_transposed, dk is [B, heads, head_dim, S], the
// transpose of the key gradient. Returns (dy [B * S, 3 * heads * head_dim] in their dtype, dbias
// float32).
std::vector<at::Tensor> qkv_heads_backward(const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv,
                                           bool k_transposed) {
  const auto shape = dq.sizes().vec();
  auto key_shape = shape;
  if (k_transposed && shape.size() == 4) std::swap(key_shape[2], key_shape[3]);
  for (const auto* g : {&dq, &dk, &dv}) {
    check_float_or_bf16(*g, "the gradients");
    TORCH_CHECK(g->dim() == 4 && g->scalar_type() == dq.scalar_type() && g->sizes() == (g == &dk ? key_shape : shape),
                "dq, dk and dv must be alike [batch, heads, seq, head_dim] (dk [batch, heads, head_dim, seq] "
                "with k_transposed)");
  }
  const Layout l{dq.size(0), dq.size(2), dq.size(1), dq.size(3)};
  auto dy = at::empty({l.rows(), l.width()}, dq.options());
  auto blocks_sum = block_partials(l.rows(), l.width(), dq.options());
  if (dq.scalar_type() == at::kFloat) {
    const float* grads[3] = {dq.data_ptr<float>(), dk.data_ptr<float>(), dv.data_ptr<float>()};
    backward_rows(grads, k_transposed, dy.data_ptr<float>(), blocks_sum.data_ptr<float>(), l);
  } else {
    const at::BFloat16* grads[3] = {dq.data_ptr<at::BFloat16>(), dk.data_ptr<at::BFloat16>(),
                                    dv.data_ptr<at::BFloat16>()};
    backward_rows(grads, k_transposed, dy.data_ptr<at::BFloat16>(), blocks_sum.data_ptr<float>(), l);
  }
  return {dy, sum_in_block_order(blocks_sum)};
}
