// Newton's method with the exact Hessian: d solves (H + lambda I) d = -g by Cholesky (Eigen LLT),
// with Levenberg-Marquardt damping: lambda grows x10 from `damping` until the factorization
// succeeds (H indefinite), and after 8 failures a gradient step is taken instead. A full step
// t = 1 is tried first, so a convex quadratic is solved in one iteration.
#pragma once

#include <Eigen/Cholesky>

#include "fastnn/optim/descent.h"

namespace fastnn {

// The Hessian by central differences of gradients, column j = (g(x + e e_j) - g(x - e e_j)) / 2e,
// symmetrized: the fallback without an exact Hessian (2n gradient evaluations; x, g restored).
template <class T>
void finite_difference_hessian(Problem<T>& p, T* H) {
  const index_t n = p.n;
  std::vector<T> x0(p.x, p.x + n), g0(p.g, p.g + n), gp(n);
  for (index_t j = 0; j < n; ++j) {
    const double e = std::sqrt(std::numeric_limits<T>::epsilon()) * (1 + std::abs(double(x0[j])));
    p.x[j] = static_cast<T>(x0[j] + e);
    p.eval();
    std::memcpy(gp.data(), p.g, sizeof(T) * n);
    p.x[j] = static_cast<T>(x0[j] - e);
    p.eval();
    p.x[j] = x0[j];
    for (index_t i = 0; i < n; ++i) H[i * n + j] = static_cast<T>((double(gp[i]) - double(p.g[i])) / (2 * e));
  }
  Eigen::Map<RowMat<T>> h(H, n, n);
  h = (h + h.transpose().eval()) * T(0.5);
  std::memcpy(p.g, g0.data(), sizeof(T) * n);
}

template <class T>
struct Newton {
  index_t n = 0;
  T* H = nullptr;                          // (n, n) workspace the Hessian is written into
  std::function<void(T*)> hessian;         // writes the Hessian at the current point (row-major)
  double damping = 0;                      // the smallest lambda tried
  double* scalars = nullptr;               // [lambda used last, gradient-step fallbacks so far]
  bool fell_back = false;                  // this iteration's direction is -g

  bool direction(const T* g, T* d) {
    hessian(H);
    Eigen::Map<const RowMat<T>> h(H, n, n);
    FASTNN_CHECK(first_nonfinite(H, n * n) < 0, "newton", "the Hessian contains NaN or infinity");
    const double scale = std::max(1e-12, static_cast<double>(h.diagonal().cwiseAbs().maxCoeff()));
    double lambda = damping;
    ColMat<T> a(n, n);
    for (int attempt = 0; attempt < 9; ++attempt) {
      a = h.transpose();  // symmetric: only the layout changes
      a = (a + h) * T(0.5);
      if (lambda > 0) a.diagonal().array() += static_cast<T>(lambda);
      Eigen::LLT<ColMat<T>> llt(a);
      if (llt.info() == Eigen::Success) {
        Eigen::Map<Vec<T>>(d, n) = llt.solve(-Eigen::Map<const Vec<T>>(g, n));
        scalars[0] = lambda;
        fell_back = false;
        return true;
      }
      lambda = lambda > 0 ? lambda * 10 : 1e-6 * scale;
    }
    for (index_t i = 0; i < n; ++i) d[i] = -g[i];  // not positive definite even damped
    scalars[0] = lambda;
    scalars[1] += 1;
    fell_back = true;
    return false;
  }
  void restarted() { fell_back = true; }
  double first_step(const T* g, const T*, double, double lr) {
    return fell_back ? std::min(1.0, 1.0 / vec_sum_abs(g, n)) * lr : lr;
  }
  void update(const T*, const T*, const T*, double) {}
};

}  // namespace fastnn
