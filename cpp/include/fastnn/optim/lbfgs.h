// L-BFGS on flat buffers: the (s, y) history in a ring buffer of (m, n) matrices, the two-loop
// recursion (Nocedal & Wright Alg. 7.4), and one optimizer step with torch.optim.LBFGS's rules
// (first step min(1, 1/|g|_1) * lr, pairs kept when y.s > 1e-10, gamma = y.s / y.y, the same stop
// tests) so that its iterates match torch's; unlike torch, max_eval bounds every evaluation of
// the step, a NaN/inf loss shrinks the step, and a failed line search keeps the best point.
#pragma once

#include <cstdint>

#include "fastnn/optim/line_search.h"

namespace fastnn {

// The history, owned by the caller (Python keeps it as the optimizer's state arrays).
// ring[0] is the slot of the oldest pair, ring[1] the number of pairs.
template <class T>
struct LBFGSHistory {
  T* s = nullptr;        // (m, n) steps
  T* y = nullptr;        // (m, n) gradient changes
  double* rho = nullptr; // (m,) 1 / y.s
  std::int64_t* ring = nullptr;
  index_t m = 0, n = 0;

  index_t size() const { return ring[1]; }
  index_t slot(index_t k) const { return (ring[0] + k) % m; }  // k-th oldest pair
  void push(const T* s_new, const T* y_new, double ys) {
    index_t pos;
    if (ring[1] < m) {
      pos = slot(ring[1]);
      ++ring[1];
    } else {
      pos = ring[0];
      ring[0] = (ring[0] + 1) % m;
    }
    std::memcpy(s + pos * n, s_new, sizeof(T) * n);
    std::memcpy(y + pos * n, y_new, sizeof(T) * n);
    rho[pos] = 1.0 / ys;
  }
};

// r = H q with H the L-BFGS inverse-Hessian approximation of the history on gamma * I (two-loop
// recursion, N&W Alg. 7.4). alpha: scratch of m values. r may alias q.
template <class T>
void lbfgs_two_loop(const LBFGSHistory<T>& h, double gamma, const T* q, T* r, double* alpha) {
  const index_t n = h.n, k = h.size();
  Eigen::Map<Vec<T>> rv(r, n);
  if (r != q) rv = Eigen::Map<const Vec<T>>(q, n);
  for (index_t j = k - 1; j >= 0; --j) {
    const index_t i = h.slot(j);
    alpha[i] = vec_dot(h.s + i * n, r, n) * h.rho[i];
    rv -= static_cast<T>(alpha[i]) * Eigen::Map<const Vec<T>>(h.y + i * n, n);
  }
  rv *= static_cast<T>(gamma);
  for (index_t j = 0; j < k; ++j) {
    const index_t i = h.slot(j);
    const double beta = vec_dot(h.y + i * n, r, n) * h.rho[i];
    rv += static_cast<T>(alpha[i] - beta) * Eigen::Map<const Vec<T>>(h.s + i * n, n);
  }
}

struct LBFGSOptions {
  double lr = 1;
  index_t max_iter = 20;
  index_t max_eval = 25;
  double tolerance_grad = 1e-7;
  double tolerance_change = 1e-9;
  bool strong_wolfe = false;
};

// What persists between steps besides the history (torch's state "d", "t", "H_diag",
// "prev_flat_grad", "prev_loss", "n_iter", "func_evals").
template <class T>
struct LBFGSState {
  T* d = nullptr;          // (n,) last direction
  T* prev_g = nullptr;     // (n,) gradient where d was computed
  double* scalars = nullptr;     // [t, H_diag, prev_loss]
  std::int64_t* counters = nullptr;  // [n_iter, func_evals]
};

// One step of torch.optim.LBFGS (up to max_iter iterations). p.x moves; on return p.g is the
// gradient at the final x when report.evaluations > 0 of the last point (see torch).
template <class T>
Report lbfgs_step(Problem<T>& p, LBFGSHistory<T>& h, LBFGSState<T>& st, const LBFGSOptions& o) {
  const index_t n = p.n;
  Report rep;
  double loss = p.eval();
  rep.first_loss = rep.loss = loss;
  index_t evals = 1;
  st.counters[1] += 1;
  FASTNN_CHECK(std::isfinite(loss), "LBFGS.step", "the closure returned a non-finite loss (" << loss
                                                   << ") at the starting point");
  std::vector<T> g(p.g, p.g + n), x0(n), ybuf(n), sbuf(n);
  std::vector<double> alpha(static_cast<size_t>(h.m));
  double& t = st.scalars[0];
  double& h_diag = st.scalars[1];
  double& prev_loss = st.scalars[2];
  rep.status = Status::max_iter;
  if (vec_max_abs(g.data(), n) <= o.tolerance_grad) {
    rep.status = Status::gradient_tol;
    rep.evaluations = evals;
    return rep;
  }
  index_t it = 0;
  while (it < o.max_iter) {
    ++it;
    st.counters[0] += 1;
    if (st.counters[0] == 1) {
      for (index_t i = 0; i < n; ++i) st.d[i] = -g[i];
      h.ring[0] = h.ring[1] = 0;
      h_diag = 1;
    } else {
      double ys = 0, yy = 0;
      for (index_t i = 0; i < n; ++i) {
        ybuf[i] = g[i] - st.prev_g[i];
        sbuf[i] = st.d[i] * static_cast<T>(t);
      }
      ys = vec_dot(ybuf.data(), sbuf.data(), n);
      if (ys > 1e-10) {
        yy = vec_dot(ybuf.data(), ybuf.data(), n);
        h.push(sbuf.data(), ybuf.data(), ys);
        h_diag = ys / yy;
      }
      for (index_t i = 0; i < n; ++i) st.d[i] = -g[i];
      lbfgs_two_loop(h, h_diag, st.d, st.d, alpha.data());
    }
    std::memcpy(st.prev_g, g.data(), sizeof(T) * n);
    prev_loss = loss;
    t = st.counters[0] == 1 ? std::min(1.0, 1.0 / vec_sum_abs(g.data(), n)) * o.lr : o.lr;
    const double gtd = vec_dot(g.data(), st.d, n);
    if (gtd > -o.tolerance_change) {
      rep.status = Status::not_descent;
      break;
    }
    index_t ls_evals = 0;
    bool opt_cond = false;
    if (o.strong_wolfe) {
      std::memcpy(x0.data(), p.x, sizeof(T) * n);
      LineSearchOptions lo;
      lo.tolerance_change = o.tolerance_change;
      lo.max_evals = o.max_eval - evals;
      if (lo.max_evals <= 0) {
        rep.status = Status::max_eval;
        break;
      }
      const LineSearchResult ls = strong_wolfe(p, x0.data(), st.d, t, loss, g.data(), gtd, lo);
      ls_evals = ls.evals;
      evals += ls_evals;
      st.counters[1] += ls_evals;
      if (ls.t == 0 || !(ls.f < loss || ls.wolfe)) {
        // nothing lowered the loss: p.x is back at x0 (the best point) and g is its gradient
        rep.status = ls.nonfinite ? Status::nonfinite : Status::line_search_failed;
        t = 0;
        std::memcpy(p.g, g.data(), sizeof(T) * n);
        break;
      }
      t = ls.t;
      loss = ls.f;
      std::memcpy(g.data(), p.g, sizeof(T) * n);
      opt_cond = vec_max_abs(g.data(), n) <= o.tolerance_grad;
    } else {
      for (index_t i = 0; i < n; ++i) p.x[i] += static_cast<T>(t) * st.d[i];
      if (it != o.max_iter) {
        loss = p.eval();
        ls_evals = 1;
        evals += 1;
        st.counters[1] += 1;
        if (!std::isfinite(loss) || first_nonfinite(p.g, n) >= 0) {
          // a fixed step overflowed: step back to the last finite point and stop
          for (index_t i = 0; i < n; ++i) p.x[i] -= static_cast<T>(t) * st.d[i];
          loss = prev_loss;
          std::memcpy(p.g, g.data(), sizeof(T) * n);
          rep.status = Status::nonfinite;
          break;
        }
        std::memcpy(g.data(), p.g, sizeof(T) * n);
        opt_cond = vec_max_abs(g.data(), n) <= o.tolerance_grad;
      }
    }
    if (!p.keep_going(st.counters[0], loss)) { rep.status = Status::stopped; break; }
    if (it == o.max_iter) { rep.status = Status::max_iter; break; }
    if (evals >= o.max_eval) { rep.status = Status::max_eval; break; }
    if (opt_cond) { rep.status = Status::gradient_tol; break; }
    if (vec_max_abs(st.d, n) * std::abs(t) <= o.tolerance_change) { rep.status = Status::change_tol; break; }
    if (std::abs(loss - prev_loss) < o.tolerance_change) { rep.status = Status::change_tol; break; }
  }
  rep.iterations = it;
  rep.evaluations = evals;
  rep.loss = loss;
  return rep;
}

}  // namespace fastnn
