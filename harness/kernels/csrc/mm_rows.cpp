// C = A B with A's rows split among the OpenMP threads, each running ATen's GEMM on its slice
// alone (harness.kernels.row_split): for the shapes where the library's own threading leaves
// cores idle.
//
// On the AMX Xeon with 2 threads, oneDNN ran a bf16 [1024, 1024] x [1024, 1024] GEMM (BERT-Large's
// attention output projection, forward and both gradients, at 1024 tokens) at 1360-1450 GFLOP/s,
// its one-thread rate, and [2048, 1024] x [1024, 1024] at 2620; each thread's half of the rows alone
// ran at 2390-2520 together (docs/fused-amx.md). Inside the parallel region ATen's and oneDNN's
// own parallel loops run on the calling thread only.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>

namespace {

// Slices start at multiples of this many rows: whole tiles of the GEMM's row blocking.
constexpr int64_t kRowGrain = 32;

}  // namespace

// a: [m, k], contiguous; b: [k, n], any strides (a transposed view too); bf16 or fp32 alike.
// Returns a @ b, [m, n] contiguous.
at::Tensor mm_rows(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "mm_rows: a [m, k] and b [k, n]");
  TORCH_CHECK(a.is_contiguous() && a.device().is_cpu() && b.device().is_cpu(), "mm_rows: a contiguous CPU matrix");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "mm_rows: a and b of one dtype");
  const int64_t m = a.size(0);
  auto out = at::empty({m, b.size(1)}, a.options());
  const int64_t grains = (m + kRowGrain - 1) / kRowGrain;
  std::exception_ptr failure;
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t first = std::min(m, grains * t / threads * kRowGrain);
    const int64_t last = std::min(m, grains * (t + 1) / threads * kRowGrain);
    try {
      // grad mode is per thread, on in a fresh one: the calls below are the GEMM alone
      at::NoGradGuard no_grad;
      if (last > first) {
        auto slice = out.narrow(0, first, last - first);
        at::mm_out(slice, a.narrow(0, first, last - first), b);
      }
    } catch (...) {
      // an exception must not leave an OpenMP region
#pragma omp critical
      failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  return out;
}
