// The time loops of one GRU layer's forward and backward for training on CPU (textgen.cpu_gru).
//
// Per time step the forward runs one GEMM (h W_hh^T + b_hh, through ATen) and one fused pass
// over the gates; the backward one fused pass and one GEMM. Without this, every gate operation is
// a separate ATen call with its own dispatch and thread wake-up, and those small calls cost about
// as much as the GEMMs themselves at batch 32, hidden 512 (see benchmarks/rnn_ceiling.py).
//
// Maths (PyTorch's GRU, gate order r, z, n):
//   r = s(x_r + b_ir + p_r)  z = s(x_z + b_iz + p_z)  n = tanh(x_n + b_in + r * p_n)
//   h' = n + z * (h - n)     where p = h W_hh^T + b_hh, x = x W_ih^T (without bias)
// The GEMM dtype D is float or bfloat16 (stored as uint16_t); gate maths, the carried state and
// the bias gradients are float32.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "rnn_common.h"

namespace {

using namespace textgen;

// Columns [j0, j1) of one row b of one forward step.
template <typename D>
void forward_cols(int64_t H, int64_t j0, int64_t j1, const D* __restrict x, const float* __restrict bih,
                  const D* __restrict p, const float* __restrict bhh, const float* __restrict h,
                  float* __restrict rz, float* __restrict n_out, float* __restrict pn_out,
                  float* __restrict h_out, D* __restrict hd_out) noexcept {
#pragma GCC ivdep
  for (int64_t j = j0; j < j1; ++j) {
    const float r = sigmoid(load(x[j]) + bih[j] + load(p[j]) + bhh[j]);
    const float z = sigmoid(load(x[H + j]) + bih[H + j] + load(p[H + j]) + bhh[H + j]);
    const float pn = load(p[2 * H + j]) + bhh[2 * H + j];
    const float n = tanh_(load(x[2 * H + j]) + bih[2 * H + j] + r * pn);
    const float hv = n + z * (h[j] - n);
    rz[j] = r;
    rz[H + j] = z;
    n_out[j] = n;
    pn_out[j] = pn;
    h_out[j] = hv;
    store(hd_out[j], hv);
  }
}

// Columns [j0, j1) of one row of one backward step; accumulates the bias gradients.
template <typename D>
void backward_cols(int64_t H, int64_t j0, int64_t j1, const float* __restrict d_out,
                   const float* __restrict carry, const float* __restrict rz, const float* __restrict n_in,
                   const float* __restrict pn, const float* __restrict h_prev, float* __restrict dh_out,
                   D* __restrict dp, D* __restrict dx, float* __restrict db_ih,
                   float* __restrict db_hh) noexcept {
#pragma GCC ivdep
  for (int64_t j = j0; j < j1; ++j) {
    const float r = rz[j], z = rz[H + j], n = n_in[j];
    const float dh = d_out[j] + carry[j];
    const float dn = dh * (1.0f - n * n) * (1.0f - z);  // d(x_n + b_in + r * p_n)
    const float dr = dn * pn[j] * r * (1.0f - r);
    const float dz = dh * (h_prev[j] - n) * z * (1.0f - z);
    const float dpn = dn * r;
    dh_out[j] = dh;
    store(dp[j], dr);
    store(dp[H + j], dz);
    store(dp[2 * H + j], dpn);
    store(dx[j], dr);
    store(dx[H + j], dz);
    store(dx[2 * H + j], dn);
    db_ih[j] += dr;
    db_ih[H + j] += dz;
    db_ih[2 * H + j] += dn;
    db_hh[j] += dr;
    db_hh[H + j] += dz;
    db_hh[2 * H + j] += dpn;
  }
}

template <typename D>
std::vector<at::Tensor> forward_impl(const at::Tensor& xp, const at::Tensor& b_ih, const at::Tensor& w_hh,
                                     const std::optional<at::Tensor>& w_hh_packed, const at::Tensor& b_hh,
                                     const at::Tensor& h0) {
  const int64_t T = xp.size(0), B = xp.size(1), H = h0.size(1);
  const auto f32 = h0.options();
  auto rz = at::empty({T, B, 2 * H}, f32), n = at::empty({T, B, H}, f32), pn = at::empty({T, B, H}, f32);
  auto hs = at::empty({T + 1, B, H}, f32);
  auto hsd = std::is_same_v<D, float> ? hs : at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  if (!std::is_same_v<D, float>) hsd[0].copy_(h0);
  const float* bih = b_ih.data_ptr<float>();
  const float* bhh = b_hh.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor p = gemm(hsd[t], w_hh_packed, w_hh);  // (B, 3H) = h W_hh^T
    const D* xt = row<D>(xp, t);
    const D* pt = ptr<D>(p);
    const float* ht = row<float>(hs, t);
    float* rzt = row<float>(rz, t);
    float* nt = row<float>(n, t);
    float* pnt = row<float>(pn, t);
    float* ho = row<float>(hs, t + 1);
    D* hdo = row<D>(hsd, t + 1);
    at::parallel_for(0, H, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t b = 0; b < B; ++b)
        forward_cols<D>(H, j0, j1, xt + b * 3 * H, bih, pt + b * 3 * H, bhh, ht + b * H, rzt + b * 2 * H,
                        nt + b * H, pnt + b * H, ho + b * H, hdo + b * H);
    });
  }
  return {rz, n, pn, hs, hsd};
}

