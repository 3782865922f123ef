// softmax and log_softmax over the last axis, on x viewed as (rows, cols), and their derivatives.
//
// serial::<op>_* handle a block of rows on one thread (the loss kernels and the Linear layer call
// them on rows they already hold); fastnn::<op>_* split the rows over threads. Each row is computed
// the same way whatever the split, so results do not depend on the thread count. Output may alias
// the input (in-place).
#pragma once

#include <cmath>

#include "fastnn/common.h"
#include "fastnn/kernels/blockwise.h"

namespace fastnn {

namespace serial {

// y = exp(x - max(x)) / sum(exp(x - max(x))) per row; subtracting the row max keeps exp <= 1.
template <class T>
void softmax_forward(const T* x, T* y, index_t rows, index_t cols) {
  using B = blockwise::Block<T>;
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T m = CArrMap<T>(xr, cols).maxCoeff();
    blockwise::map(yr, cols, [m](const B& v) -> B { return (v - m).exp(); }, xr);
    ArrMap<T>(yr, cols) *= T(1) / blockwise::sum(yr, cols);
  }
}

// grad_in = y * (g - sum(g * y)) per row.
template <class T>
void softmax_backward(const T* grad_out, const T* y, T* grad_in, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    const T *g = grad_out + r * cols, *yr = y + r * cols;
    const T dot = blockwise::dot(g, yr, cols);
    ArrMap<T>(grad_in + r * cols, cols) = CArrMap<T>(yr, cols) * (CArrMap<T>(g, cols) - dot);
  }
}

// y = x - max(x) - log(sum(exp(x - max(x)))) per row.
template <class T>
void log_softmax_forward(const T* x, T* y, index_t rows, index_t cols) {
  using B = blockwise::Block<T>;
  constexpr index_t W = blockwise::kBlock<T>;
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T m = CArrMap<T>(xr, cols).maxCoeff();
    B v, sum = B::Zero();
    for (index_t i = 0; i < cols; i += W) {  // sum of exp(x - m), not stored
      const index_t len = std::min(W, cols - i);
      blockwise::load(xr + i, len, v);
      const B e = (v - m).exp();
      if (len == W)
        sum += e;
      else
        sum.head(len) += e.head(len);
    }
    const T log_sum = std::log(sum.sum());
    ArrMap<T>(y + r * cols, cols) = (CArrMap<T>(xr, cols) - m) - log_sum;  // not x - (m + log_sum): m may be huge
  }
}

// grad_in = g - exp(y) * sum(g) per row, y being the log_softmax output.
template <class T>
void log_softmax_backward(const T* grad_out, const T* y, T* grad_in, index_t rows, index_t cols) {
  using B = blockwise::Block<T>;
  for (index_t r = 0; r < rows; ++r) {
    const T* g = grad_out + r * cols;
    const T gsum = blockwise::sum(g, cols);
    blockwise::map(grad_in + r * cols, cols, [gsum](const B& gb, const B& yb) -> B { return gb - yb.exp() * gsum; }, g,
                   y + r * cols);
  }
}

}  // namespace serial

template <class T>
void softmax_forward(const T* x, T* y, index_t rows, index_t cols) {
  parallel_for(rows, cols * blockwise::kCostExp,
               [=](index_t b, index_t e) { serial::softmax_forward(x + b * cols, y + b * cols, e - b, cols); });
}

template <class T>
void softmax_backward(const T* grad_out, const T* y, T* grad_in, index_t rows, index_t cols) {
  parallel_for(rows, cols, [=](index_t b, index_t e) {
    serial::softmax_backward(grad_out + b * cols, y + b * cols, grad_in + b * cols, e - b, cols);
  });
}

template <class T>
void log_softmax_forward(const T* x, T* y, index_t rows, index_t cols) {
  parallel_for(rows, cols * blockwise::kCostExp,
               [=](index_t b, index_t e) { serial::log_softmax_forward(x + b * cols, y + b * cols, e - b, cols); });
}

template <class T>
void log_softmax_backward(const T* grad_out, const T* y, T* grad_in, index_t rows, index_t cols) {
  parallel_for(rows, cols * blockwise::kCostExp, [=](index_t b, index_t e) {
    serial::log_softmax_backward(grad_out + b * cols, y + b * cols, grad_in + b * cols, e - b, cols);
  });
}

}  // namespace fastnn
