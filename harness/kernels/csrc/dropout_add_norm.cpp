// the dense layer's bias -> dropout -> add the residual -> LayerNorm, BERT's post-norm step after the
// attention output and the FFN output GEMMs, forward and backward in one pass over each row
// (harness.kernels.layers). The GEMM runs without its bias, whose gradient is summed here.
//
// The dropout mask comes from philox.h: drawn inside the kernel that applies it and drawn again,
// not stored, in the backward pass.
//
// Forward saves h = dropout(y + bias) + residual (fp32) and each row's mean and 1/std; the
// backward needs nothing else. Under bf16 autocast the forward also writes the output's bf16 copy
// for the next GEMM, and the backward takes that copy's gradient beside the output's. The
// gradients of the dense bias and of the LayerNorm weight and bias are summed over fixed blocks of
// rows, in block order: the same bits on any thread count.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "elements.h"
#include "philox.h"
#include "prefetch.h"
#include "row_blocks.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using harness_kernels::draw_lanes;
using harness_kernels::Dropout;
using harness_kernels::dropout_of;
using harness_kernels::kRowsAhead;
using harness_kernels::load;
using harness_kernels::prefetch_read;
using harness_kernels::store;

using harness_kernels::block_partials;
using harness_kernels::kRowsPerBlock;
using harness_kernels::row_blocks;
using harness_kernels::sum_in_block_order;
using harness_kernels::zero_partial;

// The LayerNorm's output of one row, and its bf16 copy where out16 is not null: the copy the next
// GEMM reads under bf16 autocast, written here instead of in a cast's pass of its own. Two loops, so
// that neither tests the pointer per element.
inline void normalize_row(const float* __restrict hr, float mu, float inv, const float* __restrict gamma,
                          const float* __restrict beta, float* __restrict out, c10::BFloat16* __restrict out16,
                          int64_t width) {
  if (out16 == nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < width; ++i) out[i] = (hr[i] - mu) * inv * gamma[i] + beta[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < width; ++i) {
      out[i] = (hr[i] - mu) * inv * gamma[i] + beta[i];
      store(out16, i, out[i]);
    }
  }
}

template <typename T>
void forward_rows(const T* y, const float* bias, const float* res, const float* gamma, const float* beta,
                  float* out, c10::BFloat16* out16, float* h, float* mean, float* rstd, int64_t rows,
                  int64_t width, Dropout d, uint64_t seed, float eps) {
#pragma omp parallel
  {
    std::vector<uint32_t> buffer(4 * (width / 8 + 2));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * width;
      const uint16_t* lanes = draw_lanes(seed, base, width, buffer);
      float* hr = h + base;
      double sum = 0.0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < width; ++i) {
        // loaded whether kept or not: AVX2 has no masked 16-bit load, so a load under the
        // condition leaves the loop scalar there
        const float scaled = (load(y, base + i) + bias[i]) * d.scale;
        const float kept = lanes[i] >= d.dropped ? scaled : 0.f;
        hr[i] = kept + res[base + i];
        sum += hr[i];
      }
      const float mu = static_cast<float>(sum / width);
      double sq = 0.0;
#pragma omp simd reduction(+ : sq)
      for (int64_t i = 0; i < width; ++i) sq += static_cast<double>(hr[i] - mu) * (hr[i] - mu);
      const float inv = 1.f / std::sqrt(static_cast<float>(sq / width) + eps);
      mean[r] = mu;
      rstd[r] = inv;
      normalize_row(hr, mu, inv, gamma, beta, out + base, out16 == nullptr ? nullptr : out16 + base, width);
    }
  }
}

// The output's gradient of one row: the fp32 output's, plus the bf16 copy's where it has one (the
// sum autograd would otherwise make in a pass of its own, after casting the copy's to fp32).
inline void add_row(const float* __restrict grad, const c10::BFloat16* __restrict grad16, float* __restrict sum,
                    int64_t width) {
#pragma omp simd
  for (int64_t i = 0; i < width; ++i) sum[i] = grad[i] + load(grad16, i);
}

