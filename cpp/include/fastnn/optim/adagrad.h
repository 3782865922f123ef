// Adagrad (Duchi, Hazan & Singer 2011), one fused pass over the flat buffers.
#pragma once

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"
#include "fastnn/optim/simd.h"

namespace fastnn {

struct AdagradOptions {
  double lr = 1e-2, lr_decay = 0, eps = 1e-10;
  bool maximize = false;
  Penalties penalties;
};

namespace detail {

// p <- p*param_scale;  s <- s + g*g;  p <- p + neg_clr * g / (sqrt(s) + eps)   (simd.h: div_sqrt_plus)
template <bool kScale, class T>
void adagrad_update(T* params, const T* grads, T* state_sum, index_t n, T neg_clr, T eps, T param_scale) {
  using namespace simd;
  using P = Packet<T>;
  const P step = pset1<P>(neg_clr), e = pset1<P>(eps), scale = pset1<P>(param_scale);
  for_each_packet<T>(
      n,
      [=](T* pp, const T* gp, T* sp) {
        const P g = load<P>(gp);
        const P s = pmadd(g, g, load<P>(sp));
        store(sp, s);
        P p = load<P>(pp);
        if constexpr (kScale) p = pmul(p, scale);
        store(pp, pmadd(step, div_sqrt_plus(g, s, e), p));
      },
      params, grads, state_sum);
}

}  // namespace detail

// torch.optim.Adagrad (torch/optim/adagrad.py, _single_tensor_adagrad), step t = 1, 2, ...:
//   g <- ±grad (+ penalties);  clr = lr / (1 + (t - 1)*lr_decay)
//   s <- s + g*g;  p <- p - clr * g / (sqrt(s) + eps)
// state_sum starts at initial_accumulator_value (set by the caller). With AVX2 or AVX-512, float32
// divides by sqrt(s) + eps to within a few ulp rather than exactly (simd.h: div_sqrt_plus).
template <class T>
void adagrad_step(const SegmentTable& segs, T* params, const T* grads, T* state_sum, index_t step,
                  const AdagradOptions& o) {
  const T neg_clr = static_cast<T>(-(o.lr / (1.0 + static_cast<double>(step - 1) * o.lr_decay)));
  const T eps = static_cast<T>(o.eps);
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, kFusedUpdateCost,
               [&](index_t off, index_t n, const T* g, T param_scale) {
                 simd::with_bool(param_scale != T(1), [&](auto sc) {
                   detail::adagrad_update<decltype(sc)::value>(params + off, g, state_sum + off, n, neg_clr, eps,
                                                               param_scale);
                 });
               });
}

}  // namespace fastnn
