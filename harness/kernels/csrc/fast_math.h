// exp and erf that the compiler vectorises. glibc's expf and erff are scalar calls unless the
// build allows -ffast-math (which would also change every other loop's rounding), so a loop over
// them runs one element at a time; so do std::floor, std::fmin and std::fmax, which this file
// avoids for the same reason. These are branch-free polynomials in fp32, Cephes' expf
// (within 1e-7 relative) and Abramowitz & Stegun 7.1.26's erf (within 6e-7 absolute in fp32): the
// kernels' tests hold them to ATen's results.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace harness_kernels {

// e^x; 0 for x below -87.3 (where fp32 goes subnormal), as softmax wants of a masked score; NaN
// stays NaN (the clamp below would turn it into a number).
inline float fast_exp(float x) {
  const bool nan = x != x;
  const bool underflow = x < -87.3f;
  // comparisons, not fmin/fmax: their NaN rules keep GCC from vectorising them without -ffast-math
  const float low = x < -87.3f ? -87.3f : x;
  const float c = low > 88.7f ? 88.7f : low;
  // rounded to nearest by adding and taking away 1.5 * 2^23: std::floor too stays scalar
  const float n = (c * 1.44269504088896341f + 12582912.f) - 12582912.f;
  // c - n ln 2 in two steps, the constant split so that n * its high part is exact
  float r = c - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return nan ? x : underflow ? 0.0f : y * two_n;
}

// erf(x) from e^(-x^2), which a caller may need as well (GELU's derivative: one exp for both).
inline float erf_from_exp(float x, float exp_minus_x2) {
  const float a = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * exp_minus_x2;
  return std::copysign(y, x);
}

inline float fast_erf(float x) { return erf_from_exp(x, fast_exp(-x * x)); }

}  // namespace harness_kernels
