// Matrix products on Eigen's GEMM kernels, threaded by fastnn: threads take blocks of the result
// aligned to Eigen's register tiles, each running the serial kernel, so results are bit-identical
// for any thread count and small products stay on one thread. Batched products put whole
// matrices on threads when the batch is large enough.
#pragma once

#include "fastnn/common.h"

namespace fastnn {
namespace gemm_detail {

// c = a b, or c += a b, on the calling thread only: the code path Eigen's product expression
// takes when it does not thread (the GEMM kernel with one-thread blocking). Outside a parallel
// region Eigen threads products above 100k multiply-adds (Parallelizer.h), which on this machine
// is slower than serial up to ~2M multiply-adds (7 us vs 4 us for 128x32x32) and changes the last
// bits (another k-blocking). c may be a block of a larger product: `vector` says whether the whole
// product has one row or one column, which Eigen's matrix-vector kernel then computes; otherwise a
// block of one row or column still goes through the GEMM kernel, to be summed as in the whole.
// Operands: Eigen maps, blocks or transposes with unit inner stride.
template <class A, class B, class C>
void gemm_serial(const A& a, const B& b, C& c, bool accumulate, bool vector) {
  using T = typename C::Scalar;
  using Eigen::Index;
  const Index m = c.rows(), n = c.cols(), k = a.cols();
  if (vector || k + m + n < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) {  // paths Eigen never threads
    if (accumulate) c.noalias() += a * b; else c.noalias() = a * b;
    return;
  }
  eigen_assert(a.innerStride() == 1 && b.innerStride() == 1 && c.innerStride() == 1);
  if (!accumulate) c.setZero();
  constexpr auto order = [](int flags) { return (flags & Eigen::RowMajorBit) ? Eigen::RowMajor : Eigen::ColMajor; };
  using Product = Eigen::internal::general_matrix_matrix_product<Index, T, order(A::Flags), false, T, order(B::Flags),
                                                                 false, order(C::Flags), 1>;
  Eigen::internal::gemm_blocking_space<order(C::Flags), T, T, Eigen::Dynamic, Eigen::Dynamic, Eigen::Dynamic> blocking(
      m, n, k, 1, true);
  Product::run(m, n, k, a.data(), a.outerStride(), b.data(), b.outerStride(), c.data(), 1, c.outerStride(), T(1),
               blocking, nullptr);
}

// Threads for one GEMM of `macs` multiply-adds: at least kGemmMinMacsPerThread each. Measured
// here on Linear forward + backward (batch 128, 2 cores): two threads pay from width ~96 on
// (1.2M multiply-adds per product); below, waking the second thread and moving the blocks
// between the cores' caches cost more than the halved arithmetic.
constexpr index_t kGemmMinMacsPerThread = 512 * 1024;
inline int gemm_threads(index_t macs) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;  // already on one thread of a parallel region (bmm)
#endif
  const int nt = num_threads();
  if (nt <= 1 || macs < 2 * kGemmMinMacsPerThread) return 1;
  return static_cast<int>(std::min<index_t>(nt, macs / kGemmMinMacsPerThread));
}

// Eigen computes a row-major C = A B as C^T = B^T A^T, in register tiles of mr rows of B^T by
// nr rows of A. A block of C whose rows start at a multiple of nr and whose columns start at a
// multiple of mr is summed by the same micro-kernels in the same order as in the whole product
// (the k-blocking depends on the depth only), so splitting C this way between threads gives the
// bits of the one-thread result; Eigen's own threaded GEMM does not (it blocks k differently).
template <class T> constexpr index_t gemm_row_unit() { return Eigen::internal::gebp_traits<T, T>::nr; }
template <class T> constexpr index_t gemm_col_unit() { return Eigen::internal::gebp_traits<T, T>::mr; }

// Part `part` of `parts` of [0, len) cut at multiples of `unit`: calls f(begin, end) if not empty.
template <class F>
inline void split_part(index_t len, index_t unit, index_t part, index_t parts, F&& f) {
  const index_t units = (len + unit - 1) / unit;
  const index_t b = std::min(len, units * part / parts * unit), e = std::min(len, units * (part + 1) / parts * unit);
  if (b < e) f(b, e);
}

// Largest part of [0, len) cut into `parts` at multiples of `unit` (as split_part cuts it).
inline index_t largest_part(index_t len, index_t unit, index_t parts) {
  const index_t units = (len + unit - 1) / unit;
  return std::min(len, (units + parts - 1) / parts * unit);
}

// Whether to split a row-major m x n x k GEMM between nth threads by rows of C (else by columns).
// Every thread packs the whole operand that is not split (B for a row split, A for a column
// split) and its share of the other, then multiplies its block; the slowest thread sets the time.
// Packing an element costs about as much as kPackCost multiply-adds. Measured in training (the
// 784-512-256-10 MLP, batch 128): 48 splits the forward products by columns, so each core reads
// and keeps half of the weights, and then the optimizer step, whose threads take the same halves,
// finds them in cache: 0.77 s an epoch against 0.82 s with a weight of 16 (row splits; in a hot
// loop on their own, rows and columns are within 2% of each other).
template <class T>
inline bool split_rows(index_t m, index_t n, index_t k, index_t nth) {
  constexpr index_t kPackCost = 48;
  const index_t rows = largest_part(m, gemm_row_unit<T>(), nth), cols = largest_part(n, gemm_col_unit<T>(), nth);
  const index_t by_rows = rows * n * k + kPackCost * (k * n + rows * k);
  const index_t by_cols = m * cols * k + kPackCost * (m * k + k * cols);
  return by_rows <= by_cols;
}

// Thread t's share (of nth) of a row-major m x n x k GEMM result: calls block(r0, r1, c0, c1).
template <class T, class F>
inline void gemm_part(index_t m, index_t n, index_t k, index_t t, index_t nth, F&& block) {
  if (split_rows<T>(m, n, k, nth))
    split_part(m, gemm_row_unit<T>(), t, nth, [&](index_t r0, index_t r1) { block(r0, r1, index_t(0), n); });
  else
    split_part(n, gemm_col_unit<T>(), t, nth, [&](index_t c0, index_t c1) { block(index_t(0), m, c0, c1); });
}

}  // namespace gemm_detail