template <typename T>
void backward_rows(const float* grad, const c10::BFloat16* grad16, const float* h, const float* mean,
                   const float* rstd, const float* gamma, T* dy, float* dres, float* dbias_blocks,
                   float* dgamma_blocks, float* dbeta_blocks, int64_t rows, int64_t width, Dropout d,
                   uint64_t seed) {
  const int64_t blocks = row_blocks(rows);
#pragma omp parallel
  {
    std::vector<uint32_t> buffer(4 * (width / 8 + 2));
    std::vector<float> both(grad16 == nullptr ? 0 : width);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      float* dg = dgamma_blocks + b * width;
      float* db = dbeta_blocks + b * width;
      float* dyb = dbias_blocks + b * width;
      for (float* partial : {dg, db, dyb}) zero_partial(partial, width);
      for (int64_t r = b * kRowsPerBlock; r < std::min(rows, (b + 1) * kRowsPerBlock); ++r) {
        const int64_t base = r * width;
        if (r + kRowsAhead < rows) {
          const int64_t next = base + kRowsAhead * width;
          prefetch_read(grad + next, width);
          if (grad16 != nullptr) prefetch_read(grad16 + next, width);
          prefetch_read(h + next, width);
        }
        const float* g = grad + base;
        if (grad16 != nullptr) {
          add_row(g, grad16 + base, both.data(), width);
          g = both.data();
        }
        const float* hr = h + base;
        const float mu = mean[r], inv = rstd[r];
        double c1 = 0.0, c2 = 0.0;
#pragma omp simd reduction(+ : c1, c2)
        for (int64_t i = 0; i < width; ++i) {
          const float xhat = (hr[i] - mu) * inv;
          const float gx = g[i] * gamma[i];
          c1 += gx;
          c2 += static_cast<double>(gx) * xhat;
          dg[i] += g[i] * xhat;
          db[i] += g[i];
        }
        const float m1 = static_cast<float>(c1 / width), m2 = static_cast<float>(c2 / width);
        const uint16_t* lanes = draw_lanes(seed, base, width, buffer);
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) {
          const float xhat = (hr[i] - mu) * inv;
          const float dh = inv * (g[i] * gamma[i] - m1 - xhat * m2);
          const float dyi = lanes[i] >= d.dropped ? dh * d.scale : 0.f;
          dres[base + i] = dh;
          dyb[i] += dyi;
          store(dy, base + i, dyi);
        }
      }
    }
  }
}

void check(const at::Tensor& t, const char* what, at::ScalarType type) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == type, what,
              " must be a contiguous CPU tensor of ", type);
}

}  // namespace

// y: [rows, width] float32 or bfloat16 (the dense layer's output without its bias); bias [width]
// float32; residual [rows, width] float32; gamma, beta [width] float32; with_bf16: write the
// output's bf16 copy too. Returns (out, out16, h, mean, rstd): the LayerNorm output (float32), its
// bf16 copy (empty without with_bf16), and what the backward pass needs.
std::vector<at::Tensor> dropout_add_norm_forward(const at::Tensor& y, const at::Tensor& bias,
                                                 const at::Tensor& residual, const at::Tensor& gamma,
                                                 const at::Tensor& beta, double p, double eps, int64_t seed,
                                                 bool with_bf16) {
  TORCH_CHECK(y.dim() == 2 && residual.sizes() == y.sizes(), "y and residual must be [rows, width] alike");
  TORCH_CHECK(y.is_contiguous() && (y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16),
              "y must be a contiguous float32 or bfloat16 tensor");
  check(bias, "bias", at::kFloat);
  check(residual, "residual", at::kFloat);
  check(gamma, "gamma", at::kFloat);
  check(beta, "beta", at::kFloat);
  const int64_t rows = y.size(0), width = y.size(1);
  TORCH_CHECK(bias.numel() == width && gamma.numel() == width && beta.numel() == width,
              "bias, gamma and beta must have the rows' width");
  auto out = at::empty({rows, width}, residual.options());
  auto out16 = at::empty({with_bf16 ? rows : 0, width}, residual.options().dtype(at::kBFloat16));
  auto h = at::empty({rows, width}, residual.options());
  auto mean = at::empty({rows}, residual.options());
  auto rstd = at::empty({rows}, residual.options());
  c10::BFloat16* o16 = with_bf16 ? out16.data_ptr<at::BFloat16>() : nullptr;
  const Dropout d = dropout_of(p);
  if (y.scalar_type() == at::kFloat)
    forward_rows(y.data_ptr<float>(), bias.data_ptr<float>(), residual.data_ptr<float>(), gamma.data_ptr<float>(),
                 beta.data_ptr<float>(), out.data_ptr<float>(), o16, h.data_ptr<float>(), mean.data_ptr<float>(),
                 rstd.data_ptr<float>(), rows, width, d, static_cast<uint64_t>(seed), static_cast<float>(eps));
  else
    forward_rows(y.data_ptr<at::BFloat16>(), bias.data_ptr<float>(), residual.data_ptr<float>(),
                 gamma.data_ptr<float>(), beta.data_ptr<float>(), out.data_ptr<float>(), o16, h.data_ptr<float>(),
                 mean.data_ptr<float>(), rstd.data_ptr<float>(), rows, width, d, static_cast<uint64_t>(seed),
                 static_cast<float>(eps));
  return {out, out16, h, mean, rstd};
}

