// The objective a second-order method minimizes (a point changed in place, a gradient buffer, an
// evaluation callback), the shared result of those methods, and the strong-Wolfe line search
// (torch/optim/lbfgs.py `_strong_wolfe`, itself minFunc's bracketing + cubic-interpolation zoom,
// Nocedal & Wright Alg. 3.5/3.6), extended so that a NaN or infinite value shrinks the step, the
// evaluation budget counts every evaluation, and a failure says why and keeps the best point.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fastnn/common.h"
#include "fastnn/kernels/finite.h"

namespace fastnn {

// f(x) and its gradient. x is changed in place by the methods (a model's flat parameters are the
// point); eval() returns f at the current x and writes the gradient into g.
template <class T>
struct Problem {
  T* x = nullptr;
  T* g = nullptr;
  index_t n = 0;
  std::function<double()> eval;
  // Called after each iteration with the iteration number and the loss at the new point; false
  // stops the method (status stopped). May be empty.
  std::function<bool(index_t, double)> on_iteration;

  bool keep_going(index_t it, double loss) const { return !on_iteration || on_iteration(it, loss); }
};

// Why a method or a line search stopped.
enum class Status : int {
  max_iter = 0,         // the iteration limit was reached
  gradient_tol = 1,     // max |g| <= tolerance_grad: converged
  change_tol = 2,       // the loss or the step changed less than tolerance_change
  max_eval = 3,         // the evaluation budget is spent
  line_search_failed = 4,  // no step along the direction lowered the loss; x is the best point seen
  nonfinite = 5,        // the loss or gradient was NaN/inf at every step tried; x is the best point seen
  not_descent = 6,      // the direction is not a descent direction (g.d >= -tolerance_change)
  stopped = 7,          // the iteration callback asked to stop
};

inline const char* status_message(Status s) {
  switch (s) {
    case Status::max_iter: return "the maximum number of iterations was reached";
    case Status::gradient_tol: return "converged: the largest gradient component is below tolerance_grad";
    case Status::change_tol: return "converged: the loss or the step changed less than tolerance_change";
    case Status::max_eval: return "the maximum number of function evaluations was reached";
    case Status::line_search_failed:
      return "the line search found no lower loss along the search direction; the parameters are the best point found";
    case Status::nonfinite:
      return "the loss or gradient was NaN or infinite at every step the line search tried; "
             "the parameters are the best point found";
    case Status::not_descent: return "converged: the directional derivative is above -tolerance_change";
    case Status::stopped: return "stopped by the callback";
  }
  return "";
}

// Counts of one call of a method (one optimizer step, or a whole minimize run).
struct Report {
  Status status = Status::max_iter;
  index_t iterations = 0;
  index_t evaluations = 0;
  double first_loss = 0;  // the loss at the starting point (what torch's LBFGS.step returns)
  double loss = 0;        // the loss at the final x
};

template <class T>
double vec_dot(const T* a, const T* b, index_t n) {
  return static_cast<double>(Eigen::Map<const Vec<T>>(a, n).dot(Eigen::Map<const Vec<T>>(b, n)));
}
template <class T>
double vec_max_abs(const T* a, index_t n) {
  return n == 0 ? 0.0 : static_cast<double>(Eigen::Map<const Vec<T>>(a, n).cwiseAbs().maxCoeff());
}
template <class T>
double vec_sum_abs(const T* a, index_t n) {
  return static_cast<double>(Eigen::Map<const Vec<T>>(a, n).cwiseAbs().sum());
}
// x = x0 + t d, as torch's `p.add_(d, alpha=t)` on a copy of x0.
template <class T>
void set_point(T* x, const T* x0, double t, const T* d, index_t n) {
  const T tt = static_cast<T>(t);
  for (index_t i = 0; i < n; ++i) x[i] = x0[i] + tt * d[i];
}

// Minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to the bounds
// (torch's _cubic_interpolate, from torch/optim polyinterp.lua).
inline double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi) {
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (d2_square >= 0) {
    const double d2 = std::sqrt(d2_square);
    const double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                                    : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    if (std::isfinite(min_pos)) return std::min(std::max(min_pos, lo), hi);
  }
  return (lo + hi) / 2.0;
}
inline double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2) {
  return cubic_interpolate(x1, f1, g1, x2, f2, g2, std::min(x1, x2), std::max(x1, x2));
}

struct LineSearchOptions {
  double c1 = 1e-4;              // sufficient decrease (Armijo)
  double c2 = 0.9;               // curvature (0.9 for quasi-Newton, 0.1 for nonlinear CG)
  double tolerance_change = 1e-9;
  index_t max_evals = 25;        // evaluations this line search may make, including the first
};

struct LineSearchResult {
  double f = 0;     // loss at the accepted step
  double t = 0;     // the accepted step (0: none lowered the loss)
  index_t evals = 0;
  bool wolfe = false;       // the strong Wolfe conditions hold at t
  bool nonfinite = false;   // some trial step gave a NaN/inf loss or gradient (and was shrunk)
  bool budget_out = false;  // the evaluation budget ran out
};

