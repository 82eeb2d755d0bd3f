// The Python module of the fused backend's kernels (harness.kernels.load): one binding per kernel,
// defined in the file of its concept.
#include <ATen/core/Tensor.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <vector>

at::Tensor sum_squares(const std::vector<at::Tensor>& xs);
at::Tensor lamb_step(const at::Tensor& updates, const std::vector<at::Tensor>& weights,
                     const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& exp_avgs,
                     const std::vector<at::Tensor>& exp_avg_sqs,
                     const std::vector<std::optional<at::Tensor>>& bf16_copies,
                     const std::vector<std::optional<at::Tensor>>& low_halves,
                     const std::vector<double>& weight_decays, const std::vector<double>& lrs,
                     const std::vector<bool>& adaptives, double beta1, double beta2, double eps, int64_t step,
                     double grad_scale);
std::vector<at::Tensor> split_weight(const at::Tensor& w);
at::Tensor join_weight(const at::Tensor& hi, const at::Tensor& lo);
std::vector<at::Tensor> dropout_add_norm_forward(const at::Tensor& y, const at::Tensor& bias,
                                                 const at::Tensor& residual, const at::Tensor& gamma,
                                                 const at::Tensor& beta, double p, double eps, int64_t seed,
                                                 bool with_bf16);
std::vector<at::Tensor> dropout_add_norm_backward(const at::Tensor& grad, const at::Tensor& grad16,
                                                  const at::Tensor& h, const at::Tensor& mean,
                                                  const at::Tensor& rstd, const at::Tensor& gamma, double p,
                                                  int64_t seed, at::ScalarType y_dtype);
at::Tensor dropout_keep_mask(int64_t n, double p, int64_t seed);
at::Tensor bias_gelu_forward(const at::Tensor& y, const at::Tensor& bias);
std::vector<at::Tensor> bias_gelu_backward(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& bias);
std::vector<at::Tensor> softmax_dropout_forward(const at::Tensor& scores, const at::Tensor& key_mask,
                                                int64_t rows_per_mask, double scale, double p, int64_t seed);
at::Tensor softmax_dropout_backward(const at::Tensor& grad, const at::Tensor& probs, const at::Tensor& out,
                                    double scale, double p);
at::Tensor qkv_heads_forward(const at::Tensor& y, const at::Tensor& bias, int64_t batch, int64_t heads);
std::vector<at::Tensor> qkv_heads_backward(const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv,
                                           bool k_transposed);
at::Tensor transpose_2d(const at::Tensor& x);
at::Tensor mm_rows(const at::Tensor& a, const at::Tensor& b);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sum_squares", &sum_squares, "Squared L2 norm of each tensor, [n] float64");
  m.def("lamb_step", &lamb_step, "one LAMB step, moments and weights in place; per segment ||w||^2, ||u||^2");
  m.def("split_weight", &split_weight, "a float32 tensor as its halves: (hi bfloat16, lo int16)");
  m.def("join_weight", &join_weight, "the float32 tensor of halves hi (bfloat16) and lo (int16)");
  m.def("dropout_add_norm_forward", &dropout_add_norm_forward,
        "LayerNorm(dropout(y + bias) + residual): (out, out16, h, mean, rstd)");
  m.def("dropout_add_norm_backward", &dropout_add_norm_backward,
        "its backward: (dy, dbias, dresidual, dgamma, dbeta)");
  m.def("softmax_dropout_forward", &softmax_dropout_forward,
        "dropout(softmax(scale * scores + mask)): (out, probs)");
  m.def("softmax_dropout_backward", &softmax_dropout_backward, "its backward: the scores' gradient");
  m.def("qkv_heads_forward", &qkv_heads_forward, "y + bias as q, k, v: [3, B, heads, S, head_dim]");
  m.def("qkv_heads_backward", &qkv_heads_backward, "its backward: (dy, dbias); dk as its transpose with k_transposed",
        pybind11::arg("dq"), pybind11::arg("dk"), pybind11::arg("dv"), pybind11::arg("k_transposed") = false);
  m.def("bias_gelu_forward", &bias_gelu_forward, "GELU(y + bias), erf");
  m.def("bias_gelu_backward", &bias_gelu_backward, "its backward: (dy, dbias)");
  m.def("transpose_2d", &transpose_2d, "a [rows, cols] bf16 or fp32 matrix as a contiguous [cols, rows]");
  m.def("mm_rows", &mm_rows, "a @ b, a's rows split among the threads, each slice one GEMM on one thread");
  m.def("dropout_keep_mask", &dropout_keep_mask, "the keep mask of elements [0, n) under a seed");
}
