// The loss of a linear model (softmax, logistic or linear regression) and its gradient in one
// pass over the data (and, with the stacked weights [W; V], its curvature products H v = G v):
//   z = x W^T + b,  L = sum of the blocks' losses of z,  g = dL/dz,  dW = g^T x,  db = sum_rows g.
// Each block of rows runs forward, loss and weight gradient while its rows are in L2, so x is read
// from memory once per evaluation instead of twice (a forward over all rows, then a backward):
// for L-BFGS on 60000 x 784 float32 images (188 MB) those reads are what an evaluation costs.
//
// Rows are split into a fixed number of stripes (a function of n only), each summed in row order
// into its own partial gradient; the partials are added in stripe order, so the result does not
// depend on the thread count.
#pragma once

#include <exception>
#include <vector>

#include "fastnn/kernels/linear.h"
#include "fastnn/kernels/linear_narrow.h"

namespace fastnn {
namespace linear_loss_detail {

constexpr index_t kStripes = 16;
constexpr index_t kBlockRows = 64;  // 64 rows of 784 floats: 200 KB, in L2 from forward to gradient
constexpr index_t kMaxPartials = index_t(1) << 24;  // values of all stripes' partial gradients

inline index_t stripes_for(index_t n) { return std::max<index_t>(1, std::min(kStripes, n / kBlockRows)); }

}  // namespace linear_loss_detail

// Whether linear_loss_forward_backward takes a model of `out` outputs and `in` inputs (the narrow
// kernels of linear_narrow.h, partial gradients of a bounded size).
template <class T>
constexpr bool linear_loss_fits(index_t out, index_t in) {
  return narrow_linear_fits<T>(out) && in >= 1 && out * (in + 1) <= linear_loss_detail::kMaxPartials / linear_loss_detail::kStripes;
}

// Returns the sum of loss_block's values; writes (=) dw (gout, in) and, unless null, db (gout).
// x (n, in), w (out, in) C-contiguous; b (out) or null. loss_block(z, row0, rows, g, stripe) ->
// double gets the outputs z (rows, out) of rows [row0, row0 + rows) and writes the gradient
// g (rows, gout) whose products with x are summed; it runs concurrently on distinct rows (stripe
// < kStripes tells whose they are). An exception it throws is rethrown here after every thread
// stopped. gout <= out: the objective has gout = out (g = dL/dz); a curvature product of a
// linear model takes w = [W; V] and g = H_loss (x V^T + v_b) (net/full_batch.h). Needs
// linear_loss_fits<T>(out, in).
template <class T, class LossBlock>
double linear_loss_forward_backward(const T* x, index_t n, index_t in, const T* w, const T* b, index_t out,
                                    index_t gout, T* dw, T* db, const LossBlock& loss_block) {
  using namespace narrow_detail;
  using namespace linear_loss_detail;
  FASTNN_CHECK(linear_loss_fits<T>(out, in) && gout >= 1 && gout <= out, "linear_loss",
               "needs at most " << 4 * kP<T> << " outputs, got " << out);
  const T* wt = pack_transposed<T>(CMatMap<T>(w, out, in, Eigen::OuterStride<>(in)));
  const index_t stripes = stripes_for(n), size = gout * in + gout;
  std::vector<T> partial(static_cast<size_t>(stripes * size), T(0));
  std::vector<double> losses(static_cast<size_t>(stripes), 0.0);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(stripes));
  auto run_stripe = [&](index_t s) {
    try {
      const index_t r0 = n * s / stripes, r1 = n * (s + 1) / stripes;
      T* pw = partial.data() + s * size;
      T* pb = pw + gout * in;
      std::vector<T> zg(static_cast<size_t>(kBlockRows * (out + gout)));
      T *z = zg.data(), *g = z + kBlockRows * out;
      const T* rows[kBlockRows];
      double loss = 0;
      for (index_t r = r0; r < r1; r += kBlockRows) {
        const index_t m = std::min(kBlockRows, r1 - r);
        for (index_t i = 0; i < m; ++i) rows[i] = x + (r + i) * in;
        product_rows(PointerRows<T>{rows}, wt, in, z, out, out, 0, m, m, false,
                     [&](T* row) { linear_detail::bias_activation(row, b, out, Activation::none, T(0)); });
        loss += loss_block(static_cast<const T*>(z), r, m, g, s);
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < gout; ++j) pb[j] += g[i * gout + j];
        weight_grad_rows(rows, m, g, gout, in, pw, true);
      }
      losses[s] = loss;
    } catch (...) {
      errors[s] = std::current_exception();
    }
  };
  const int nt = static_cast<int>(std::min<index_t>(gemm_detail::gemm_threads(n * in * out), stripes));
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const index_t t = omp_get_thread_num(), nth = omp_get_num_threads();
      for (index_t s = stripes * t / nth; s < stripes * (t + 1) / nth; ++s) run_stripe(s);
    }
  } else
#endif
  {
    for (index_t s = 0; s < stripes; ++s) run_stripe(s);
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  double total = 0;
  for (index_t s = 0; s < stripes; ++s) total += losses[s];
  for (index_t j = 0; j < gout * in; ++j) {
    T sum = 0;
    for (index_t s = 0; s < stripes; ++s) sum += partial[s * size + j];
    dw[j] = sum;
  }
  if (db)
    for (index_t j = 0; j < gout; ++j) {
      T sum = 0;
      for (index_t s = 0; s < stripes; ++s) sum += partial[s * size + gout * in + j];
      db[j] = sum;
    }
  return total;
}

}  // namespace fastnn
