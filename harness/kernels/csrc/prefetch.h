// Software prefetch for the row kernels whose rows come from memory the caches no longer hold: the
// loop asks for the lines of the row it will reach kRowsAhead rows later before computing the row
// in hand.
//
// Inside a training step a kernel's inputs were written by a GEMM or saved by the forward pass,
// and its outputs go to blocks last written a step ago; the hardware's prefetchers did not hide
// that. On the AMX Xeon (KVM, 2 cores), BERT-Large phase 1, each kernel's calls timed in the step
// (tests/benchmarks/step_kernels.py, docs/fused-amx-prefetch.md), medians a call:
// - GELU forward 2.75-2.85 ms without, 1.96-1.98 with;
// - softmax backward 0.75-0.85 ms, 0.64; the head split 0.60-0.64, 0.54-0.57 forward and
//   0.75-0.81, 0.69-0.70 backward; the LayerNorm backward 1.28-1.46 ms, 1.26-1.31 (reads only).
// Where it did not help it is left out: GELU's backward (compute-bound: 2.0 ms in the step, 1.8 in
// a loop) ran 2.3-2.7 ms with it, the LayerNorm forward (whose input the GEMM has just written) 0.89-0.99
// against 0.79-0.81, the softmax forward (likewise) the same.
#pragma once

#include <cstdint>

namespace harness_kernels {

constexpr int64_t kRowsAhead = 2;
constexpr int64_t kLine = 64;

// The lines of `count` elements from p, for reading.
template <typename T>
inline void prefetch_read(const T* p, int64_t count) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t i = 0; i < count * static_cast<int64_t>(sizeof(T)); i += kLine) __builtin_prefetch(bytes + i, 0, 3);
}

// The lines of `count` elements from p, for writing: owned before the stores reach them.
template <typename T>
inline void prefetch_write(T* p, int64_t count) {
  char* bytes = reinterpret_cast<char*>(p);
  for (int64_t i = 0; i < count * static_cast<int64_t>(sizeof(T)); i += kLine) __builtin_prefetch(bytes + i, 1, 3);
}

}  // namespace harness_kernels
