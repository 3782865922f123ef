// Regularization shared by the first-order optimizers, applied to DECAY segments only:
//   L2 (coupled):    g <- g + wd * p                     (SGD, Adagrad, RMSprop, Adam)
//   L2 (decoupled):  p <- p * (1 - lr * wd) before the rule  (AdamW; Loshchilov & Hutter)
//   L1:              g <- g + l1 * sign(p)              (seeds: p <- p - lr*grad - lr*l1*sign(p) for SGD)
//   max-norm:        after the step, each row w of a matrix with ||w||_2 > c becomes w * c / (||w|| + 1e-7)
//                    (torch.renorm(p, 2, 0, c); Keras MaxNorm on (out, in) weights)
#pragma once

#include <cmath>

#include "fastnn/common.h"
#include "fastnn/optim/segments.h"

namespace fastnn {

// Hyperparameters are doubles, like PyTorch's Python floats; kernels cast the coefficients they
// derive from them (1 - lr * wd, ...) to T once, as torch does.
struct Penalties {
  double weight_decay = 0;
  bool decoupled = false;  // AdamW: shrink the parameters instead of adding wd * p to the gradient
  double l1 = 0;
  double max_norm = 0;  // <= 0: no max-norm constraint
};

// What the optimizer's rule sees for a block of n parameters p: the gradient g = ±grad (+ wd·p)
// (+ l1·sign(p)), and param_scale: the factor 1 - lr·wd of decoupled weight decay (AdamW) that
// the rule applies to p in its own pass (p <- p*param_scale, then its update), else 1.
template <class T>
struct EffectiveGradient {
  const T* grad;  // `grad` itself when nothing changes it, else `scratch`
  T param_scale;
};

// Forms the effective gradient of the n parameters p (n <= kOptimBlock values in scratch).
template <class T>
EffectiveGradient<T> effective_gradient(const Penalties& pen, bool decays, bool maximize, double lr, T* p,
                                        const T* grad, index_t n, T* scratch) {
  const bool l2 = decays && pen.weight_decay != 0 && !pen.decoupled;
  const bool l1 = decays && pen.l1 != 0;
  const bool shrink = decays && pen.weight_decay != 0 && pen.decoupled;
  const T scale = shrink ? static_cast<T>(1.0 - lr * pen.weight_decay) : T(1);
  if (!maximize && !l2 && !l1) return {grad, scale};
  ArrMap<T> pa(p, n);
  if (shrink) pa *= scale;  // first, so that L1's sign(p) sees the decayed parameters
  ArrMap<T> g(scratch, n);
  if (maximize)
    g = -CArrMap<T>(grad, n);
  else
    g = CArrMap<T>(grad, n);
  if (l2) g += static_cast<T>(pen.weight_decay) * pa;
  if (l1) g += static_cast<T>(pen.l1) * pa.sign();
  return {scratch, T(1)};
}

// One row w (n values): if ||w||_2 > max_norm, w <- w * max_norm / (||w||_2 + 1e-7) (torch.renorm).
template <class T>
void renorm_row(T* w, index_t n, T max_norm) {
  const T norm = std::sqrt(ordered_sum<T>(w, n, [](T x) { return x * x; }));
  if (norm > max_norm) ArrMap<T>(w, n) *= max_norm / (norm + static_cast<T>(1e-7));
}

// The max-norm constraint alone, on the TRAINABLE + DECAY segments with row_len > 0.
template <class T>
void max_norm_(const SegmentTable& segs, T* params, T max_norm) {
  auto row_of = [&](index_t s) { return segs.decays(s) ? segs.row_len(s) : index_t(0); };
  const SegmentPlan plan(segs, row_of);
  plan.for_each(1, [&](index_t, index_t s, index_t begin, index_t end) {
    const index_t row = row_of(s);
    if (row <= 0) return;
    for (index_t r = begin; r < end; r += row) renorm_row(params + segs.offset(s) + r, row, max_norm);
  });
}

}  // namespace fastnn
