// Loading and storing one element as fp32, whatever the tensor holds: the kernels compute in fp32.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>
#include <cstring>

namespace harness_kernels {

inline float load(const float* p, int64_t i) { return p[i]; }

inline float load(const c10::BFloat16* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as torch's .to(torch.bfloat16); NaN stays a (quiet) NaN. Branch-free,
// so that the loops calling it vectorise.
inline uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return f != f ? static_cast<uint16_t>(0x7FC0u) : static_cast<uint16_t>(rounded);
}

// An fp32 weight held as two 16-bit halves: `hi`, the weight rounded to nearest bfloat16 with ties
// away from zero, which the GEMMs read as the bf16 weight, and `lo`, the fp32 word's low 16 bits.
// hi's rounding added 0 or 1 to the word's high half; lo read as a signed int16 takes it back, so
// join(split(w)) is w, bit for bit, for every word (the sums wrap modulo 2^32; only a NaN's hi may
// not be a NaN, and a finite step writes none). Round to nearest even cannot be split so: at a tie,
// two words would share one pair of halves.
inline uint16_t split_hi(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return static_cast<uint16_t>((bits + 0x8000u) >> 16);
}

inline uint16_t split_lo(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return static_cast<uint16_t>(bits);
}

inline float join(uint16_t hi, uint16_t lo) {
  const auto low = static_cast<uint32_t>(static_cast<int32_t>(static_cast<int16_t>(lo)));  // sign-extended
  uint32_t bits = (static_cast<uint32_t>(hi) << 16) + low;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline void store(float* p, int64_t i, float v) { p[i] = v; }

inline void store(c10::BFloat16* p, int64_t i, float v) { reinterpret_cast<uint16_t*>(p)[i] = to_bf16(v); }

}  // namespace harness_kernels