template <typename D>
std::vector<at::Tensor> backward_impl(const at::Tensor& d_out, const at::Tensor& d_last, const at::Tensor& rz,
                                      const at::Tensor& n, const at::Tensor& pn, const at::Tensor& hs,
                                      const at::Tensor& w_hh_t, const std::optional<at::Tensor>& w_hh_t_packed) {
  const int64_t T = n.size(0), B = n.size(1), H = n.size(2);
  const auto f32 = n.options(), d_opt = w_hh_t.options();
  auto dp = at::empty({T, B, 3 * H}, d_opt), dx = at::empty({T, B, 3 * H}, d_opt);
  auto db_ih = at::zeros({3 * H}, f32), db_hh = at::zeros({3 * H}, f32);
  auto carry = d_last.clone(), dh = at::empty({B, H}, f32);
  float* bi = db_ih.data_ptr<float>();
  float* bh = db_hh.data_ptr<float>();
  float* c = carry.data_ptr<float>();
  float* dhp = dh.data_ptr<float>();
  for (int64_t t = T - 1; t >= 0; --t) {
    const float* o = row<float>(d_out, t);
    const float* rzt = row<float>(rz, t);
    const float* nt = row<float>(n, t);
    const float* pnt = row<float>(pn, t);
    const float* hprev = row<float>(hs, t);
    D* dpt = row<D>(dp, t);
    D* dxt = row<D>(dx, t);
    at::parallel_for(0, H, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t b = 0; b < B; ++b)
        backward_cols<D>(H, j0, j1, o + b * H, c + b * H, rzt + b * 2 * H, nt + b * H, pnt + b * H,
                         hprev + b * H, dhp + b * H, dpt + b * 3 * H, dxt + b * 3 * H, bi, bh);
    });
    const at::Tensor g = gemm(dp[t], w_hh_t_packed, w_hh_t);  // (B, H): d h_{t-1} through W_hh
    const D* gp = ptr<D>(g);
    for (int64_t b = 0; b < B; ++b) {
      const float* z = rzt + b * 2 * H + H;
      for (int64_t j = 0; j < H; ++j) c[b * H + j] = load(gp[b * H + j]) + dhp[b * H + j] * z[j];
    }
  }
  return {dp, dx, db_ih, db_hh, carry};
}

