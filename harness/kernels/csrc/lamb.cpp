// LAMB's step over all of a model's tensors in one multithreaded call (harness.kernels.lamb).
//
// The segments (a tensor, or one of a fused tensor's chunks) are taken in windows of about
// kWindow elements, and both passes finish a window before the next. Pass 1 reads each gradient
// once: it updates both Adam moments in place, writes the update u = m_hat / (sqrt(v_hat) + eps)
// + wd * w into a window-sized scratch, and sums per segment the squared norms of w and u. Pass 2
// steps each weight by lr * trust ratio * u and writes a bf16 copy of the weight where one is
// given. A weight the GEMMs read in bf16 is held split (elements.h): its bf16 high half and its
// low half, 4 bytes read and written as an fp32 weight's, with no copy of 2 bytes more to write
// (BERT-Large's step: 312-320 ms against 347-367, docs/fused-amx-weights.md). Whole-model passes
// read every weight twice from memory; a window's second pass finds its weights and updates still
// in the caches, and does no square root or division (the two passes took 404 ms on the AMX Xeon,
// the windows 354: docs/fused-amx.md).
//
// Work is cut into blocks of a fixed size, whatever the thread count, and each block's partial
// sums are added in block order: the norms, so the trust ratios and the weights, are the same
// bits on 1 or 64 threads.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "elements.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

namespace {

using harness_kernels::join;
using harness_kernels::load;
using harness_kernels::split_hi;
using harness_kernels::split_lo;
using harness_kernels::to_bf16;

constexpr int64_t kBlock = 1 << 15;  // elements per work item: 128 KiB of fp32, in L2
// elements per window: 4 M is the largest encoder weight (the FFN's), whose weight and update take
// 32 MiB; windows of 256 K to 4 M elements stepped BERT-Large in the same time, one window of the
// whole model 13% slower
constexpr int64_t kWindow = 1 << 22;

struct Block {
  int64_t segment, begin, end;
};

// The blocks of segments [first, last).
std::vector<Block> blocks_of(const std::vector<int64_t>& sizes, size_t first, size_t last) {
  std::vector<Block> blocks;
  for (int64_t s = first; s < static_cast<int64_t>(last); ++s)
    for (int64_t b = 0; b < sizes[s]; b += kBlock) blocks.push_back({s, b, std::min(sizes[s], b + kBlock)});
  return blocks;
}

void check_segment(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), what, " must be contiguous CPU tensors");
}

// The per-block partial sums of one or two quantities, added into `out` ([segments, width]) per
// segment in block order, whatever thread summed a block.
void add_per_segment(const std::vector<Block>& blocks, const std::vector<double>& partial, int64_t width,
                     double* out) {
  for (size_t b = 0; b < blocks.size(); ++b)
    for (int64_t k = 0; k < width; ++k) out[blocks[b].segment * width + k] += partial[b * width + k];
}

// The block's four quarters are read side by side: on a Zen 3, a thread reading one stream ran
// at 18 GB/s where passes over four or more streams ran at 25-27 (docs/fused-zen3.md).
template <typename T>
double sum_squares_block(const T* x, int64_t begin, int64_t end) {
  const int64_t quarter = (end - begin) / 4;
  const T *x0 = x + begin, *x1 = x0 + quarter, *x2 = x1 + quarter, *x3 = x2 + quarter;
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (int64_t i = 0; i < quarter; ++i) {
    const double v0 = load(x0, i), v1 = load(x1, i), v2 = load(x2, i), v3 = load(x3, i);
    a0 += v0 * v0;
    a1 += v1 * v1;
    a2 += v2 * v2;
    a3 += v3 * v3;
  }
  for (int64_t i = begin + 4 * quarter; i < end; ++i) {
    const double v = load(x, i);
    a3 += v * v;
  }
  return (a0 + a1) + (a2 + a3);
}

}  // namespace

// Squared L2 norm of each tensor (fp32 or bf16), accumulated in fp64: [n] float64. Summed in
// fp32, BERT-Large's 336 M squares would lose digits to the order they are added in.
at::Tensor sum_squares(const std::vector<at::Tensor>& xs) {
  std::vector<int64_t> sizes;
  for (const auto& x : xs) {
    check_segment(x, "tensors");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
                "sum_squares takes float32 or bfloat16 tensors");
    sizes.push_back(x.numel());
  }
  auto blocks = blocks_of(sizes, 0, sizes.size());
  std::vector<double> partial(blocks.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t b = 0; b < blocks.size(); ++b) {
    const auto& x = xs[blocks[b].segment];
    partial[b] = x.scalar_type() == at::kFloat
                     ? sum_squares_block(x.data_ptr<float>(), blocks[b].begin, blocks[b].end)
                     : sum_squares_block(x.data_ptr<at::BFloat16>(), blocks[b].begin, blocks[b].end);
  }
  auto norms = at::zeros({static_cast<int64_t>(xs.size())}, at::kDouble);
  add_per_segment(blocks, partial, 1, norms.data_ptr<double>());
  return norms;
}

