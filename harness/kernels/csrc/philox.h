// Dropout masks from Philox4x32-10 (Salmon et al. 2011, the counter-based generator of cuRAND and
// JAX), keyed by a per-call seed and counted by the element's index, so that a kernel draws the
// mask it applies and its backward can draw the same mask again instead of storing it. Each 128-bit
// output gives eight 16-bit lanes, one per element; an element is dropped when its lane is below
// round(p * 65536), and kept ones are scaled by 65536 / (65536 - dropped), as
// harness.models.dropout does: the same keep probability, unbiased, from another generator.
#pragma once

#include <c10/util/Exception.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdint>
#include <vector>

namespace harness_kernels {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

// Groups [group0, group0 + groups) into w, four words each: the loop over them vectorises (32 x 32 ->
// 64-bit multiplies), the rounds unrolled.
inline void philox_groups(uint32_t key0, uint32_t key1, int64_t group0, int64_t groups, uint32_t* w) {
#pragma omp simd
  for (int64_t g = 0; g < groups; ++g) {
    const uint64_t counter = static_cast<uint64_t>(group0 + g);
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = key0, k1 = key1;
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
      const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
      const uint32_t next0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
      const uint32_t next2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
      c1 = static_cast<uint32_t>(p1);
      c3 = static_cast<uint32_t>(p0);
      c0 = next0;
      c2 = next2;
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    w[4 * g] = c0;
    w[4 * g + 1] = c1;
    w[4 * g + 2] = c2;
    w[4 * g + 3] = c3;
  }
}

#if defined(__AVX512F__)
// The low and high words of sixteen 32 x 32-bit products a * m: the odd lanes multiplied after a
// shift, as AVX-512 multiplies the even ones.
inline void mul_lo_hi(__m512i a, __m512i m, __m512i& lo, __m512i& hi) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

inline __m512i join(__m256i low, __m256i high) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
}

// Sixteen groups from group0 into w, the same words as philox_groups: one group a 32-bit lane.
// GCC's vectorisation of philox_groups holds a group in a 64-bit lane and narrows its products back
// each round (vpermt2d); this holds sixteen: 0.29 ns an element on one thread of the AMX Xeon
// against 0.67, and in the step the softmax forward took 1.59-1.60 ms a call against 1.88-1.93,
// the LayerNorm's 0.72-0.79 and 1.14-1.16 against 0.87-0.88 and 1.26-1.33 (docs/fused-amx-prefetch.md).
inline void philox_16_groups(uint32_t key0, uint32_t key1, int64_t group0, uint32_t* w) {
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i base = _mm512_set1_epi64(group0);
  const __m512i first8 = _mm512_add_epi64(base, lane);
  const __m512i next8 = _mm512_add_epi64(first8, _mm512_set1_epi64(8));
  // each counter's low and high words, groups in order
  __m512i c0 = join(_mm512_cvtepi64_epi32(first8), _mm512_cvtepi64_epi32(next8));
  __m512i c1 = join(_mm512_cvtepi64_epi32(_mm512_srli_epi64(first8, 32)),
                    _mm512_cvtepi64_epi32(_mm512_srli_epi64(next8, 32)));
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kMul0)), m1 = _mm512_set1_epi32(static_cast<int>(kMul1));
  uint32_t k0 = key0, k1 = key1;
  for (int round = 0; round < 10; ++round) {
    __m512i lo0, hi0, lo1, hi1;
    mul_lo_hi(c0, m0, lo0, hi0);
    mul_lo_hi(c2, m1, lo1, hi1);
    // 0x96: a ^ b ^ c
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
    c1 = lo1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  // sixteen groups of four words, interleaved: w[4 g + j] = c_j[g]
  const __m512i a = _mm512_unpacklo_epi32(c0, c1), b = _mm512_unpackhi_epi32(c0, c1);
  const __m512i c = _mm512_unpacklo_epi32(c2, c3), d = _mm512_unpackhi_epi32(c2, c3);
  const __m512i g0 = _mm512_unpacklo_epi64(a, c), g1 = _mm512_unpackhi_epi64(a, c);
  const __m512i g2 = _mm512_unpacklo_epi64(b, d), g3 = _mm512_unpackhi_epi64(b, d);
  // g_j holds group 4q + j in its 128-bit lane q: a 4 x 4 transpose of 128-bit lanes puts them in order
  const __m512i t0 = _mm512_shuffle_i64x2(g0, g1, 0x44), t1 = _mm512_shuffle_i64x2(g0, g1, 0xEE);
  const __m512i t2 = _mm512_shuffle_i64x2(g2, g3, 0x44), t3 = _mm512_shuffle_i64x2(g2, g3, 0xEE);
  _mm512_storeu_si512(w, _mm512_shuffle_i64x2(t0, t2, 0x88));
  _mm512_storeu_si512(w + 16, _mm512_shuffle_i64x2(t0, t2, 0xDD));
  _mm512_storeu_si512(w + 32, _mm512_shuffle_i64x2(t1, t3, 0x88));
  _mm512_storeu_si512(w + 48, _mm512_shuffle_i64x2(t1, t3, 0xDD));
}
#endif

// The 16-bit lanes of elements [first, first + n): Philox4x32-10 of counter (g, 0, 0, 0) and key
// (seed), for each group g of eight elements, its four 32-bit words taken as eight lanes. Drawn
// into `words` (room for 4 * (n / 8 + 2)); returns where element `first`'s lane is. The groups are
// independent: sixteen at a time where the build has AVX-512, the rest by philox_groups.
inline const uint16_t* draw_lanes(uint64_t seed, int64_t first, int64_t n, std::vector<uint32_t>& words) {
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const int64_t group0 = first / 8, groups = (first + n + 7) / 8 - group0;
  uint32_t* w = words.data();
  int64_t done = 0;
#if defined(__AVX512F__)
  for (; done + 16 <= groups; done += 16) philox_16_groups(key0, key1, group0 + done, w + 4 * done);
#endif
  philox_groups(key0, key1, group0 + done, groups - done, w + 4 * done);
  return reinterpret_cast<const uint16_t*>(w) + (first - group0 * 8);
}

struct Dropout {
  uint32_t dropped;  // lanes below this drop their element
  float scale;
};

inline Dropout dropout_of(double p) {
  TORCH_CHECK(p >= 0 && p < 1, "dropout probability must be in [0, 1)");
  const uint32_t dropped = static_cast<uint32_t>(std::lround(p * 65536.0));
  TORCH_CHECK(dropped < 65536, "dropout probability too close to 1 for 16-bit lanes");
  return {dropped, static_cast<float>(65536.0 / (65536.0 - dropped))};
}

}  // namespace harness_kernels
