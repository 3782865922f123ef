// Curvature of the losses of kernels/loss.h: hr = H r, with H the Hessian of scale * sum_i loss_i
// with respect to the model output z (what an exact Hessian-vector product and a Gauss-Newton
// product need after the R-operator forward pass gives r = R{z}). All H are PSD.
//   softmax cross-entropy, row i, p = softmax(z_i), s_i = sum_c t_ic (1 with labels):
//       (H r)_i = scale s_i (p ⊙ r_i - p (p · r_i))
//   BCE with logits, elementwise, σ = sigmoid(z):  H r = scale σ (1 - σ) r
//   MSE, elementwise:                              H r = 2 scale r
// Rows are independent: threads take whole rows, each row's sums in double, so the result does
// not depend on the thread count. reference/loss_hessian.py holds the same formulas.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fastnn/common.h"

namespace fastnn {

// labels (n) or probs (n, c): exactly one is given.
template <class T>
void cross_entropy_hessian_vector(const T* logits, const std::int64_t* labels, const T* probs, const T* r, T* hr,
                                  index_t n, index_t c, double scale) {
  parallel_for(n, 8 * c, [=](index_t r0, index_t r1) {
    std::vector<double> p(static_cast<size_t>(c));
    for (index_t i = r0; i < r1; ++i) {
      const T* z = logits + i * c;
      double mx = z[0];
      for (index_t j = 1; j < c; ++j) mx = std::max(mx, double(z[j]));
      double sum = 0;
      for (index_t j = 0; j < c; ++j) sum += p[j] = std::exp(double(z[j]) - mx);
      double s = 1;
      if (!labels) {
        s = 0;
        for (index_t j = 0; j < c; ++j) s += probs[i * c + j];
      }
      double dot = 0;
      for (index_t j = 0; j < c; ++j) dot += (p[j] /= sum) * r[i * c + j];
      for (index_t j = 0; j < c; ++j) hr[i * c + j] = T(scale * s * p[j] * (r[i * c + j] - dot));
    }
  });
}

template <class T>
void bce_with_logits_hessian_vector(const T* logits, const T* r, T* hr, index_t n, double scale) {
  parallel_for(n, 8, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const double sg = 1.0 / (1.0 + std::exp(-double(logits[i])));
      hr[i] = T(scale * sg * (1.0 - sg) * r[i]);
    }
  });
}

template <class T>
void mse_hessian_vector(const T* r, T* hr, index_t n, double scale) {
  const T k = T(2 * scale);
  parallel_for(n, 1, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) hr[i] = k * r[i];
  });
}

}  // namespace fastnn
