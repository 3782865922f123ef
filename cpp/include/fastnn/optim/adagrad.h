// Adagrad (Duchi, Hazan & Singer 2011), one fused pass over the flat buffers.
#pragma once

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"

namespace fastnn {

struct AdagradOptions {
  double lr = 1e-2, lr_decay = 0, eps = 1e-10;
  bool maximize = false;
  Penalties penalties;
};

// torch.optim.Adagrad (torch/optim/adagrad.py, _single_tensor_adagrad), step t = 1, 2, ...:
//   g <- ±grad (+ penalties);  clr = lr / (1 + (t - 1)*lr_decay)
//   s <- s + g*g;  p <- p - clr * g / (sqrt(s) + eps)
// state_sum starts at initial_accumulator_value (set by the caller).
template <class T>
void adagrad_step(const SegmentTable& segs, T* params, const T* grads, T* state_sum, index_t step,
                  const AdagradOptions& o) {
  const T neg_clr = static_cast<T>(-(o.lr / (1.0 + static_cast<double>(step - 1) * o.lr_decay)));
  const T eps = static_cast<T>(o.eps);
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, 2, [&](index_t off, index_t n, const T* gp) {
    ArrMap<T> p(params + off, n), s(state_sum + off, n);
    CArrMap<T> g(gp, n);
    s += g.square();
    p += neg_clr * (g / (exact_sqrt(s) + eps));
  });
}

}  // namespace fastnn
