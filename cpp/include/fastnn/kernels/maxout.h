// Maxout (Goodfellow et al. 2013): y = max(w1ᵀx + b1, ..., wkᵀx + bk). The Linear layer before it
// produces the k = `pieces` values of every unit side by side, so x (N, C * pieces) is viewed as
// (groups = N * C, pieces) and each group reduces to its maximum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fastnn/common.h"

namespace fastnn {

namespace serial {

// y[g] = max_p x[g, p], argmax[g] = the first p reaching it. A NaN counts as the maximum (the first
// NaN wins), as in np.argmax and torch.max. Runs over blocks of groups, piece by piece, so the
// compare-and-select vectorizes across groups (strided loads) instead of a branchy loop per group.
template <class T>
void maxout_forward(const T* x, T* y, std::int64_t* argmax, index_t groups, index_t pieces) {
  constexpr index_t G = 64;
  T best[G];
  std::int64_t arg[G];
  for (index_t g0 = 0; g0 < groups; g0 += G) {
    const index_t len = std::min(G, groups - g0);
    const T* xb = x + g0 * pieces;
    for (index_t j = 0; j < len; ++j) best[j] = xb[j * pieces], arg[j] = 0;
    for (index_t p = 1; p < pieces; ++p) {
      for (index_t j = 0; j < len; ++j) {
        const T v = xb[j * pieces + p];
        const bool take = v > best[j] || (std::isnan(v) && !std::isnan(best[j]));
        best[j] = take ? v : best[j];
        arg[j] = take ? p : arg[j];
      }
    }
    std::copy_n(best, len, y + g0);
    std::copy_n(arg, len, argmax + g0);
  }
}

// grad_in[g, p] = grad_out[g] if p == argmax[g] else 0. argmax must lie in [0, pieces) (the binding checks).
template <class T>
void maxout_backward(const T* grad_out, const std::int64_t* argmax, T* grad_in, index_t groups, index_t pieces) {
  std::fill_n(grad_in, groups * pieces, T(0));
  for (index_t g = 0; g < groups; ++g) grad_in[g * pieces + argmax[g]] = grad_out[g];
}

}  // namespace serial

template <class T>
void maxout_forward(const T* x, T* y, std::int64_t* argmax, index_t groups, index_t pieces) {
  parallel_for(groups, pieces, [=](index_t b, index_t e) {
    serial::maxout_forward(x + b * pieces, y + b, argmax + b, e - b, pieces);
  });
}

template <class T>
void maxout_backward(const T* grad_out, const std::int64_t* argmax, T* grad_in, index_t groups, index_t pieces) {
  parallel_for(groups, pieces, [=](index_t b, index_t e) {
    serial::maxout_backward(grad_out + b, argmax + b, grad_in + b * pieces, e - b, pieces);
  });
}

// R{y} of maxout: the direction of the input piece that won (the R-operator; backward is maxout_backward).
template <class T>
void maxout_rop_forward(const T* rx, const std::int64_t* argmax, T* ry, index_t groups, index_t pieces) {
  parallel_for(groups, 1, [=](index_t b, index_t e) {
    for (index_t g = b; g < e; ++g) ry[g] = rx[g * pieces + argmax[g]];
  });
}

}  // namespace fastnn
