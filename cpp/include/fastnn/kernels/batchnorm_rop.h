// The R-operator of batch normalization (Pearlmutter 1994), for exact Hessian-vector products:
// R{f} = d/dr f(θ + r v) at r = 0, with (vgamma, vbeta) the direction of (gamma, beta) and rx = R{x}.
//
// Per channel, over its n = N*S values, with s = invstd and xh = (x - mean) s:
//   training (batch statistics):  a = mean(rx), b = mean(xh rx),  R{xh} = s (rx - a - xh b)
//   eval (running statistics):    R{xh} = s rx
//   R{y} = gamma R{xh} + vgamma xh + vbeta
// Backward, with gh = gamma g, R{gh} = vgamma g + gamma rg, and in training m1 = mean(gh),
// m2 = mean(gh xh) (both 0 in eval):
//   dx    = s (gh - m1 - xh m2)
//   R{dx} = -s b dx + s (R{gh} - R{m1} - R{xh} m2 - xh R{m2}),  R{m1} = mean(R{gh}),
//           R{m2} = mean(R{gh} xh + gh R{xh})
//   dgamma = sum g xh, R{dgamma} = sum (rg xh + g R{xh});  dbeta = sum g, R{dbeta} = sum rg.
// Layout as kernels/batchnorm.h: (N, C, S), channel c owns columns [c S, (c+1) S) of each sample.
// x, rx, dx and rdx are samples x_ld apart (0: C*S, contiguous; more: DenseBlock's channel slice of
// a wider buffer); g, rg and ry are contiguous. Sums run in double, per channel, in a fixed order,
// so results do not depend on the thread count. reference/batchnorm_rop.py holds the same formulas.
#pragma once

#include "fastnn/common.h"

namespace fastnn {
namespace bn_rop_detail {

// f(value index k, sample n) over the n-major order of channel c's values.
template <class F>
void for_channel(index_t N, index_t S, F&& f) {
  for (index_t n = 0; n < N; ++n)
    for (index_t k = 0; k < S; ++k) f(n, k);
}

}  // namespace bn_rop_detail

// ry = R{y}. gamma == nullptr: affine=False (gamma 1, no direction). rx == nullptr: R{x} = 0.
// mean/invstd: the statistics forward normalized with (the batch's in training, the running ones in
// eval). Writes r_mean[c] = a and r_cov[c] = b (0 in eval or without rx) for rop_backward.
template <class T>
void batch_norm_rop_forward(const T* x, const T* rx, index_t N, index_t C, index_t S, const T* mean, const T* invstd,
                            const T* gamma, const T* vgamma, const T* vbeta, bool training, T* ry, T* r_mean,
                            T* r_cov, index_t x_ld = 0) {
  const index_t ld = x_ld ? x_ld : C * S, yld = C * S;
  parallel_for(C, 8 * N * S, [=](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      const double m = mean[c], s = invstd[c];
      const T* xc = x + c * S;
      const T* rxc = rx ? rx + c * S : nullptr;
      double a = 0, b = 0;
      if (rxc && training) {
        double sa = 0, sb = 0;
        bn_rop_detail::for_channel(N, S, [&](index_t n, index_t k) {
          const double r = rxc[n * ld + k];
          sa += r;
          sb += (xc[n * ld + k] - m) * s * r;
        });
        a = sa / double(N * S), b = sb / double(N * S);
      }
      r_mean[c] = T(a), r_cov[c] = T(b);
      const double gm = gamma ? double(gamma[c]) : 1.0, vg = vgamma ? double(vgamma[c]) : 0.0,
                   vb = vbeta ? double(vbeta[c]) : 0.0;
      T* ryc = ry + c * S;
      bn_rop_detail::for_channel(N, S, [&](index_t n, index_t k) {
        const double xh = (xc[n * ld + k] - m) * s;
        const double rxh = rxc ? s * (rxc[n * ld + k] - a - xh * b) : 0.0;
        ryc[n * yld + k] = T(gm * rxh + vg * xh + vb);
      });
    }
  });
}

// dx (may be null: not needed) and rdx (null with dx) get the input gradient and its R{}; dgamma,
// dbeta, r_dgamma, r_dbeta (C values each, all null when gamma is) are written (=). r_mean, r_cov:
// what batch_norm_rop_forward wrote.
template <class T>
void batch_norm_rop_backward(const T* g, const T* rg, const T* x, const T* rx, index_t N, index_t C, index_t S,
                             const T* mean, const T* invstd, const T* gamma, const T* vgamma, const T* r_mean,
                             const T* r_cov, bool training, T* dx, T* rdx, T* dgamma, T* dbeta, T* r_dgamma,
                             T* r_dbeta, index_t x_ld = 0) {
  const index_t ld = x_ld ? x_ld : C * S, yld = C * S;
  const double inv_n = 1.0 / double(N * S);
  parallel_for(C, 16 * N * S, [=](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      const double m = mean[c], s = invstd[c], a = r_mean[c], b = r_cov[c];
      const double gm = gamma ? double(gamma[c]) : 1.0, vg = vgamma ? double(vgamma[c]) : 0.0;
      const T* xc = x + c * S;
      const T* rxc = rx ? rx + c * S : nullptr;
      const T* gc = g + c * S;
      const T* rgc = rg + c * S;
      auto xh_at = [&](index_t n, index_t k) { return (xc[n * ld + k] - m) * s; };
      auto rxh_at = [&](index_t n, index_t k, double xh) {
        return rxc ? (training ? s * (rxc[n * ld + k] - a - xh * b) : s * rxc[n * ld + k]) : 0.0;
      };
      double sg = 0, sgx = 0, srg = 0, srgx = 0, sgrx = 0;
      bn_rop_detail::for_channel(N, S, [&](index_t n, index_t k) {
        const double xh = xh_at(n, k), rxh = rxh_at(n, k, xh), gi = gc[n * yld + k], rgi = rgc[n * yld + k];
        sg += gi, sgx += gi * xh, srg += rgi, srgx += rgi * xh, sgrx += gi * rxh;
      });
      if (dgamma) {
        dgamma[c] = T(sgx), dbeta[c] = T(sg);
        r_dgamma[c] = T(srgx + sgrx), r_dbeta[c] = T(srg);
      }
      if (!dx) continue;
      // m1 = mean(gh), m2 = mean(gh xh), R{m1} = mean(R{gh}), R{m2} = mean(R{gh} xh + gh R{xh}).
      double m1 = 0, m2 = 0, rm1 = 0, rm2 = 0;
      if (training) {
        m1 = gm * sg * inv_n, m2 = gm * sgx * inv_n;
        rm1 = (vg * sg + gm * srg) * inv_n;
        rm2 = (vg * sgx + gm * srgx + gm * sgrx) * inv_n;
      }
      T* dxc = dx + c * S;
      T* rdxc = rdx + c * S;
      bn_rop_detail::for_channel(N, S, [&](index_t n, index_t k) {
        const double xh = xh_at(n, k), rxh = rxh_at(n, k, xh), gi = gc[n * yld + k], rgi = rgc[n * yld + k];
        const double gh = gm * gi, rgh = vg * gi + gm * rgi;
        const double d = s * (gh - m1 - xh * m2);
        dxc[n * ld + k] = T(d);
        rdxc[n * ld + k] = T((training ? -s * b * d : 0.0) + s * (rgh - rm1 - rxh * m2 - xh * rm2));
      });
    }
  });
}

}  // namespace fastnn