// c = a @ b (or c += a @ b) for Eigen maps with unit inner stride (row- or column-major operands,
// row-major c); c must not alias a or b. Threads split c when the product is large enough.
template <class A, class B, class C>
void gemm(const A& a, const B& b, C& c, bool accumulate = false) {
  using namespace gemm_detail;
  using T = typename C::Scalar;
  const index_t m = c.rows(), n = c.cols(), k = a.cols();
  const bool vector = m == 1 || n == 1;
  auto block = [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    if (r0 >= r1 || c0 >= c1) return;
    auto cb = c.block(r0, c0, r1 - r0, c1 - c0);
    gemm_serial(a.middleRows(r0, r1 - r0), b.middleCols(c0, c1 - c0), cb, accumulate, vector);
  };
#ifdef _OPENMP
  if (const int nt = gemm_threads(m * k * n); nt >= 2) {
#pragma omp parallel num_threads(nt)
    gemm_part<T>(m, n, k, omp_get_thread_num(), omp_get_num_threads(), block);
    return;
  }
#endif
  block(0, m, 0, n);
}

// c[i] = a[i] @ b[i] for i < batch; all three C-contiguous: a (batch, m, k), b (batch, k, n), c (batch, m, n).
template <class T>
void bmm(const T* a, const T* b, T* c, index_t batch, index_t m, index_t k, index_t n) {
  auto one = [&](index_t i) {
    CMatMap<T> ai(a + i * m * k, m, k, Eigen::OuterStride<>(k));
    CMatMap<T> bi(b + i * k * n, k, n, Eigen::OuterStride<>(n));
    MatMap<T> ci(c + i * m * n, m, n, Eigen::OuterStride<>(n));
    gemm(ai, bi, ci);  // inside a parallel region gemm stays on its thread
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
