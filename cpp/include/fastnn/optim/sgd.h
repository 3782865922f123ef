// SGD with momentum / Nesterov momentum, one fused pass over the flat buffers.
#pragma once

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"
#include "fastnn/optim/simd.h"

namespace fastnn {

struct SGDOptions {
  double lr = 1e-3, momentum = 0, dampening = 0;
  bool nesterov = false, maximize = false;
  Penalties penalties;
};

namespace detail {

// One SGD step on n elements (momentum_buffer is null unless kMomentum):
//   p <- p*param_scale;  b <- g (kFirst) or mu*b + keep*g;  d <- g + mu*b (kNesterov), b, or g;  p <- p + neg_lr*d
template <bool kMomentum, bool kFirst, bool kNesterov, bool kScale, class T>
void sgd_update(T* params, const T* grads, T* momentum_buffer, index_t n, T neg_lr, T mu, T keep, T param_scale) {
  using namespace simd;
  using P = Packet<T>;
  const P step = pset1<P>(neg_lr), m = pset1<P>(mu), k = pset1<P>(keep), scale = pset1<P>(param_scale);
  for_each_packet<T>(
      n,
      [=](T* pp, const T* gp, auto bp) {
        const P g = load<P>(gp);
        P d = g;
        if constexpr (kMomentum) {
          const P b = kFirst ? g : pmadd(k, g, pmul(load<P>(bp), m));  // torch: buf*mu, then add(g, alpha=keep)
          store(bp, b);
          d = kNesterov ? pmadd(m, b, g) : b;
        }
        P p = load<P>(pp);
        if constexpr (kScale) p = pmul(p, scale);
        store(pp, pmadd(step, d, p));
      },
      params, grads, array_if<kMomentum>(momentum_buffer));
}

}  // namespace detail

// torch.optim.SGD (torch/optim/sgd.py, _single_tensor_sgd), per element:
//   g <- ±grad (+ penalties)
//   b <- g on the buffer's first step, else b <- mu*b + (1 - dampening)*g
//   d <- g + mu*b (Nesterov) or b;   (d = g when mu = 0)
//   p <- p - lr*d
// momentum_buffer may be null when momentum == 0; first_step: the buffer has no history yet.
template <class T>
void sgd_step(const SegmentTable& segs, T* params, const T* grads, T* momentum_buffer, bool first_step,
              const SGDOptions& o) {
  const T neg_lr = static_cast<T>(-o.lr), mu = static_cast<T>(o.momentum), keep = static_cast<T>(1.0 - o.dampening);
  const bool momentum = o.momentum != 0;
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, kFusedUpdateCost,
               [&](index_t off, index_t n, const T* g, T param_scale) {
                 T* b = momentum ? momentum_buffer + off : nullptr;
                 simd::with_bool(momentum, [&](auto mom) {
                   simd::with_bool(first_step, [&](auto first) {
                     simd::with_bool(o.nesterov, [&](auto nest) {
                       simd::with_bool(param_scale != T(1), [&](auto sc) {
                         detail::sgd_update<decltype(mom)::value, decltype(first)::value, decltype(nest)::value,
                                            decltype(sc)::value>(params + off, g, b, n, neg_lr, mu, keep, param_scale);
                       });
                     });
                   });
                 });
               });
}

}  // namespace fastnn
