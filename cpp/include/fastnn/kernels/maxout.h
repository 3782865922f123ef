// Maxout (Goodfellow et al. 2013): y = max(w1ᵀx + b1, ..., wkᵀx + bk). The Linear layer before it
// produces the k = `pieces` values of every unit side by side, so x (N, C * pieces) is viewed as
// (groups = N * C, pieces) and each group reduces to its maximum.
#pragma once

#include <cmath>
#include <cstdint>

#include "fastnn/common.h"

namespace fastnn {

namespace serial {

// y[g] = max_p x[g, p], argmax[g] = the first p reaching it. A NaN counts as the maximum (the first
// NaN wins), as in np.argmax and torch.max.
template <class T>
void maxout_forward(const T* x, T* y, std::int64_t* argmax, index_t groups, index_t pieces) {
  for (index_t g = 0; g < groups; ++g) {
    const T* xg = x + g * pieces;
    T best = xg[0];
    index_t arg = 0;
    for (index_t p = 1; p < pieces && !std::isnan(best); ++p) {
      if (xg[p] > best || std::isnan(xg[p])) best = xg[p], arg = p;
    }
    y[g] = best;
    argmax[g] = arg;
  }
}

// grad_in[g, p] = grad_out[g] if p == argmax[g] else 0. argmax must lie in [0, pieces) (the binding checks).
template <class T>
void maxout_backward(const T* grad_out, const std::int64_t* argmax, T* grad_in, index_t groups, index_t pieces) {
  for (index_t g = 0; g < groups; ++g)
    for (index_t p = 0; p < pieces; ++p) grad_in[g * pieces + p] = p == argmax[g] ? grad_out[g] : T(0);
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

}  // namespace fastnn
