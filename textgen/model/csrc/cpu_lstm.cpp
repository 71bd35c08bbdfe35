// The time loops of one LSTM layer's forward and backward for training on CPU (textgen.cpu_lstm).
//
// Like cpu_gru.cpp: per time step one GEMM on a prepacked W_hh and one fused pass over the gates.
// oneDNN's own LSTM kernel (what nn.LSTM runs) takes ~1.4x the time of its GEMMs at batch 32,
// hidden 512 in bf16 (benchmarks/rnn_ceiling.py); most of the gap is reordering W_hh per call.
//
// Maths (PyTorch's LSTM, gate order i, f, g, o):
//   a = x W_ih^T + h W_hh^T + b_ih + b_hh      i, f, o = s(a_i, a_f, a_o)   g = tanh(a_g)
//   c' = f * c + i * g                          h' = o * tanh(c')
// The GEMM dtype D is float or bfloat16 (stored as uint16_t); the gate maths, the carried state
// and the bias gradient are float32.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "rnn_common.h"

namespace {

using namespace textgen;

// Columns [j0, j1) of one row of one forward step.
template <typename D>
void forward_cols(int64_t H, int64_t j0, int64_t j1, const D* __restrict x, const D* __restrict p,
                  const float* __restrict bias, const float* __restrict c, float* __restrict act,
                  float* __restrict c_out, float* __restrict tc_out, float* __restrict h_out,
                  D* __restrict hd_out) noexcept {
#pragma GCC ivdep
  for (int64_t j = j0; j < j1; ++j) {
    const float i = sigmoid(load(x[j]) + load(p[j]) + bias[j]);
    const float f = sigmoid(load(x[H + j]) + load(p[H + j]) + bias[H + j]);
    const float g = tanh_(load(x[2 * H + j]) + load(p[2 * H + j]) + bias[2 * H + j]);
    const float o = sigmoid(load(x[3 * H + j]) + load(p[3 * H + j]) + bias[3 * H + j]);
    const float cv = f * c[j] + i * g;
    const float tc = tanh_(cv);
    const float hv = o * tc;
    act[j] = i;
    act[H + j] = f;
    act[2 * H + j] = g;
    act[3 * H + j] = o;
    c_out[j] = cv;
    tc_out[j] = tc;
    h_out[j] = hv;
    store(hd_out[j], hv);
  }
}

// Columns [j0, j1) of one row of one backward step; accumulates the bias gradient.
template <typename D>
void backward_cols(int64_t H, int64_t j0, int64_t j1, const float* __restrict d_out,
                   const float* __restrict carry_h, float* __restrict carry_c, const float* __restrict act,
                   const float* __restrict c_prev, const float* __restrict tc, D* __restrict da,
                   float* __restrict db) noexcept {
#pragma GCC ivdep
  for (int64_t j = j0; j < j1; ++j) {
    const float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j], t = tc[j];
    const float dh = d_out[j] + carry_h[j];
    const float dc = carry_c[j] + dh * o * (1.0f - t * t);
    const float di = dc * g * i * (1.0f - i);
    const float df = dc * c_prev[j] * f * (1.0f - f);
    const float dg = dc * i * (1.0f - g * g);
    const float dout = dh * t * o * (1.0f - o);
    carry_c[j] = dc * f;
    store(da[j], di);
    store(da[H + j], df);
    store(da[2 * H + j], dg);
    store(da[3 * H + j], dout);
    db[j] += di;
    db[H + j] += df;
    db[2 * H + j] += dg;
    db[3 * H + j] += dout;
  }
}

template <typename D>
std::vector<at::Tensor> forward_impl(const at::Tensor& xp, const at::Tensor& bias, const at::Tensor& w_hh,
                                     const std::optional<at::Tensor>& w_hh_packed, const at::Tensor& h0,
                                     const at::Tensor& c0) {
  const int64_t T = xp.size(0), B = xp.size(1), H = h0.size(1);
  const auto f32 = h0.options();
  auto act = at::empty({T, B, 4 * H}, f32), tc = at::empty({T, B, H}, f32);
  auto cs = at::empty({T + 1, B, H}, f32), hs = at::empty({T + 1, B, H}, f32);
  auto hsd = std::is_same_v<D, float> ? hs : at::empty({T + 1, B, H}, xp.options());
  cs[0].copy_(c0);
  hs[0].copy_(h0);
  if (!std::is_same_v<D, float>) hsd[0].copy_(h0);
  const float* b = bias.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor p = gemm(hsd[t], w_hh_packed, w_hh);  // (B, 4H) = h W_hh^T
    const D* xt = row<D>(xp, t);
    const D* pt = ptr<D>(p);
    const float* ct = row<float>(cs, t);
    float* at_ = row<float>(act, t);
    float* co = row<float>(cs, t + 1);
    float* tco = row<float>(tc, t);
    float* ho = row<float>(hs, t + 1);
    D* hdo = row<D>(hsd, t + 1);
    at::parallel_for(0, H, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t r = 0; r < B; ++r)
        forward_cols<D>(H, j0, j1, xt + r * 4 * H, pt + r * 4 * H, b, ct + r * H, at_ + r * 4 * H, co + r * H,
                        tco + r * H, ho + r * H, hdo + r * H);
    });
  }
  return {act, cs, tc, hs, hsd};
}