namespace {

struct Adam {
  float beta1, beta2, eps, inv_bc1, inv_sqrt_bc2;
};

// A segment's fp32 weight: a float32 tensor (`w`, with `copy` its bf16 copy where one is kept), or
// split into two halves (`hi`, the bf16 weight, and `lo`; elements.h's split_hi, split_lo).
struct Weight {
  float* w = nullptr;
  uint16_t* copy = nullptr;
  uint16_t* hi = nullptr;
  uint16_t* lo = nullptr;
};

template <bool Split, typename G>
void moments_block(const Weight& weight, const G* g, float* m, float* v, float* __restrict u_out, float wd,
                   float grad_scale, const Adam& a, int64_t begin, int64_t end, double* sums) {
  // the pointers in locals: read from the struct, GCC would not vectorise the loop
  const float* w32 = weight.w;
  const uint16_t *hi = weight.hi, *lo = weight.lo;
  double w_sq = 0.0, u_sq = 0.0;
#pragma omp simd reduction(+ : w_sq, u_sq)
  for (int64_t i = begin; i < end; ++i) {
    const float w = Split ? join(hi[i], lo[i]) : w32[i];
    float grad = load(g, i) * grad_scale;
    float mi = a.beta1 * m[i] + (1.f - a.beta1) * grad;
    float vi = a.beta2 * v[i] + (1.f - a.beta2) * grad * grad;
    m[i] = mi;
    v[i] = vi;
    float u = (mi * a.inv_bc1) / (std::sqrt(vi) * a.inv_sqrt_bc2 + a.eps) + wd * w;
    u_out[i - begin] = u;
    w_sq += static_cast<double>(w) * w;
    u_sq += static_cast<double>(u) * u;
  }
  sums[0] = w_sq;
  sums[1] = u_sq;
}

template <typename G>
void moments_block(const Weight& weight, const G* g, float* m, float* v, float* __restrict u_out, float wd,
                   float grad_scale, const Adam& a, int64_t begin, int64_t end, double* sums) {
  if (weight.hi)
    moments_block<true>(weight, g, m, v, u_out, wd, grad_scale, a, begin, end, sums);
  else
    moments_block<false>(weight, g, m, v, u_out, wd, grad_scale, a, begin, end, sums);
}

// w <- w - lr * u, u as the first pass left it; a split weight's halves are both rewritten, a
// float32 weight's bf16 copy, where kept, receives the new weight rounded to nearest even.
void apply_block(const Weight& weight, const float* __restrict u, float lr, int64_t begin, int64_t end) {
  if (weight.hi) {
    uint16_t* __restrict hi = weight.hi;
    uint16_t* __restrict lo = weight.lo;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float w = join(hi[i], lo[i]) - lr * u[i - begin];
      hi[i] = split_hi(w);
      lo[i] = split_lo(w);
    }
  } else if (weight.copy) {
    float* __restrict w = weight.w;
    uint16_t* __restrict copy = weight.copy;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      w[i] -= lr * u[i - begin];
      copy[i] = to_bf16(w[i]);
    }
  } else {
    float* __restrict w = weight.w;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) w[i] -= lr * u[i - begin];
  }
}

// Consecutive segments [first, last) of about kWindow elements together (a larger segment alone):
// the unit both passes finish before the next.
std::vector<std::pair<size_t, size_t>> windows_of(const std::vector<int64_t>& sizes) {
  std::vector<std::pair<size_t, size_t>> windows;
  size_t first = 0;
  int64_t total = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    if (s > first && total + sizes[s] > kWindow) {
      windows.emplace_back(first, s);
      first = s;
      total = 0;
    }
    total += sizes[s];
  }
  if (first < sizes.size()) windows.emplace_back(first, sizes.size());
  return windows;
}

Weight weight_of(const at::Tensor& weight, const std::optional<at::Tensor>& copy,
                 const std::optional<at::Tensor>& low) {
  Weight w;
  if (low) {
    w.hi = reinterpret_cast<uint16_t*>(weight.data_ptr<at::BFloat16>());
    w.lo = reinterpret_cast<uint16_t*>(low->data_ptr<int16_t>());
  } else {
    w.w = weight.data_ptr<float>();
    if (copy) w.copy = reinterpret_cast<uint16_t*>(copy->data_ptr<at::BFloat16>());
  }
  return w;
}

}  // namespace

