// Helpers shared by textgen's CPU RNN kernels (cpu_gru.cpp, cpu_lstm.cpp).
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace textgen {

// exp for float without branches, so that loops using it vectorise (always inlined: a call
// would stop that). Cephes-style: 2^n * e^r, |r| <= ln2/2, degree-6 polynomial, about 1 ulp.
// Inputs are clamped to the finite range; NaN passes through.
__attribute__((always_inline)) inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const float t = x * 1.44269504088896341f + magic;
  const int32_t n_int = __builtin_bit_cast(int32_t, t) - 0x4B400000;
  const float n = t - magic;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * __builtin_bit_cast(float, (n_int + 127) << 23);
}
__attribute__((always_inline)) inline float sigmoid(float x) { return 1.0f / (1.0f + fexp(-x)); }
__attribute__((always_inline)) inline float tanh_(float x) { return 2.0f / (1.0f + fexp(-2.0f * x)) - 1.0f; }

inline float load(float v) { return v; }
inline float load(uint16_t v) { return __builtin_bit_cast(float, static_cast<uint32_t>(v) << 16); }
inline void store(float& d, float v) { d = v; }
inline void store(uint16_t& d, float v) {  // round to nearest even, as c10::BFloat16 does
  uint32_t b = __builtin_bit_cast(uint32_t, v);
  b += 0x7FFFu + ((b >> 16) & 1u);
  d = static_cast<uint16_t>(b >> 16);
}

template <typename D>
D* ptr(const at::Tensor& t) {
  if constexpr (std::is_same_v<D, float>) {
    return t.data_ptr<float>();
  } else {
    return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
  }
}

// Row i of a contiguous tensor's first dimension, as a pointer: the per-time-step views of the
// loops without creating a tensor for each (a select costs microseconds, a step a few dozen).
template <typename D>
D* row(const at::Tensor& t, int64_t i) {
  return ptr<D>(t) + i * t.stride(0);
}

// x (B, K) @ w^T for w (N, K) given as oneDNN-packed (torch.ops.mkldnn._reorder_linear_weight):
// a packed weight saves oneDNN reordering it on every call, which at batch 32 costs about a
// third of the GEMM. Without one, w_plain (N, K) through at::mm.
// The kernels read the result through raw pointers: it must be contiguous, in x's dtype.
inline at::Tensor gemm(const at::Tensor& x, const std::optional<at::Tensor>& packed, const at::Tensor& w_plain) {
  at::Tensor out;
  if (packed.has_value()) {
    static const c10::OperatorHandle op =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
    std::vector<c10::IValue> stack{x, *packed, c10::IValue(), std::string("none"),
                                   c10::List<std::optional<at::Scalar>>(), std::string("")};
    op.callBoxed(&stack);
    out = stack[0].toTensor();
  } else {
    out = at::mm(x, w_plain.t());
  }
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == x.scalar_type(),
              "textgen RNN kernel: unexpected GEMM output (", out.scalar_type(), ", contiguous ",
              out.is_contiguous(), ")");
  return out;
}

// Calls f with a value of the C++ type that holds one element of the GEMM dtype: float, or
// uint16_t for bfloat16; any other dtype is refused, naming the op.
template <typename F>
auto with_gemm_type(at::ScalarType dt, const char* op, F&& f) {
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16, op, ": GEMM dtype must be float32 or bfloat16, got ", dt);
  return dt == at::kFloat ? f(float{}) : f(uint16_t{});
}

inline void check(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), "textgen RNN kernel: ", name, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), "textgen RNN kernel: ", name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, "textgen RNN kernel: ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, "textgen RNN kernel: ", name, " must have ", dim, " dimensions, got ", t.dim());
}

}  // namespace textgen
