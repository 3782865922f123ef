// Nonlinear conjugate gradient (Nocedal & Wright 5.2): Fletcher-Reeves or Polak-Ribiere+ with a
// restart every `restart` iterations (default n) or when successive gradients lose orthogonality
// (|g_k . g_{k-1}| >= 0.2 |g_k|^2, N&W 5.52), over the strong-Wolfe loop of descent.h (c2 = 0.1).
#pragma once

#include "fastnn/optim/descent.h"

namespace fastnn {

enum class CGFormula { fletcher_reeves, polak_ribiere };

// State kept between calls (Python owns the arrays): the last direction and gradient, and
// scalars [iterations since restart, last g.d, last step, valid (1 after a step)].
template <class T>
struct ConjugateGradient {
  index_t n = 0;
  T* d_prev = nullptr;
  T* g_prev = nullptr;
  double* scalars = nullptr;
  CGFormula formula = CGFormula::polak_ribiere;
  index_t restart = 0;  // 0: every n iterations

  bool direction(const T* g, T* d) {
    const index_t period = restart > 0 ? restart : n;
    double& since = scalars[0];
    bool reset = scalars[3] == 0 || since >= static_cast<double>(period);
    double beta = 0;
    if (!reset) {
      const double gg_prev = vec_dot(g_prev, g_prev, n), gg = vec_dot(g, g, n), g_gprev = vec_dot(g, g_prev, n);
      if (std::abs(g_gprev) >= 0.2 * gg || gg_prev == 0) reset = true;
      else if (formula == CGFormula::fletcher_reeves) beta = gg / gg_prev;
      else beta = std::max(0.0, (gg - g_gprev) / gg_prev);
    }
    if (reset) since = 0;
    for (index_t i = 0; i < n; ++i) d[i] = -g[i] + static_cast<T>(beta) * d_prev[i];
    std::memcpy(g_prev, g, sizeof(T) * n);  // the gradient this direction was made from
    since += 1;
    return !reset;
  }
  void restarted() { scalars[0] = 1; }
  // N&W (3.60): the same first-order change as the last step; the first one min(1, 1/|g|_1) * lr.
  double first_step(const T* g, const T*, double gtd, double lr) {
    double t = scalars[3] == 0 ? std::min(1.0, 1.0 / vec_sum_abs(g, n)) * lr : scalars[2] * scalars[1] / gtd;
    if (!(t > 0) || !std::isfinite(t)) t = lr;
    scalars[1] = gtd;
    return std::min(t, 1e10);
  }
  void update(const T* s, const T*, const T*, double t) {
    for (index_t i = 0; i < n; ++i) d_prev[i] = s[i] / static_cast<T>(t);  // the direction of this step
    scalars[2] = t;
    scalars[3] = 1;
  }
};

}  // namespace fastnn