// One LAMB step over every segment (a tensor, or one of a fused tensor's chunks): both Adam
// moments in place from the gradients times grad_scale (the clipping factor), then
// w <- w - lrs[s] * ratio * u, the trust ratio ||w|| / ||u|| where adaptives[s] and both norms
// are non-zero, else 1. A float32 weight's bf16_copies[s], where defined, receives the new weight
// rounded to nearest even; a bfloat16 weight is the high half of a split one, low_halves[s]
// (int16) its low half, and both are rewritten. `updates`: float32, the caller's scratch for a
// window's updates between the passes, grown here to the largest window where smaller. Kept by
// the caller, its pages stay mapped from step to step: a buffer allocated per call (125 MB for the
// word embeddings' window) is mapped afresh each step under glibc's default malloc, and
// BERT-Large's LAMB step took 463-491 ms against 424-437 (AMX Xeon, docs/fused-amx.md). Returns
// [n, 2] float64: per segment ||w||^2 (before the step) and ||u||^2. Gradients are float32 or
// bfloat16, moments float32.
at::Tensor lamb_step(const at::Tensor& updates, const std::vector<at::Tensor>& weights,
                     const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& exp_avgs,
                     const std::vector<at::Tensor>& exp_avg_sqs,
                     const std::vector<std::optional<at::Tensor>>& bf16_copies,
                     const std::vector<std::optional<at::Tensor>>& low_halves,
                     const std::vector<double>& weight_decays, const std::vector<double>& lrs,
                     const std::vector<bool>& adaptives, double beta1, double beta2, double eps, int64_t step,
                     double grad_scale) {
  const size_t n = weights.size();
  TORCH_CHECK(grads.size() == n && exp_avgs.size() == n && exp_avg_sqs.size() == n && bf16_copies.size() == n &&
                  low_halves.size() == n && weight_decays.size() == n && lrs.size() == n && adaptives.size() == n,
              "lamb_step: one gradient, moment pair, copy, low half, weight decay, lr and adaptive flag per weight");
  std::vector<int64_t> sizes;
  for (size_t s = 0; s < n; ++s) {
    for (const auto* t : {&weights[s], &grads[s], &exp_avgs[s], &exp_avg_sqs[s]}) check_segment(*t, "lamb_step's tensors");
    TORCH_CHECK(exp_avgs[s].scalar_type() == at::kFloat && exp_avg_sqs[s].scalar_type() == at::kFloat,
                "lamb_step: moments must be float32");
    if (weights[s].scalar_type() == at::kBFloat16) {
      TORCH_CHECK(low_halves[s] && !bf16_copies[s], "lamb_step: a bfloat16 weight takes its low half, and no copy");
      check_segment(*low_halves[s], "lamb_step's low halves");
      TORCH_CHECK(low_halves[s]->scalar_type() == at::kShort && low_halves[s]->numel() == weights[s].numel(),
                  "lamb_step: a low half must be int16 and have its weight's size");
    } else {
      TORCH_CHECK(weights[s].scalar_type() == at::kFloat && !low_halves[s],
                  "lamb_step: weights must be float32, or bfloat16 with their low halves");
    }
    TORCH_CHECK(grads[s].scalar_type() == at::kFloat || grads[s].scalar_type() == at::kBFloat16,
                "lamb_step: gradients must be float32 or bfloat16");
    TORCH_CHECK(grads[s].numel() == weights[s].numel() && exp_avgs[s].numel() == weights[s].numel() &&
                    exp_avg_sqs[s].numel() == weights[s].numel(),
                "lamb_step: a weight's gradient and moments must have its size");
    if (bf16_copies[s]) {
      check_segment(*bf16_copies[s], "lamb_step's bf16 copies");
      TORCH_CHECK(bf16_copies[s]->scalar_type() == at::kBFloat16 && bf16_copies[s]->numel() == weights[s].numel(),
                  "lamb_step: a bf16 copy must be bfloat16 and have its weight's size");
    }
    sizes.push_back(weights[s].numel());
  }
  const Adam a{static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(eps),
               static_cast<float>(1.0 / (1.0 - std::pow(beta1, step))),
               static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(beta2, step)))};
  const float scale = static_cast<float>(grad_scale);
  auto norms = at::zeros({static_cast<int64_t>(n), 2}, at::kDouble);
  double* sums = norms.data_ptr<double>();
  std::vector<float> step_sizes(n);
  const auto windows = windows_of(sizes);
  int64_t largest = 0;
  for (const auto& [first, last] : windows) {
    int64_t total = 0;
    for (size_t s = first; s < last; ++s) total += sizes[s];
    largest = std::max(largest, total);
  }
  TORCH_CHECK(updates.device().is_cpu() && updates.scalar_type() == at::kFloat && updates.is_contiguous(),
              "lamb_step: updates must be a contiguous float32 CPU tensor");
  // uninitialised where grown (zeros would be written twice)
  if (updates.numel() < largest) updates.resize_({largest});
  float* scratch = updates.data_ptr<float>();
  for (const auto& [first, last] : windows) {
    const auto blocks = blocks_of(sizes, first, last);
    std::vector<double> partial(2 * blocks.size());
    std::vector<int64_t> offsets(blocks.size() + 1, 0);  // each block's place in the window's updates
    for (size_t b = 0; b < blocks.size(); ++b) offsets[b + 1] = offsets[b] + blocks[b].end - blocks[b].begin;
#pragma omp parallel for schedule(dynamic)
    for (size_t b = 0; b < blocks.size(); ++b) {
      const int64_t s = blocks[b].segment;
      const Weight w = weight_of(weights[s], bf16_copies[s], low_halves[s]);
      float* m = exp_avgs[s].data_ptr<float>();
      float* v = exp_avg_sqs[s].data_ptr<float>();
      const float wd = static_cast<float>(weight_decays[s]);
      if (grads[s].scalar_type() == at::kFloat)
        moments_block(w, grads[s].data_ptr<float>(), m, v, scratch + offsets[b], wd, scale, a,
                      blocks[b].begin, blocks[b].end, &partial[2 * b]);
      else
        moments_block(w, grads[s].data_ptr<at::BFloat16>(), m, v, scratch + offsets[b], wd, scale, a,
                      blocks[b].begin, blocks[b].end, &partial[2 * b]);
    }
    add_per_segment(blocks, partial, 2, sums);
    for (size_t s = first; s < last; ++s) {
      const double w_sq = sums[2 * s], u_sq = sums[2 * s + 1];
      const double ratio = adaptives[s] && w_sq > 0 && u_sq > 0 ? std::sqrt(w_sq / u_sq) : 1.0;
      step_sizes[s] = static_cast<float>(lrs[s] * ratio);
    }
#pragma omp parallel for schedule(dynamic)
    for (size_t b = 0; b < blocks.size(); ++b) {
      const int64_t s = blocks[b].segment;
      apply_block(weight_of(weights[s], bf16_copies[s], low_halves[s]), scratch + offsets[b], step_sizes[s],
                  blocks[b].begin, blocks[b].end);
    }
  }
  return norms;
}

