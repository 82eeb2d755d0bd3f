// Dropout masks from Philox4x32-10 (Salmon et al. 2011, the counter-based generator of cuRAND and
// JAX), keyed by a per-call seed and counted by the element's index, so that a kernel draws the
// mask it applies and its backward can draw the same mask again instead of storing it. Each 128-bit
// output gives eight 16-bit lanes, one per element; an element is dropped when its lane is below
// round(p * 65536), and kept ones are scaled by 65536 / (65536 - dropped), as
// harness.models.dropout does: the same keep probability, unbiased, from another generator.
#pragma once

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace harness_kernels {

// The 16-bit lanes of elements [first, first + n): Philox4x32-10 of counter (g, 0, 0, 0) and key
// (seed), for each group g of eight elements, its four 32-bit words taken as eight lanes. Drawn
// into `words` (room for 4 * (n / 8 + 2)); returns where element `first`'s lane is. The groups are
// independent: the loop over them vectorises (32 x 32 -> 64-bit multiplies), the rounds unrolled.
inline const uint16_t* draw_lanes(uint64_t seed, int64_t first, int64_t n, std::vector<uint32_t>& words) {
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const int64_t group0 = first / 8, groups = (first + n + 7) / 8 - group0;
  uint32_t* w = words.data();
#pragma omp simd
  for (int64_t g = 0; g < groups; ++g) {
    const uint64_t counter = static_cast<uint64_t>(group0 + g);
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = key0, k1 = key1;
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
      const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
      const uint32_t next0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
      const uint32_t next2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
      c1 = static_cast<uint32_t>(p1);
      c3 = static_cast<uint32_t>(p0);
      c0 = next0;
      c2 = next2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    w[4 * g] = c0;
    w[4 * g + 1] = c1;
    w[4 * g + 2] = c2;
    w[4 * g + 3] = c3;
  }
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
