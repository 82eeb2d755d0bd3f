// A tile of a row-major matrix written transposed, through fbgemm's transpose (in torch,
// vectorised for the host at run time): transpose_2d's column blocks and the key gradient's tiles
// in qkv_heads. bf16 is moved as its bits.
#pragma once

#include <c10/util/BFloat16.h>
#include <fbgemm/Utils.h>

#include <cstdint>

namespace harness_kernels {

// src: rows x cols, rows ld_src apart; dst: cols x rows, rows ld_dst apart.
inline void transpose_tile(const float* src, int64_t rows, int64_t cols, int64_t ld_src, float* dst,
                           int64_t ld_dst) {
  fbgemm::transpose_simd<float>(rows, cols, src, ld_src, dst, ld_dst);
}

inline void transpose_tile(const c10::BFloat16* src, int64_t rows, int64_t cols, int64_t ld_src, c10::BFloat16* dst,
                           int64_t ld_dst) {
  fbgemm::transpose_simd<uint16_t>(rows, cols, reinterpret_cast<const uint16_t*>(src), ld_src,
                                   reinterpret_cast<uint16_t*>(dst), ld_dst);
}

}  // namespace harness_kernels
