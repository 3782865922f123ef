// Hessian-free (truncated Newton) optimization, Martens 2010: each iteration solves
// (B + lambda I) p = -g by conjugate gradient on a curvature-vector product (H.v or the
// Gauss-Newton G.v), warm-started from 0.95 times the last solution, stopped by the Newton-CG
// forcing term |r| <= min(0.5, sqrt|g|) |g|, a CG iteration limit or negative curvature; then
// "CG backtracking" (the best of the iterates saved at i = ceil(1.3^j); earlier ones are evaluated
// only when the last falls short of its model), an Armijo backtracking line search, and
// Levenberg-Marquardt adaptation of lambda from the reduction ratio.
#pragma once

#include "fastnn/optim/line_search.h"

namespace fastnn {

// out = B v at the current point of the problem.
template <class T>
using CurvatureFn = std::function<void(const T* v, T* out)>;

// H v ~ (g(x + e v) - g(x - e v)) / (2 e), e = sqrt(eps) (1 + |x|) / |v|: the fallback when no
// exact product is available (two gradient evaluations; x and g are restored).
template <class T>
void finite_difference_hvp(Problem<T>& p, const T* v, T* out) {
  const index_t n = p.n;
  const double vn = std::sqrt(vec_dot(v, v, n));
  if (vn == 0) {
    std::fill(out, out + n, T(0));
    return;
  }
  const double xn = std::sqrt(vec_dot(p.x, p.x, n));
  const double e = std::sqrt(std::numeric_limits<T>::epsilon()) * (1 + xn) / vn;
  std::vector<T> x0(p.x, p.x + n), g0(p.g, p.g + n), gp(n);
  set_point(p.x, x0.data(), e, v, n);
  p.eval();
  std::memcpy(gp.data(), p.g, sizeof(T) * n);
  set_point(p.x, x0.data(), -e, v, n);
  p.eval();
  for (index_t i = 0; i < n; ++i) out[i] = static_cast<T>((double(gp[i]) - double(p.g[i])) / (2 * e));
  std::memcpy(p.x, x0.data(), sizeof(T) * n);
  std::memcpy(p.g, g0.data(), sizeof(T) * n);
}

struct HessianFreeOptions {
  index_t max_iter = 100;
  index_t max_eval = 1000;       // loss/gradient evaluations (curvature products are counted apart)
  index_t max_cg = 250;
  double tolerance_grad = 1e-7;
  double tolerance_change = 1e-9;
  bool adapt_damping = true;
};

// The reduction ratio (actual / predicted by the model) at which the last CG iterate is kept without
// evaluating earlier ones (Martens' backtracking then costs no pass when the model is right).
constexpr double kTrustRatio = 0.5;

// scalars: [lambda (the damping, adapted in place), curvature products so far]; p_prev (n,) the
// last CG solution (warm start), kept by the caller.
template <class T>
Report hessian_free_minimize(Problem<T>& p, const CurvatureFn<T>& curvature, T* p_prev, double* scalars,
                             const HessianFreeOptions& o) {
  const index_t n = p.n;
  Report rep;
  double loss = p.eval();
  index_t evals = 1;
  rep.first_loss = rep.loss = loss;
  FASTNN_CHECK(std::isfinite(loss), "hessian_free", "the loss is not finite (" << loss << ") at the starting point");
  std::vector<T> g(p.g, p.g + n), x0(n), step(n), r(n), z(n), Az(n), best_g(n);
  double& lambda = scalars[0];
  auto apply = [&](const T* v, T* out) {  // (B + lambda I) v
    curvature(v, out);
    scalars[1] += 1;
    for (index_t i = 0; i < n; ++i) out[i] += static_cast<T>(lambda) * v[i];
  };
  rep.status = Status::max_iter;
  index_t it = 0;
  while (true) {
    const double gmax = vec_max_abs(g.data(), n);
    if (gmax <= o.tolerance_grad) { rep.status = Status::gradient_tol; break; }
    if (it >= o.max_iter) { rep.status = Status::max_iter; break; }
    if (evals >= o.max_eval) { rep.status = Status::max_eval; break; }
    ++it;
    // CG on (B + lambda I) s = -g from s = 0.95 p_prev. Each saved iterate keeps its value of the
    // undamped model q(s) = g.s + s.B s / 2 = (g.s - r.s) / 2 - lambda |s|^2 / 2 (r = -g - (B + lambda I) s,
    // the CG residual), so the reduction ratio needs no further product.
    const double gnorm = std::sqrt(vec_dot(g.data(), g.data(), n));
    const double forcing = std::min(0.5, std::sqrt(gnorm)) * gnorm;
    for (index_t i = 0; i < n; ++i) step[i] = T(0.95) * p_prev[i];
    if (vec_max_abs(step.data(), n) > 0) {
      apply(step.data(), Az.data());
      for (index_t i = 0; i < n; ++i) r[i] = -g[i] - Az[i];
    } else {  // a cold start: (B + lambda I) 0 = 0 needs no product
      for (index_t i = 0; i < n; ++i) r[i] = -g[i];
    }
    std::vector<T> dir(r);
    double rr = vec_dot(r.data(), r.data(), n);
    std::vector<std::vector<T>> saved;  // CG iterates for backtracking
    std::vector<double> saved_q;        // their model values q(s)
    auto model_of = [&](const std::vector<T>& s) {
      return 0.5 * (vec_dot(g.data(), s.data(), n) - vec_dot(r.data(), s.data(), n)) -
             0.5 * lambda * vec_dot(s.data(), s.data(), n);
    };
    index_t next_save = 1;
    double save_at = 1;
    for (index_t k = 1; k <= o.max_cg && std::sqrt(rr) > forcing; ++k) {
      apply(dir.data(), z.data());
      const double dAd = vec_dot(dir.data(), z.data(), n);
      if (!(dAd > 0)) break;  // negative curvature: stop at the last iterate
      const double a = rr / dAd;
      for (index_t i = 0; i < n; ++i) step[i] += static_cast<T>(a) * dir[i], r[i] -= static_cast<T>(a) * z[i];
      const double rr_new = vec_dot(r.data(), r.data(), n);
      for (index_t i = 0; i < n; ++i) dir[i] = r[i] + static_cast<T>(rr_new / rr) * dir[i];
      rr = rr_new;
      if (k == next_save) {
        saved.push_back(step), saved_q.push_back(model_of(step));
        while (next_save <= k) save_at *= 1.3, next_save = static_cast<index_t>(std::ceil(save_at));
      }
    }
    if (saved.empty() || saved.back() != step) saved.push_back(step), saved_q.push_back(model_of(step));
    if (vec_dot(g.data(), step.data(), n) >= 0) {  // not a descent direction (negative curvature at once)
      for (index_t i = 0; i < n; ++i) step[i] = -g[i];
      curvature(step.data(), Az.data());
      scalars[1] += 1;
      saved.assign(1, step);
      saved_q.assign(1, vec_dot(g.data(), step.data(), n) + 0.5 * vec_dot(step.data(), Az.data(), n));
    }
    std::memcpy(p_prev, saved.back().data(), sizeof(T) * n);
    // CG backtracking: from the last iterate back while the loss keeps falling. CG lowers the model
    // at every iterate, so when the last one achieves a trusted share of its predicted reduction
    // (ratio >= kTrustRatio) no earlier iterate is evaluated.
    std::memcpy(x0.data(), p.x, sizeof(T) * n);
    double best_f = std::numeric_limits<double>::infinity();
    index_t best = -1;
    for (index_t j = static_cast<index_t>(saved.size()) - 1; j >= 0 && evals < o.max_eval; --j) {
      set_point(p.x, x0.data(), 1.0, saved[j].data(), n);
      const double f = p.eval();
      ++evals;
      const bool finite = std::isfinite(f) && first_nonfinite(p.g, n) < 0;
      if (finite && f < best_f) {
        best_f = f, best = j;
        std::memcpy(best_g.data(), p.g, sizeof(T) * n);
        if (saved_q[j] < 0 && (f - loss) / saved_q[j] >= kTrustRatio) break;
      } else if (best >= 0) {
        break;
      }
    }
    const index_t chosen_at = best >= 0 ? best : static_cast<index_t>(saved.size()) - 1;
    const T* chosen = saved[chosen_at].data();
    const double gs = vec_dot(g.data(), chosen, n), sBs = 2 * (saved_q[chosen_at] - gs);
    double t = 1;
    // Armijo backtracking when the chosen iterate did not lower the loss enough.
    while (!(best_f <= loss + 1e-2 * t * gs) && evals < o.max_eval && t > 1e-8) {
      t *= 0.8;
      set_point(p.x, x0.data(), t, chosen, n);
      const double f = p.eval();
      ++evals;
      if (std::isfinite(f) && first_nonfinite(p.g, n) < 0) {
        best_f = f;
        std::memcpy(best_g.data(), p.g, sizeof(T) * n);
      } else {
        best_f = std::numeric_limits<double>::infinity();
      }
    }
    if (!(best_f < loss)) {
      std::memcpy(p.x, x0.data(), sizeof(T) * n);
      std::memcpy(p.g, g.data(), sizeof(T) * n);
      std::fill(p_prev, p_prev + n, T(0));
      if (o.adapt_damping) lambda = std::max(lambda * 1.5, 1e-8);
      rep.status = evals >= o.max_eval ? Status::max_eval : Status::line_search_failed;
      if (!std::isfinite(best_f) && rep.status != Status::max_eval) rep.status = Status::nonfinite;
      if (rep.status != Status::line_search_failed || lambda > 1e12) break;
      continue;  // more damping: a shorter, more gradient-like step
    }
    const double q = t * gs + 0.5 * t * t * sBs;  // the model at the step taken, t s
    if (o.adapt_damping && q < 0) {
      const double rho = (best_f - loss) / q;
      if (rho < 0.25) lambda = std::max(lambda * 1.5, 1e-8);
      else if (rho > 0.75) lambda *= 2.0 / 3.0;
    }
    set_point(p.x, x0.data(), t, chosen, n);
    std::memcpy(p.g, best_g.data(), sizeof(T) * n);
    std::memcpy(g.data(), best_g.data(), sizeof(T) * n);
    const double change = std::abs(loss - best_f);
    loss = best_f;
    if (!p.keep_going(it, loss)) { rep.status = Status::stopped; break; }
    if (change < o.tolerance_change) { rep.status = Status::change_tol; break; }
  }
  rep.iterations = it;
  rep.evaluations = evals;
  rep.loss = loss;
  return rep;
}

}  // namespace fastnn
