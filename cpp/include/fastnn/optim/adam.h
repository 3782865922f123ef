// Adam (Kingma & Ba 2015), AMSGrad (Reddi et al. 2018) and AdamW (Loshchilov & Hutter 2019),
// one fused pass over the flat buffers.
#pragma once

#include <cmath>

#include "fastnn/common.h"
#include "fastnn/optim/fused_update.h"

namespace fastnn {

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool amsgrad = false, maximize = false;
  Penalties penalties;  // penalties.decoupled = true is AdamW
};

// torch.optim.Adam / AdamW (torch/optim/adam.py, _single_tensor_adam), step t = 1, 2, ...:
//   AdamW: p <- p*(1 - lr*wd) first;  Adam: g <- g + wd*p   (penalties.h)
//   m <- lerp(m, g, 1 - beta1);  v <- beta2*v + (1 - beta2)*g*g;  AMSGrad: vmax <- max(vmax, v), v := vmax
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// max_exp_avg_sq may be null unless amsgrad.
template <class T>
void adam_step(const SegmentTable& segs, T* params, const T* grads, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               index_t step, const AdamOptions& o) {
  // m / (sqrt(v) / sqrt(bc2) + eps) = sqrt(bc2) * m / (sqrt(v) + eps * sqrt(bc2)): one division per
  // element instead of two (division and sqrt bound this loop, not memory, for cached buffers).
  const double t = static_cast<double>(step), bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, t));
  const T neg_step_size = static_cast<T>(-(o.lr / (1.0 - std::pow(o.beta1, t))) * bc2_sqrt);
  const T eps = static_cast<T>(o.eps * bc2_sqrt);
  const T beta2 = static_cast<T>(o.beta2), rest2 = static_cast<T>(1.0 - o.beta2);
  fused_update(segs, params, grads, o.penalties, o.maximize, o.lr, 2, [&](index_t off, index_t n, const T* gp) {
    ArrMap<T> p(params + off, n), m(exp_avg + off, n), v(exp_avg_sq + off, n);
    CArrMap<T> g(gp, n);
    lerp_(m, g, 1.0 - o.beta1);
    v = v * beta2 + rest2 * g.square();
    if (o.amsgrad) {
      ArrMap<T> vmax(max_exp_avg_sq + off, n);
      vmax = vmax.template max<Eigen::PropagateNaN>(v);
      p += neg_step_size * (m / (exact_sqrt(vmax) + eps));
    } else {
      p += neg_step_size * (m / (exact_sqrt(v) + eps));
    }
  });
}

}  // namespace fastnn
