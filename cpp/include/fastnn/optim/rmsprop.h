// RMSprop (Hinton, Coursera lecture 6e), optionally centered (Graves 2013) and with momentum,
// one fused pass over the flat buffers.
#pragma once

#include <cmath>

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"
#include "fastnn/optim/simd.h"

namespace fastnn {

struct RMSpropOptions {
  double lr = 1e-2, alpha = 0.99, eps = 1e-8, momentum = 0;
  bool centered = false, maximize = false;
  Penalties penalties;
};

namespace detail {

// The per-step constants of rmsprop_update, in T.
template <class T>
struct RMSpropCoefficients {
  T alpha, rest;    // alpha, 1 - alpha
  T lerp_weight;    // 1 - alpha, or alpha when lerping from the gradient's end (1 - alpha >= 0.5)
  T eps, neg_lr, mu;
};

// One RMSprop step on n elements, each array read and written once:
//   p <- p*param_scale;  v <- alpha*v + ((1 - alpha)*g)*g
//   centered: a <- lerp(a, g, 1 - alpha) (as adam.h's m), q = g / (sqrt(v - a*a) + eps);  else q = g / (sqrt(v) + eps)
//   momentum: b <- mu*b + q, p <- p + neg_lr*b;  else p <- p + neg_lr*q
// grad_avg is null unless kCentered, momentum_buffer unless kMomentum.
template <bool kCentered, bool kMomentum, bool kLerpFromEnd, bool kScale, class T>
void rmsprop_update(T* params, const T* grads, T* square_avg, T* grad_avg, T* momentum_buffer, index_t n,
                    const RMSpropCoefficients<T>& c, T param_scale) {
  using namespace simd;
  using P = Packet<T>;
  const P alpha = pset1<P>(c.alpha), rest = pset1<P>(c.rest), w = pset1<P>(c.lerp_weight);
  const P eps = pset1<P>(c.eps), step = pset1<P>(c.neg_lr), mu = pset1<P>(c.mu), scale = pset1<P>(param_scale);
  for_each_packet<T>(
      n,
      [=](T* pp, const T* gp, T* vp, auto ap, auto bp) {
        const P g = load<P>(gp);
        const P v = pmadd(load<P>(vp), alpha, pmul(pmul(rest, g), g));
        store(vp, v);
        P var = v;
        if constexpr (kCentered) {
          const P a0 = load<P>(ap);
          const P diff = psub(g, a0);
          const P a = kLerpFromEnd ? pnmadd(diff, w, g) : pmadd(w, diff, a0);
          store(ap, a);
          var = pnmadd(a, a, v);
        }
        P d = div_sqrt_plus(g, var, eps);
        if constexpr (kMomentum) {
          d = pmadd(load<P>(bp), mu, d);
          store(bp, d);
        }
        P p = load<P>(pp);
        if constexpr (kScale) p = pmul(p, scale);
        store(pp, pmadd(step, d, p));
      },
      params, grads, square_avg, array_if<kCentered>(grad_avg), array_if<kMomentum>(momentum_buffer));
}

}  // namespace detail

// torch.optim.RMSprop (torch/optim/rmsprop.py, _single_tensor_rmsprop), per element:
//   g <- ±grad (+ penalties);  v <- alpha*v + (1 - alpha)*g*g
//   centered: a <- lerp(a, g, 1 - alpha), denom = sqrt(v - a*a) + eps;  else denom = sqrt(v) + eps
//   momentum > 0: b <- mu*b + g/denom, p <- p - lr*b;  else p <- p - lr*g/denom
// grad_avg may be null unless centered, momentum_buffer unless momentum > 0 (both start at 0).
// With AVX2 or AVX-512, float32 divides by denom to within a few ulp (simd.h: div_sqrt_plus).
template <class T>
void rmsprop_step(const SegmentTable& segs, T* params, const T* grads, T* square_avg, T* grad_avg,
                  T* momentum_buffer, const RMSpropOptions& o) {
  const bool from_end = std::abs(1.0 - o.alpha) >= 0.5;
  const T w = static_cast<T>(1.0 - o.alpha);
  detail::RMSpropCoefficients<T> c;
  c.alpha = static_cast<T>(o.alpha);
  c.rest = w;
  c.lerp_weight = from_end ? T(1) - w : w;  // torch: (1 - weight) in T
  c.eps = static_cast<T>(o.eps);
  c.neg_lr = static_cast<T>(-o.lr);
  c.mu = static_cast<T>(o.momentum);
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, kFusedUpdateCost,
               [&](index_t off, index_t n, const T* g, T param_scale) {
                 T* a = o.centered ? grad_avg + off : nullptr;
                 T* b = o.momentum > 0 ? momentum_buffer + off : nullptr;
                 simd::with_bool(o.centered, [&](auto ctr) {
                   simd::with_bool(o.momentum > 0, [&](auto mom) {
                     simd::with_bool(from_end, [&](auto fe) {
                       simd::with_bool(param_scale != T(1), [&](auto sc) {
                         detail::rmsprop_update<decltype(ctr)::value, decltype(mom)::value, decltype(fe)::value,
                                                decltype(sc)::value>(params + off, g, square_avg + off, a, b, n, c,
                                                                     param_scale);
                       });
                     });
                   });
                 });
               });
}

}  // namespace fastnn
