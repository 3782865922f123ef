// SGD with momentum / Nesterov momentum, one fused pass over the flat buffers.
#pragma once

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"

namespace fastnn {

struct SGDOptions {
  double lr = 1e-3, momentum = 0, dampening = 0;
  bool nesterov = false, maximize = false;
  Penalties penalties;
};

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
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, 1, [&](index_t off, index_t n, const T* gp) {
    ArrMap<T> p(params + off, n);
    CArrMap<T> g(gp, n);
    if (o.momentum == 0) {
      p += neg_lr * g;
      return;
    }
    ArrMap<T> b(momentum_buffer + off, n);
    if (first_step)
      b = g;
    else
      b = b * mu + keep * g;
    if (o.nesterov)
      p += neg_lr * (g + mu * b);
    else
      p += neg_lr * b;
  });
}

}  // namespace fastnn