// xp (T,B,3H) = x W_ih^T in D; b_ih (3H) f32; w_hh (3H,H) in D (and optionally oneDNN-packed);
// b_hh (3H) f32; h0 (B,H) f32. Returns rz (T,B,2H), n (T,B,H), p_n (T,B,H) = h W_hn^T + b_hn,
// hs (T+1,B,H) in f32, and hs in D (the same tensor for float).
std::vector<at::Tensor> gru_forward(const at::Tensor& xp, const at::Tensor& b_ih, const at::Tensor& w_hh,
                                    const std::optional<at::Tensor>& w_hh_packed, const at::Tensor& b_hh,
                                    const at::Tensor& h0) {
  const auto dt = xp.scalar_type();
  check(xp, "xp", dt, 3);
  check(b_ih, "b_ih", at::kFloat, 1);
  check(w_hh, "w_hh", dt, 2);
  check(b_hh, "b_hh", at::kFloat, 1);
  check(h0, "h0", at::kFloat, 2);
  const int64_t H = h0.size(1);
  TORCH_CHECK(xp.size(2) == 3 * H && w_hh.size(0) == 3 * H && w_hh.size(1) == H && b_ih.size(0) == 3 * H &&
                  b_hh.size(0) == 3 * H && h0.size(0) == xp.size(1),
              "cpu_gru: shapes do not match: xp ", xp.sizes(), ", w_hh ", w_hh.sizes(), ", h0 ", h0.sizes());
  return with_gemm_type(dt, "cpu_gru", [&](auto d) {
    return forward_impl<decltype(d)>(xp, b_ih, w_hh, w_hh_packed, b_hh, h0);
  });
}

// d_out (T,B,H) and d_last (B,H) f32, the forward's rz, n, p_n and hs (f32), and W_hh^T (H,3H) in
// the GEMM dtype (optionally packed). Returns d p (T,B,3H) and d xp (T,B,3H) in the GEMM dtype,
// d b_ih (3H), d b_hh (3H) and d h0 (B,H) in f32.
std::vector<at::Tensor> gru_backward(const at::Tensor& d_out, const at::Tensor& d_last, const at::Tensor& rz,
                                     const at::Tensor& n, const at::Tensor& pn, const at::Tensor& hs,
                                     const at::Tensor& w_hh_t, const std::optional<at::Tensor>& w_hh_t_packed) {
  const auto dt = w_hh_t.scalar_type();
  check(d_out, "d_out", at::kFloat, 3);
  check(d_last, "d_last", at::kFloat, 2);
  check(rz, "rz", at::kFloat, 3);
  check(n, "n", at::kFloat, 3);
  check(pn, "p_n", at::kFloat, 3);
  check(hs, "hs", at::kFloat, 3);
  check(w_hh_t, "w_hh_t", dt, 2);
  TORCH_CHECK(d_out.sizes() == n.sizes() && d_last.sizes() == n[0].sizes() && pn.sizes() == n.sizes(),
              "cpu_gru: gradient shapes do not match the forward's: d_out ", d_out.sizes(), ", n ", n.sizes());
  return with_gemm_type(dt, "cpu_gru", [&](auto d) {
    return backward_impl<decltype(d)>(d_out, d_last, rz, n, pn, hs, w_hh_t, w_hh_t_packed);
  });
}

}  // namespace

// Registered for every backend key (not only CPU): the packed weights are oneDNN tensors.
TORCH_LIBRARY(textgen_cpu_gru, m) {
  m.def("forward(Tensor xp, Tensor b_ih, Tensor w_hh, Tensor? w_hh_packed, Tensor b_hh, Tensor h0) -> Tensor[]",
        &gru_forward);
  m.def(
      "backward(Tensor d_out, Tensor d_last, Tensor rz, Tensor n, Tensor p_n, Tensor hs, Tensor w_hh_t, "
      "Tensor? w_hh_t_packed) -> Tensor[]",
      &gru_backward);
}