// A float32 tensor as its two halves (elements.h's split_hi, split_lo): [hi bfloat16, lo int16].
std::vector<at::Tensor> split_weight(const at::Tensor& w) {
  check_segment(w, "split_weight's tensor");
  TORCH_CHECK(w.scalar_type() == at::kFloat, "split_weight takes a float32 tensor");
  auto hi = at::empty(w.sizes(), w.options().dtype(at::kBFloat16));
  auto lo = at::empty(w.sizes(), w.options().dtype(at::kShort));
  const float* x = w.data_ptr<float>();
  auto* h = reinterpret_cast<uint16_t*>(hi.data_ptr<at::BFloat16>());
  auto* l = reinterpret_cast<uint16_t*>(lo.data_ptr<int16_t>());
#pragma omp parallel for simd
  for (int64_t i = 0; i < w.numel(); ++i) {
    h[i] = split_hi(x[i]);
    l[i] = split_lo(x[i]);
  }
  return {hi, lo};
}

// The float32 tensor whose halves `hi` (bfloat16) and `lo` (int16) are.
at::Tensor join_weight(const at::Tensor& hi, const at::Tensor& lo) {
  check_segment(hi, "join_weight's tensors");
  check_segment(lo, "join_weight's tensors");
  TORCH_CHECK(hi.scalar_type() == at::kBFloat16 && lo.scalar_type() == at::kShort && hi.numel() == lo.numel(),
              "join_weight takes a bfloat16 high half and an int16 low half of one size");
  auto w = at::empty(hi.sizes(), hi.options().dtype(at::kFloat));
  const auto* h = reinterpret_cast<const uint16_t*>(hi.data_ptr<at::BFloat16>());
  const auto* l = reinterpret_cast<const uint16_t*>(lo.data_ptr<int16_t>());
  float* x = w.data_ptr<float>();
#pragma omp parallel for simd
  for (int64_t i = 0; i < hi.numel(); ++i) x[i] = join(h[i], l[i]);
  return w;
}
