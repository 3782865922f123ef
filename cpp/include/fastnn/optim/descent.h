// The loop shared by the line-search methods (nonlinear CG, BFGS, Newton): a method supplies a
// descent direction and learns from each step (s, y); the loop runs the strong-Wolfe line search,
// the stop tests and the evaluation budget, and keeps the best point when a line search fails.
#pragma once

#include "fastnn/optim/line_search.h"

namespace fastnn {

struct DescentOptions {
  double lr = 1;                 // first trial step of every line search after the first iteration
  index_t max_iter = 100;
  index_t max_eval = 125;
  double tolerance_grad = 1e-7;
  double tolerance_change = 1e-9;
  double c2 = 0.9;               // the line search's curvature condition
};

// Method interface:
//   bool direction(const T* g, T* d)       descent direction at the current point (false: d = -g was used)
//   double first_step(const T* g, const T* d, double gtd, bool first)   the line search's first trial
//   void update(const T* s, const T* y, double t)    after a step s = x_new - x, y = g_new - g
// p.g holds the gradient at p.x on entry when `evaluated` (one evaluation saved).
template <class T, class Method>
Report descent_minimize(Problem<T>& p, Method& method, const DescentOptions& o, const char* op) {
  const index_t n = p.n;
  Report rep;
  double loss = p.eval();
  index_t evals = 1;
  rep.first_loss = rep.loss = loss;
  FASTNN_CHECK(std::isfinite(loss), op, "the loss is not finite (" << loss << ") at the starting point");
  std::vector<T> g(p.g, p.g + n), d(n), x0(n), s(n), y(n);
  rep.status = Status::max_iter;
  index_t it = 0;
  while (true) {
    if (vec_max_abs(g.data(), n) <= o.tolerance_grad) {
      rep.status = Status::gradient_tol;
      break;
    }
    if (it >= o.max_iter) {
      rep.status = Status::max_iter;
      break;
    }
    if (evals >= o.max_eval) {
      rep.status = Status::max_eval;
      break;
    }
    ++it;
    method.direction(g.data(), d.data());
    double gtd = vec_dot(g.data(), d.data(), n);
    if (!(gtd < 0) || first_nonfinite(d.data(), n) >= 0) {  // not a descent direction: steepest descent
      for (index_t i = 0; i < n; ++i) d[i] = -g[i];
      gtd = vec_dot(g.data(), d.data(), n);
      method.restarted();
    }
    const double t0 = method.first_step(g.data(), d.data(), gtd, o.lr);
    std::memcpy(x0.data(), p.x, sizeof(T) * n);
    LineSearchOptions lo;
    lo.c2 = o.c2;
    lo.tolerance_change = o.tolerance_change;
    lo.max_evals = o.max_eval - evals;
    const LineSearchResult ls = strong_wolfe(p, x0.data(), d.data(), t0, loss, g.data(), gtd, lo);
    evals += ls.evals;
    if (ls.t == 0 || !(ls.f < loss)) {
      std::memcpy(p.x, x0.data(), sizeof(T) * n);
      std::memcpy(p.g, g.data(), sizeof(T) * n);
      rep.status = ls.budget_out && !ls.nonfinite ? Status::max_eval
                   : ls.nonfinite                 ? Status::nonfinite
                                                  : Status::line_search_failed;
      break;
    }
    for (index_t i = 0; i < n; ++i) {
      s[i] = p.x[i] - x0[i];
      y[i] = p.g[i] - g[i];
    }
    const double change = std::abs(loss - ls.f);
    loss = ls.f;
    std::memcpy(g.data(), p.g, sizeof(T) * n);
    method.update(s.data(), y.data(), g.data(), ls.t);
    if (!p.keep_going(it, loss)) {
      rep.status = Status::stopped;
      break;
    }
    if (change < o.tolerance_change || vec_max_abs(s.data(), n) <= o.tolerance_change) {
      rep.status = Status::change_tol;
      break;
    }
  }
  rep.iterations = it;
  rep.evaluations = evals;
  rep.loss = loss;
  return rep;
}

}  // namespace fastnn
