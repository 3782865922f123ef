// Gradient clipping by global norm and by value (torch.nn.utils.clip_grad_norm_ / clip_grad_value_),
// over the trainable segments of the flat gradient buffer.
#pragma once

#include <cmath>
#include <vector>

#include "fastnn/common.h"
#include "fastnn/optim/segments.h"

namespace fastnn {

// ||g||_p over all trainable segments: (sum |g|^p)^(1/p), max |g| for p = inf. One partial sum (in
// double) per fixed work item, added in item order: the result does not depend on the thread count.
template <class T>
double grad_norm(const SegmentTable& segs, const T* grads, double norm_type) {
  const SegmentPlan plan(segs, [](index_t) { return index_t(1); });
  std::vector<double> partial(plan.items(), 0.0);
  const bool inf = std::isinf(norm_type);
  plan.for_each(norm_type == 2.0 || inf ? 1 : 20, [&](index_t it, index_t s, index_t b, index_t e) {
    const T* g = grads + segs.offset(s) + b;
    const index_t n = e - b;
    if (inf)
      partial[it] = CArrMap<T>(g, n).abs().template maxCoeff<Eigen::PropagateNaN>();  // max: order-free
    else if (norm_type == 2.0)
      partial[it] = ordered_sum<double>(g, n, [](double x) { return x * x; });
    else if (norm_type == 1.0)
      partial[it] = ordered_sum<double>(g, n, [](double x) { return std::abs(x); });
    else
      partial[it] = ordered_sum<double>(g, n, [&](double x) { return std::pow(std::abs(x), norm_type); });
  });
  double total = 0.0;
  for (double x : partial) total = inf ? (std::isnan(x) || x > total ? x : total) : total + x;
  if (inf) return total;
  return norm_type == 2.0 ? std::sqrt(total) : norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type);
}

// g <- g * coef on the trainable segments.
template <class T>
void scale_grads(const SegmentTable& segs, T* grads, T coef) {
  const SegmentPlan plan(segs, [](index_t) { return index_t(1); });
  plan.for_each(1, [&](index_t, index_t s, index_t b, index_t e) {
    ArrMap<T>(grads + segs.offset(s) + b, e - b) *= coef;
  });
}

// total = ||g||_p;  g <- g * min(1, max_norm / (total + 1e-6)). Returns total (before clipping).
// With a non-finite total the gradients are scaled only if scale_nonfinite (torch's default).
template <class T>
double clip_grad_norm_(const SegmentTable& segs, T* grads, double max_norm, double norm_type,
                       bool scale_nonfinite = true) {
  const double total = grad_norm(segs, grads, norm_type);
  if (!std::isfinite(total) && !scale_nonfinite) return total;
  const double coef = max_norm / (total + 1e-6);
  if (!(coef >= 1.0)) scale_grads(segs, grads, static_cast<T>(coef));  // min(coef, 1); NaN scales like torch
  return total;
}

// g <- clamp(g, -clip_value, clip_value) on the trainable segments (NaN stays NaN, as in torch.clamp).
template <class T>
void clip_grad_value_(const SegmentTable& segs, T* grads, T clip_value) {
  const SegmentPlan plan(segs, [](index_t) { return index_t(1); });
  plan.for_each(1, [&](index_t, index_t s, index_t b, index_t e) {
    ArrMap<T> g(grads + segs.offset(s) + b, e - b);
    g = g.template max<Eigen::PropagateNaN>(-clip_value).template min<Eigen::PropagateNaN>(clip_value);
  });
}

}  // namespace fastnn