// Strong-Wolfe line search along d from x0 (loss f0, gradient g0, g0.d = gtd0 < 0), first trial t.
// On return p.x = x0 + t d and p.g is the gradient there (the point of lowest loss found, which is
// x0 itself with t = 0 when no trial lowered the loss).
template <class T>
LineSearchResult strong_wolfe(Problem<T>& p, const T* x0, const T* d, double t, double f0, const T* g0, double gtd0,
                              const LineSearchOptions& o) {
  const index_t n = p.n;
  const double d_norm = vec_max_abs(d, n);
  LineSearchResult r;
  std::vector<T> g_prev(g0, g0 + n), g_new(n);
  std::vector<T> bracket_g[2] = {std::vector<T>(n), std::vector<T>(n)};
  double f_new = 0, gtd_new = 0;
  // Evaluates at x0 + t d; a NaN/inf value halves the step towards `lo` (a point known finite)
  // and tries again while the budget lasts. False when the budget ran out on a non-finite value.
  auto eval_at = [&](double& step, double lo) {
    for (;;) {
      set_point(p.x, x0, step, d, n);
      f_new = p.eval();
      ++r.evals;
      std::memcpy(g_new.data(), p.g, sizeof(T) * n);
      if (std::isfinite(f_new) && first_nonfinite(g_new.data(), n) < 0) {
        gtd_new = vec_dot(g_new.data(), d, n);
        return true;
      }
      r.nonfinite = true;
      if (r.evals >= o.max_evals) return false;
      step = lo + 0.5 * (step - lo);
    }
  };
  double bracket[2] = {0, 0}, bracket_f[2] = {f0, f0}, bracket_gtd[2] = {gtd0, gtd0};
  int n_bracket = 0;
  auto finish = [&](double step, double f, const T* g) {
    r.t = step;
    r.f = f;
    set_point(p.x, x0, step, d, n);
    std::memcpy(p.g, g, sizeof(T) * n);
    return r;
  };
  if (!eval_at(t, 0.0)) {
    r.budget_out = true;
    return finish(0.0, f0, g0);
  }
  double t_prev = 0, f_prev = f0, gtd_prev = gtd0;
  bool done = false;
  index_t ls_iter = 0;
  auto set_bracket = [&](int k, double bt, double bf, const std::vector<T>& bg, double bgtd) {
    bracket[k] = bt, bracket_f[k] = bf, bracket_gtd[k] = bgtd;
    std::copy(bg.begin(), bg.end(), bracket_g[k].begin());
  };
  // Bracketing phase.
  for (;;) {
    if (f_new > f0 + o.c1 * t * gtd0 || (ls_iter > 1 && f_new >= f_prev)) {
      set_bracket(0, t_prev, f_prev, g_prev, gtd_prev);
      set_bracket(1, t, f_new, g_new, gtd_new);
      n_bracket = 2;
      break;
    }
    if (std::abs(gtd_new) <= -o.c2 * gtd0) {
      set_bracket(0, t, f_new, g_new, gtd_new);
      n_bracket = 1;
      done = true;
      break;
    }
    if (gtd_new >= 0) {
      set_bracket(0, t_prev, f_prev, g_prev, gtd_prev);
      set_bracket(1, t, f_new, g_new, gtd_new);
      n_bracket = 2;
      break;
    }
    if (r.evals >= o.max_evals) {  // torch: bracket = [0, t]
      set_bracket(0, 0.0, f0, std::vector<T>(g0, g0 + n), gtd0);
      set_bracket(1, t, f_new, g_new, gtd_new);
      n_bracket = 2;
      r.budget_out = true;
      break;
    }
    const double min_step = t + 0.01 * (t - t_prev), max_step = t * 10, tmp = t;
    t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, min_step, max_step);
    t_prev = tmp, f_prev = f_new, gtd_prev = gtd_new;
    g_prev = g_new;
    if (!eval_at(t, t_prev)) {  // only non-finite values beyond t_prev: the best point is t_prev
      r.budget_out = true;
      return finish(t_prev, f_prev, g_prev.data());
    }
    ++ls_iter;
  }
  if (done) {
    r.wolfe = true;
    return finish(bracket[0], bracket_f[0], bracket_g[0].data());
  }
  // Zoom phase.
  int low = bracket_f[0] <= bracket_f[1] ? 0 : 1, high = 1 - low;
  bool insuf_progress = false;
  while (!done && r.evals < o.max_evals) {
    if (std::abs(bracket[1] - bracket[0]) * d_norm < o.tolerance_change) break;
    t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]);
    const double bmax = std::max(bracket[0], bracket[1]), bmin = std::min(bracket[0], bracket[1]);
    const double eps = 0.1 * (bmax - bmin);
    if (std::min(bmax - t, t - bmin) < eps) {
      if (insuf_progress || t >= bmax || t <= bmin) {
        t = std::abs(t - bmax) < std::abs(t - bmin) ? bmax - eps : bmin + eps;
        insuf_progress = false;
      } else {
        insuf_progress = true;
      }
    } else {
      insuf_progress = false;
    }
    if (!eval_at(t, bracket[low])) {
      r.budget_out = true;
      break;
    }
    if (f_new > f0 + o.c1 * t * gtd0 || f_new >= bracket_f[low]) {
      set_bracket(high, t, f_new, g_new, gtd_new);
      low = bracket_f[0] <= bracket_f[1] ? 0 : 1, high = 1 - low;
    } else {
      if (std::abs(gtd_new) <= -o.c2 * gtd0) {
        done = true;
      } else if (gtd_new * (bracket[high] - bracket[low]) >= 0) {
        bracket[high] = bracket[low], bracket_f[high] = bracket_f[low], bracket_gtd[high] = bracket_gtd[low];
        bracket_g[high] = bracket_g[low];
      }
      set_bracket(low, t, f_new, g_new, gtd_new);
    }
  }
  if (!done && r.evals >= o.max_evals) r.budget_out = true;
  r.wolfe = done;
  (void)n_bracket;
  return finish(bracket[low], bracket_f[low], bracket_g[low].data());
}

}  // namespace fastnn
