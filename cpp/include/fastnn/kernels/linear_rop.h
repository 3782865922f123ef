// The forward of a Linear layer and the direction's part of its R-operator in one pass over x:
//   y = act(x W^T + b)   and   r = x V^T + v_b
// (R{z} = x V^T + v_b + R{x} W^T; layers/linear.h adds the R{x} term). One product of x with the
// stacked weights [W; V] (2 out columns) reads x once where the forward and the R-forward read it
// twice: for the 784 -> 32 first layer of an MLP, that read is a third of an H·v (net/curvature.h).
// When 2 out is past the narrow kernels' width but out is not (784 -> 32 with AVX2: 64 > 32), the
// narrow kernel runs on W and then on V for each few rows, while they are in cache, writing y and r
// in place (the GEMM of [W; V] and its split took ~1.1x as long at 1024 x 784 -> 2 x 32, one thread).
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "fastnn/kernels/linear.h"

namespace fastnn {
namespace linear_rop_detail {

// Columns [c0, c1) of row i of the stacked product p (n, 2 out) into y (bias + activation) and r (+ v_b).
template <class T>
inline void split_row(const T* p, index_t i, index_t c0, index_t c1, index_t out, const T* b, const T* vb, T* y, T* r,
                      Activation act, T slope) {
  const T* row = p + i * 2 * out;
  if (c0 < out) {
    const index_t e = std::min(c1, out);
    T* dst = y + i * out + c0;
    std::copy(row + c0, row + e, dst);
    linear_detail::bias_activation(dst, b ? b + c0 : b, e - c0, act, slope);
  }
  if (c1 > out) {
    const index_t s = std::max(c0, out);
    T* dst = r + i * out + (s - out);
    std::copy(row + s, row + c1, dst);
    if (vb) ArrMap<T>(dst, c1 - s) += CArrMap<T>(vb + (s - out), c1 - s);
  }
}

}  // namespace linear_rop_detail

// y = act(x W^T + b), r = x V^T + v_b. x (n, in), w and v (out, in), y and r (n, out), all
// C-contiguous; b, vb (out) or null. y and r must not alias the inputs.
template <class T>
void linear_forward_pair(const T* x, const T* w, const T* b, const T* v, const T* vb, T* y, T* r, index_t n, index_t in,
                         index_t out, Activation act = Activation::none, T slope = T(0.01)) {
  using linear_rop_detail::split_row;
  const index_t out2 = 2 * out;
  if (!narrow_linear_fits<T>(out2) && narrow_linear_fits<T>(out)) {
    using namespace narrow_detail;
    thread_local std::vector<T, Eigen::aligned_allocator<T>> wbuf, vbuf;
    const T* wt = pack_b<T>(CMatMap<T>(w, out, in, Eigen::OuterStride<>(in)).transpose(), wbuf);
    const T* vt = pack_b<T>(CMatMap<T>(v, out, in, Eigen::OuterStride<>(in)).transpose(), vbuf);
    const StridedRows<T> rows{x, in};
    auto post_y = [&](T* row) { linear_detail::bias_activation(row, b, out, act, slope); };
    auto post_r = [&](T* row) {
      if (vb) ArrMap<T>(row, out) += CArrMap<T>(vb, out);
    };
    const index_t items = (n + kRowUnit - 1) / kRowUnit;
    parallel_items(items, n * in * out2, [&](index_t i0, index_t i1) {
      const index_t r_end = std::min(n, i1 * kRowUnit);
      for (index_t i = i0; i < i1; ++i) {  // V's pass finds the item's rows in cache: it fetches none ahead
        const index_t r0 = i * kRowUnit, r1 = std::min(n, r0 + kRowUnit);
        product_rows(rows, wt, in, y, out, out, r0, r1, r_end, false, post_y);
        product_rows(rows, vt, in, r, out, out, r0, r1, r1, false, post_r);
      }
    });
    return;
  }
  thread_local std::vector<T, Eigen::aligned_allocator<T>> stacked, product;
  stacked.resize(static_cast<size_t>(out2 * in));
  product.resize(static_cast<size_t>(n * out2));
  std::memcpy(stacked.data(), w, sizeof(T) * out * in);
  std::memcpy(stacked.data() + out * in, v, sizeof(T) * out * in);
  const CMatMap<T> xm(x, n, in, Eigen::OuterStride<>(in));
  const CMatMap<T> sm(stacked.data(), out2, in, Eigen::OuterStride<>(in));
  T* p = product.data();
  if (narrow_linear_fits<T>(out2)) {  // the narrow kernel; each finished row is split while in L1
    const auto rows = linear_detail::row_pointers(xm);
    narrow_linear_forward(rows.data(), n, sm, p, [&](T* row) {
      split_row(p, (row - p) / out2, 0, out2, out, b, vb, y, r, act, slope);
    });
    return;
  }
  MatMap<T> pm(p, n, out2, Eigen::OuterStride<>(out2));
  gemm(xm, sm.transpose(), pm, false, [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    for (index_t i = r0; i < r1; ++i) split_row(p, i, c0, c1, out, b, vb, y, r, act, slope);
  });
}

}  // namespace fastnn
