// Matrix products on Eigen's GEMM. Eigen parallelizes one product itself (OpenMP, with a size
// threshold); batched products put whole matrices on threads instead when the batch is large enough.
#pragma once

#include "fastnn/common.h"

namespace fastnn {

// c = a @ b for any Eigen matrix expressions (row- or column-major maps); c must not alias a or b.
template <class A, class B, class C>
void gemm(const A& a, const B& b, C& c) {
  c.noalias() = a * b;
}

// c[i] = a[i] @ b[i] for i < batch; all three C-contiguous: a (batch, m, k), b (batch, k, n), c (batch, m, n).
template <class T>
void bmm(const T* a, const T* b, T* c, index_t batch, index_t m, index_t k, index_t n) {
  auto one = [&](index_t i) {
    CMatMap<T> ai(a + i * m * k, m, k, Eigen::OuterStride<>(k));
    CMatMap<T> bi(b + i * k * n, k, n, Eigen::OuterStride<>(n));
    MatMap<T> ci(c + i * m * n, m, n, Eigen::OuterStride<>(n));
    gemm(ai, bi, ci);  // inside a parallel region Eigen's GEMM stays on its thread
  };
  if (threads_for(batch * m * n * k) >= 2 && batch >= num_threads()) {
    parallel_for(batch, m * n * k, [&](index_t b0, index_t b1) {
      for (index_t i = b0; i < b1; ++i) one(i);
    });
  } else {
    for (index_t i = 0; i < batch; ++i) one(i);  // few large matrices: Eigen splits each one
  }
}

}  // namespace fastnn