template <typename D>
std::vector<at::Tensor> backward_impl(const at::Tensor& d_out, const at::Tensor& d_h_last,
                                      const at::Tensor& d_c_last, const at::Tensor& act, const at::Tensor& cs,
                                      const at::Tensor& tc, const at::Tensor& w_hh_t,
                                      const std::optional<at::Tensor>& w_hh_t_packed) {
  const int64_t T = tc.size(0), B = tc.size(1), H = tc.size(2);
  const auto f32 = tc.options();
  auto da = at::empty({T, B, 4 * H}, w_hh_t.options());
  auto db = at::zeros({4 * H}, f32);
  auto carry_h = d_h_last.clone(), carry_c = d_c_last.clone();
  float* dbp = db.data_ptr<float>();
  float* ch = carry_h.data_ptr<float>();
  float* cc = carry_c.data_ptr<float>();
  for (int64_t t = T - 1; t >= 0; --t) {
    const float* o = row<float>(d_out, t);
    const float* at_ = row<float>(act, t);
    const float* cp = row<float>(cs, t);
    const float* tct = row<float>(tc, t);
    D* dat = row<D>(da, t);
    at::parallel_for(0, H, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t r = 0; r < B; ++r)
        backward_cols<D>(H, j0, j1, o + r * H, ch + r * H, cc + r * H, at_ + r * 4 * H, cp + r * H, tct + r * H,
                         dat + r * 4 * H, dbp);
    });
    const at::Tensor g = gemm(da[t], w_hh_t_packed, w_hh_t);  // (B, H): d h_{t-1} through W_hh
    const D* gp = ptr<D>(g);
    for (int64_t k = 0; k < B * H; ++k) ch[k] = load(gp[k]);
  }
  return {da, db, carry_h, carry_c};
}

// xp (T,B,4H) = x W_ih^T in D; bias (4H) f32 = b_ih + b_hh; w_hh (4H,H) in D (and optionally
// oneDNN-packed); h0, c0 (B,H) f32. Returns the gate activations (T,B,4H), cs (T+1,B,H),
// tanh(c) (T,B,H), hs (T+1,B,H) in f32, and hs in D (the same tensor for float).
std::vector<at::Tensor> lstm_forward(const at::Tensor& xp, const at::Tensor& bias, const at::Tensor& w_hh,
                                     const std::optional<at::Tensor>& w_hh_packed, const at::Tensor& h0,
                                     const at::Tensor& c0) {
  const auto dt = xp.scalar_type();
  check(xp, "xp", dt, 3);
  check(bias, "bias", at::kFloat, 1);
  check(w_hh, "w_hh", dt, 2);
  check(h0, "h0", at::kFloat, 2);
  check(c0, "c0", at::kFloat, 2);
  const int64_t H = h0.size(1);
  TORCH_CHECK(xp.size(2) == 4 * H && w_hh.size(0) == 4 * H && w_hh.size(1) == H && bias.size(0) == 4 * H &&
                  h0.size(0) == xp.size(1) && c0.sizes() == h0.sizes(),
              "cpu_lstm: shapes do not match: xp ", xp.sizes(), ", w_hh ", w_hh.sizes(), ", h0 ", h0.sizes());
  return with_gemm_type(dt, "cpu_lstm", [&](auto d) {
    return forward_impl<decltype(d)>(xp, bias, w_hh, w_hh_packed, h0, c0);
  });
}

// d_out (T,B,H), d_h_last and d_c_last (B,H) f32; the forward's activations, cs and tanh(c);
// W_hh^T (H,4H) in the GEMM dtype (optionally packed). Returns d a (T,B,4H) in the GEMM dtype
// (the gradient of both x W_ih^T and h W_hh^T), d bias (4H), d h0, d c0 (B,H) in f32.
std::vector<at::Tensor> lstm_backward(const at::Tensor& d_out, const at::Tensor& d_h_last,
                                      const at::Tensor& d_c_last, const at::Tensor& act, const at::Tensor& cs,
                                      const at::Tensor& tc, const at::Tensor& w_hh_t,
                                      const std::optional<at::Tensor>& w_hh_t_packed) {
  const auto dt = w_hh_t.scalar_type();
  check(d_out, "d_out", at::kFloat, 3);
  check(d_h_last, "d_h_last", at::kFloat, 2);
  check(d_c_last, "d_c_last", at::kFloat, 2);
  check(act, "act", at::kFloat, 3);
  check(cs, "cs", at::kFloat, 3);
  check(tc, "tc", at::kFloat, 3);
  check(w_hh_t, "w_hh_t", dt, 2);
  TORCH_CHECK(d_out.sizes() == tc.sizes() && d_h_last.sizes() == tc[0].sizes() && d_c_last.sizes() == tc[0].sizes(),
              "cpu_lstm: gradient shapes do not match the forward's: d_out ", d_out.sizes(), ", tanh(c) ",
              tc.sizes());
  return with_gemm_type(dt, "cpu_lstm", [&](auto d) {
    return backward_impl<decltype(d)>(d_out, d_h_last, d_c_last, act, cs, tc, w_hh_t, w_hh_t_packed);
  });
}

}  // namespace

// Registered for every backend key (not only CPU): the packed weights are oneDNN tensors.
TORCH_LIBRARY(textgen_cpu_lstm, m) {
  m.def("forward(Tensor xp, Tensor bias, Tensor w_hh, Tensor? w_hh_packed, Tensor h0, Tensor c0) -> Tensor[]",
        &lstm_forward);
  m.def(
      "backward(Tensor d_out, Tensor d_h_last, Tensor d_c_last, Tensor act, Tensor cs, Tensor tc, Tensor w_hh_t, "
      "Tensor? w_hh_t_packed) -> Tensor[]",
      &lstm_backward);
}