// grad: [rows, width] float32, the LayerNorm output's gradient; grad16: its bf16 copy's gradient,
// [rows, width] bfloat16, or empty where the copy had none. Returns (dy in y_dtype, dbias,
// dresidual, dgamma, dbeta).
std::vector<at::Tensor> dropout_add_norm_backward(const at::Tensor& grad, const at::Tensor& grad16,
                                                  const at::Tensor& h, const at::Tensor& mean,
                                                  const at::Tensor& rstd, const at::Tensor& gamma, double p,
                                                  int64_t seed, at::ScalarType y_dtype) {
  check(grad, "grad", at::kFloat);
  check(h, "h", at::kFloat);
  check(gamma, "gamma", at::kFloat);
  TORCH_CHECK(grad.sizes() == h.sizes() && grad.dim() == 2, "grad and h must be [rows, width] alike");
  const bool with_bf16 = grad16.numel() > 0;
  if (with_bf16) {
    check(grad16, "grad16", at::kBFloat16);
    TORCH_CHECK(grad16.sizes() == grad.sizes(), "grad16 must be empty or shaped as grad");
  }
  TORCH_CHECK(y_dtype == at::kFloat || y_dtype == at::kBFloat16, "y_dtype must be float32 or bfloat16");
  const int64_t rows = grad.size(0), width = grad.size(1);
  const int64_t blocks = row_blocks(rows);
  auto dy = at::empty({rows, width}, grad.options().dtype(y_dtype));
  auto dres = at::empty({rows, width}, grad.options());
  auto dbias_blocks = block_partials(rows, width, grad.options());
  auto dgamma_blocks = block_partials(rows, width, grad.options());
  auto dbeta_blocks = block_partials(rows, width, grad.options());
  const c10::BFloat16* g16 = with_bf16 ? grad16.data_ptr<at::BFloat16>() : nullptr;
  const Dropout d = dropout_of(p);
  if (y_dtype == at::kFloat)
    backward_rows(grad.data_ptr<float>(), g16, h.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                  gamma.data_ptr<float>(), dy.data_ptr<float>(), dres.data_ptr<float>(),
                  dbias_blocks.data_ptr<float>(), dgamma_blocks.data_ptr<float>(), dbeta_blocks.data_ptr<float>(),
                  rows, width, d, static_cast<uint64_t>(seed));
  else
    backward_rows(grad.data_ptr<float>(), g16, h.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                  gamma.data_ptr<float>(), dy.data_ptr<at::BFloat16>(), dres.data_ptr<float>(),
                  dbias_blocks.data_ptr<float>(), dgamma_blocks.data_ptr<float>(), dbeta_blocks.data_ptr<float>(),
                  rows, width, d, static_cast<uint64_t>(seed));
  return {dy, sum_in_block_order(dbias_blocks), dres, sum_in_block_order(dgamma_blocks),
          sum_in_block_order(dbeta_blocks)};
}

// The keep mask the kernels draw for elements [0, n) under `seed`, as bool: for tests.
at::Tensor dropout_keep_mask(int64_t n, double p, int64_t seed) {
  const Dropout d = dropout_of(p);
  std::vector<uint32_t> buffer(4 * (n / 8 + 2));
  const uint16_t* lanes = draw_lanes(static_cast<uint64_t>(seed), 0, n, buffer);
  auto keep = at::empty({n}, at::kBool);
  bool* k = keep.data_ptr<bool>();
  for (int64_t i = 0; i < n; ++i) k[i] = lanes[i] >= d.dropped;
  return keep;
}
