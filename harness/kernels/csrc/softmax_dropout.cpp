// Attention's probabilities: dropout(softmax(scale * scores + mask)), BERT's step between the two
// batched GEMMs, forward and backward in one pass over each row (harness.kernels.layers).
//
// Stock PyTorch makes a pass for the scale, one for the mask, one for the softmax, one for the
// dropout mask and one to apply it, and as many again backward; at seq 512 the scores are the
// step's largest activations. Here the forward pass reads the scores once and writes the
// probabilities (kept for the backward) and their dropped-out copy (the next GEMM's input, which
// autograd keeps for that GEMM's backward anyway). The backward pass reads the incoming gradient,
// the probabilities and that copy once, and writes the scores' gradient. It takes the dropout mask
// from the copy's zeros instead of drawing it again (philox.h): an element the copy holds as 0 was
// dropped or has probability 0, and the gradient of a probability-0 score is 0 whether it was
// kept or not (P * (dP - sum(dP * P))), so both give the same bits. Rows are independent: any
// thread count gives the same bits.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include "elements.h"
#include "fast_math.h"
#include "philox.h"
#include "prefetch.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using harness_kernels::draw_lanes;
using harness_kernels::Dropout;
using harness_kernels::dropout_of;
using harness_kernels::fast_exp;
using harness_kernels::kRowsAhead;
using harness_kernels::load;
using harness_kernels::prefetch_read;
using harness_kernels::prefetch_write;
using harness_kernels::store;

// One row's probabilities and their dropped copy, each array through a restrict pointer of the
// row's own. `allowed`: the row's keys, nonzero = may attend, or null (every key). `e`: width
// floats.
template <typename T>
void forward_row(const T* __restrict scores, const uint8_t* __restrict allowed, T* __restrict out,
                 T* __restrict probs, float* __restrict e, const uint16_t* __restrict lanes, int64_t width,
                 float scale, Dropout d) {
  const float lowest = -std::numeric_limits<float>::infinity();
  // two loops, not one with the null test inside, and a comparison, not std::fmax (a scalar libm
  // call without -ffast-math): each loop vectorises. A NaN score is left out of the maximum either
  // way, and makes its row NaN below.
  float top = lowest;
  if (allowed == nullptr) {
#pragma omp simd reduction(max : top)
    for (int64_t j = 0; j < width; ++j) {
      e[j] = load(scores, j) * scale;
      top = e[j] > top ? e[j] : top;
    }
  } else {
#pragma omp simd reduction(max : top)
    for (int64_t j = 0; j < width; ++j) {
      const float v = load(scores, j) * scale;  // loaded either way: a select, no branch
      e[j] = allowed[j] != 0 ? v : lowest;
      top = e[j] > top ? e[j] : top;
    }
  }
  // a row with every key masked: 0 / 0, NaN, as stock's softmax of -inf gives
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < width; ++j) {
    e[j] = fast_exp(e[j] - top);
    sum += e[j];
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) {
    const float p = e[j] * inv;
    store(probs, j, p);
    store(out, j, lanes[j] >= d.dropped ? p * d.scale : 0.f);
  }
}

// key_mask: [rows / rows_per_mask, width], true = may attend, or null (every key).
template <typename T>
void forward_rows(const T* scores, const bool* key_mask, T* out, T* probs, int64_t rows, int64_t width,
                  int64_t rows_per_mask, float scale, Dropout d, uint64_t seed) {
  // bool is one byte holding 0 or 1 in the ABI torch builds with. Read as bytes, the masked
  // loop runs vectorised; read as bool, GCC 12 left it scalar at run time (45% of the forward's
  // cycles under perf; the forward took 1.5x as long at seq 512)
  const auto* mask = reinterpret_cast<const uint8_t*>(key_mask);
#pragma omp parallel
  {
    std::vector<float> e(width);
    std::vector<uint32_t> buffer(4 * (width / 8 + 2));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * width;
      forward_row(scores + base, mask == nullptr ? nullptr : mask + (r / rows_per_mask) * width, out + base,
                  probs + base, e.data(), draw_lanes(seed, base, width, buffer), width, scale, d);
    }
  }
}

