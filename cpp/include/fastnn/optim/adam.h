// Adam (Kingma & Ba 2015), AMSGrad (Reddi et al. 2018) and AdamW (Loshchilov & Hutter 2019),
// one fused pass over the flat buffers.
#pragma once

#include <cmath>

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"
#include "fastnn/optim/simd.h"

namespace fastnn {

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool amsgrad = false, maximize = false;
  Penalties penalties;  // penalties.decoupled = true is AdamW
};

namespace detail {

// The per-step constants of adam_update, in T.
template <class T>
struct AdamCoefficients {
  T lerp_weight;      // 1 - beta1, or beta1 when lerping from the gradient's end (1 - beta1 >= 0.5)
  T beta2, rest2;     // beta2, 1 - beta2
  T neg_step_size;    // -(lr / (1 - beta1^t)) * sqrt(1 - beta2^t)
  T eps;              // eps * sqrt(1 - beta2^t)
};

// One Adam step on n elements, reading p, g, m, v (and vmax) once and writing p, m, v (vmax) once
// (max_exp_avg_sq is null unless kAmsgrad):
//   p <- p * param_scale;  m <- lerp(m, g, 1 - beta1);  v <- beta2*v + ((1 - beta2)*g)*g
//   AMSGrad: vmax <- max(vmax, v), v := vmax;    p <- p + neg_step_size * m / (sqrt(v) + eps)
// lerp as torch's vectorized one (ATen's lerp_vec): m + w*(g - m) with an FMA, or
// g - (g - m)*beta1 when 1 - beta1 >= 0.5. (1 - beta2)*g*g is evaluated left to right as
// torch's addcmul, so that g up to ~1e20 does not overflow g*g. The denominator: simd.h.
template <bool kAmsgrad, bool kLerpFromEnd, bool kScale, class T>
void adam_update(T* params, const T* grads, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, index_t n,
                 const AdamCoefficients<T>& c, T param_scale) {
  using namespace simd;
  using P = Packet<T>;
  const P w = pset1<P>(c.lerp_weight), beta2 = pset1<P>(c.beta2), rest2 = pset1<P>(c.rest2);
  const P step = pset1<P>(c.neg_step_size), eps = pset1<P>(c.eps), scale = pset1<P>(param_scale);
  for_each_packet<T>(
      n,
      [=](T* pp, const T* gp, T* mp, T* vp, auto vmaxp) {
        const P g = load<P>(gp), m0 = load<P>(mp);
        const P diff = psub(g, m0);
        const P m = kLerpFromEnd ? pnmadd(diff, w, g) : pmadd(w, diff, m0);
        P v = pmadd(load<P>(vp), beta2, pmul(pmul(rest2, g), g));
        store(mp, m);
        store(vp, v);
        if constexpr (kAmsgrad) {
          v = pmax_nan(load<P>(vmaxp), v);
          store(vmaxp, v);
        }
        P p = load<P>(pp);
        if constexpr (kScale) p = pmul(p, scale);
        store(pp, pmadd(step, div_sqrt_plus(m, v, eps), p));
      },
      params, grads, exp_avg, exp_avg_sq, array_if<kAmsgrad>(max_exp_avg_sq));
}

}  // namespace detail

// torch.optim.Adam / AdamW (torch/optim/adam.py, _single_tensor_adam), step t = 1, 2, ...:
//   AdamW: p <- p*(1 - lr*wd) first;  Adam: g <- g + wd*p   (penalties.h)
//   m <- lerp(m, g, 1 - beta1);  v <- beta2*v + (1 - beta2)*g*g;  AMSGrad: vmax <- max(vmax, v), v := vmax
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// max_exp_avg_sq may be null unless amsgrad. With AVX2 or AVX-512, float32 divides by sqrt(v) + eps
// to within a few ulp rather than exactly (simd.h: div_sqrt_plus); float64 is exact.
template <class T>
void adam_step(const SegmentTable& segs, T* params, const T* grads, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               index_t step, const AdamOptions& o) {
  // m / (sqrt(v) / sqrt(bc2) + eps) = sqrt(bc2) * m / (sqrt(v) + eps * sqrt(bc2)): one division per
  // element instead of two.
  const double t = static_cast<double>(step), bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, t));
  const bool from_end = std::abs(1.0 - o.beta1) >= 0.5;
  const T w = static_cast<T>(1.0 - o.beta1);
  detail::AdamCoefficients<T> c;
  c.lerp_weight = from_end ? T(1) - w : w;  // torch: (1 - weight) in T
  c.beta2 = static_cast<T>(o.beta2);
  c.rest2 = static_cast<T>(1.0 - o.beta2);
  c.neg_step_size = static_cast<T>(-(o.lr / (1.0 - std::pow(o.beta1, t))) * bc2_sqrt);
  c.eps = static_cast<T>(o.eps * bc2_sqrt);
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, kFusedUpdateCost,
               [&](index_t off, index_t n, const T* g, T param_scale) {
                 T* vmax = o.amsgrad ? max_exp_avg_sq + off : nullptr;
                 simd::with_bool(o.amsgrad, [&](auto ams) {
                   simd::with_bool(from_end, [&](auto fe) {
                     simd::with_bool(param_scale != T(1), [&](auto sc) {
                       detail::adam_update<decltype(ams)::value, decltype(fe)::value, decltype(sc)::value>(
                           params + off, g, exp_avg + off, exp_avg_sq + off, vmax, n, c, param_scale);
                     });
                   });
                 });
               });
}

}  // namespace fastnn
