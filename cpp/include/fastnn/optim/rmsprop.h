// RMSprop (Hinton, Coursera lecture 6e), optionally centered (Graves 2013) and with momentum,
// one fused pass over the flat buffers.
#pragma once

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"

namespace fastnn {

struct RMSpropOptions {
  double lr = 1e-2, alpha = 0.99, eps = 1e-8, momentum = 0;
  bool centered = false, maximize = false;
  Penalties penalties;
};

// torch.optim.RMSprop (torch/optim/rmsprop.py, _single_tensor_rmsprop), per element:
//   g <- ±grad (+ penalties);  v <- alpha*v + (1 - alpha)*g*g
//   centered: a <- lerp(a, g, 1 - alpha), denom = sqrt(v - a*a) + eps;  else denom = sqrt(v) + eps
//   momentum > 0: b <- mu*b + g/denom, p <- p - lr*b;  else p <- p - lr*g/denom
// grad_avg may be null unless centered, momentum_buffer unless momentum > 0 (both start at 0).
template <class T>
void rmsprop_step(const SegmentTable& segs, T* params, const T* grads, T* square_avg, T* grad_avg,
                  T* momentum_buffer, const RMSpropOptions& o) {
  const T alpha = static_cast<T>(o.alpha), rest = static_cast<T>(1.0 - o.alpha), eps = static_cast<T>(o.eps);
  const T neg_lr = static_cast<T>(-o.lr), mu = static_cast<T>(o.momentum);
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, 3, [&](index_t off, index_t n, const T* gp) {
    ArrMap<T> p(params + off, n), v(square_avg + off, n);
    CArrMap<T> g(gp, n);
    v = v * alpha + rest * g.square();
    auto step = [&](const auto& denom) {
      if (o.momentum > 0) {
        ArrMap<T> b(momentum_buffer + off, n);
        b = b * mu + g / denom;
        p += neg_lr * b;
      } else {
        p += neg_lr * (g / denom);
      }
    };
    if (o.centered) {
      ArrMap<T> a(grad_avg + off, n);
      lerp_(a, g, 1.0 - o.alpha);
      step(exact_sqrt(v - a.square()) + eps);
    } else {
      step(exact_sqrt(v) + eps);
    }
  });
}

}  // namespace fastnn