// d scores = scale * P * (dP - sum(dP * P)), dP the dropout's gradient of the incoming one: the
// incoming one scaled where the dropped copy is nonzero. One row, through restrict pointers;
// `dp`: width floats.
template <typename T>
void backward_row(const T* __restrict grad, const T* __restrict probs, const T* __restrict out,
                  T* __restrict dscores, float* __restrict dp, int64_t width, float scale, Dropout d) {
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < width; ++j) {
    // loaded whether kept or not: AVX2 has no masked 16-bit load, so a load under the condition
    // leaves the loop scalar there
    const float g = load(grad, j) * d.scale;
    dp[j] = load(out, j) != 0.f ? g : 0.f;
    dot += dp[j] * load(probs, j);
  }
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) store(dscores, j, scale * load(probs, j) * (dp[j] - dot));
}

template <typename T>
void backward_rows(const T* grad, const T* probs, const T* out, T* dscores, int64_t rows, int64_t width,
                   float scale, Dropout d) {
#pragma omp parallel
  {
    std::vector<float> dp(width);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * width;
      if (r + kRowsAhead < rows) {
        const int64_t next = base + kRowsAhead * width;
        prefetch_read(grad + next, width);
        prefetch_read(probs + next, width);
        prefetch_read(out + next, width);
        prefetch_write(dscores + next, width);
      }
      backward_row(grad + base, probs + base, out + base, dscores + base, dp.data(), width, scale, d);
    }
  }
}

void check_rows(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.dim() == 2, what,
              " must be a contiguous [rows, width] CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, what,
              " must be float32 or bfloat16");
}

}  // namespace

// scores: [rows, width] float32 or bfloat16, the unscaled q k^T; key_mask: [rows / rows_per_mask,
// width] bool, or an empty tensor for none. Returns (out, probs) in the scores' dtype: the dropped
// probabilities and the probabilities.
std::vector<at::Tensor> softmax_dropout_forward(const at::Tensor& scores, const at::Tensor& key_mask,
                                                int64_t rows_per_mask, double scale, double p, int64_t seed) {
  check_rows(scores, "scores");
  const int64_t rows = scores.size(0), width = scores.size(1);
  const bool masked = key_mask.numel() > 0;
  if (masked) {
    TORCH_CHECK(key_mask.scalar_type() == at::kBool && key_mask.is_contiguous() && key_mask.dim() == 2 &&
                    key_mask.size(1) == width && rows_per_mask > 0 && key_mask.size(0) * rows_per_mask == rows,
                "key_mask must be a contiguous bool [rows / rows_per_mask, width]");
  }
  const Dropout d = dropout_of(p);
  auto out = at::empty_like(scores);
  auto probs = at::empty_like(scores);
  const bool* mask = masked ? key_mask.data_ptr<bool>() : nullptr;
  if (scores.scalar_type() == at::kFloat)
    forward_rows(scores.data_ptr<float>(), mask, out.data_ptr<float>(), probs.data_ptr<float>(), rows, width,
                 rows_per_mask, static_cast<float>(scale), d, static_cast<uint64_t>(seed));
  else
    forward_rows(scores.data_ptr<at::BFloat16>(), mask, out.data_ptr<at::BFloat16>(),
                 probs.data_ptr<at::BFloat16>(), rows, width, rows_per_mask, static_cast<float>(scale), d,
                 static_cast<uint64_t>(seed));
  return {out, probs};
}

// grad: the gradient of `out`; probs and out: the forward's; all [rows, width] of one dtype. p: the
// forward's dropout probability (its scale). Returns the scores' gradient in that dtype.
at::Tensor softmax_dropout_backward(const at::Tensor& grad, const at::Tensor& probs, const at::Tensor& out,
                                    double scale, double p) {
  check_rows(grad, "grad");
  check_rows(probs, "probs");
  check_rows(out, "out");
  TORCH_CHECK(grad.sizes() == probs.sizes() && grad.scalar_type() == probs.scalar_type() &&
                  out.sizes() == probs.sizes() && out.scalar_type() == probs.scalar_type(),
              "grad, probs and out must be alike");
  const Dropout d = dropout_of(p);
  auto dscores = at::empty_like(probs);
  const int64_t rows = grad.size(0), width = grad.size(1);
  if (grad.scalar_type() == at::kFloat)
    backward_rows(grad.data_ptr<float>(), probs.data_ptr<float>(), out.data_ptr<float>(), dscores.data_ptr<float>(),
                  rows, width, static_cast<float>(scale), d);
  else
    backward_rows(grad.data_ptr<at::BFloat16>(), probs.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(),
                  dscores.data_ptr<at::BFloat16>(), rows, width, static_cast<float>(scale), d);
  return dscores;
}
