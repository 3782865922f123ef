// BFGS with a dense inverse-Hessian approximation M (n x n; for small models), N&W (6.17), with
// the first update scaled by M0 = (y.s / y.y) I (N&W 6.20) and pairs with y.s <= 1e-10 skipped
// (curvature not positive: keeping M positive definite).
#pragma once

#include "fastnn/optim/descent.h"

namespace fastnn {

template <class T>
struct BFGS {
  index_t n = 0;
  T* M = nullptr;           // (n, n) inverse Hessian approximation, row-major (symmetric)
  double* scalars = nullptr;  // [updates made]
  std::vector<T> work;

  bool direction(const T* g, T* d) {
    if (scalars[0] == 0) {
      for (index_t i = 0; i < n; ++i) d[i] = -g[i];
      return true;
    }
    Eigen::Map<Vec<T>>(d, n).noalias() = -(Eigen::Map<const RowMat<T>>(M, n, n) * Eigen::Map<const Vec<T>>(g, n));
    return true;
  }
  void restarted() {}
  double first_step(const T* g, const T*, double, double lr) {
    return scalars[0] == 0 ? std::min(1.0, 1.0 / vec_sum_abs(g, n)) * lr : lr;
  }
  void update(const T* s, const T* y, const T*, double) {
    const double ys = vec_dot(y, s, n);
    if (!(ys > 1e-10)) return;
    Eigen::Map<RowMat<T>> m(M, n, n);
    Eigen::Map<const Vec<T>> sv(s, n), yv(y, n);
    if (scalars[0] == 0) m.setIdentity(), m *= static_cast<T>(ys / vec_dot(y, y, n));
    // M+ = (I - rho s y')M(I - rho y s') + rho s s' = M - rho (s My' + My s') + rho^2 (y'My) s s' + rho s s'
    const T rho = static_cast<T>(1.0 / ys);
    work.resize(n);
    Eigen::Map<Vec<T>> my(work.data(), n);
    my.noalias() = m * yv;
    const T ymy = yv.dot(my);
    m.noalias() -= rho * (sv * my.transpose() + my * sv.transpose());
    m.noalias() += (rho * rho * ymy + rho) * (sv * sv.transpose());
    scalars[0] += 1;
  }
};

}  // namespace fastnn
