// Matrix products: fastnn's one GEMM entry point. The result is cut into tiles that depend on the
// shape only; fastnn's OpenMP threads take whole tiles, each computed by one serial call of the
// backend: OpenBLAS (blas_library.h, its kernel chosen for the CPU at load time) or Eigen's GEMM
// kernel when no BLAS is loaded. Narrow products (few columns, row-major A: narrow_gemm_fits) go
// to gemm_narrow.h's kernel instead, B packed once and the rows of C split between the threads.
// The same tiles and calls for any thread count give results that are bit-identical across
// thread counts; small products stay on one thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>

#include "fastnn/common.h"
#include "fastnn/kernels/blas_library.h"
#include "fastnn/kernels/gemm_narrow.h"

namespace fastnn {
namespace gemm_detail {

// Eigen's path for one tile, on the calling thread: the GEMM kernel with one-thread blocking (the
// code Eigen's product runs when it does not thread: outside a parallel region Eigen would thread
// above 100k multiply-adds on its own, Parallelizer.h), or its coefficient-based and
// matrix-vector paths for tiny and vector shapes. Operands: maps, blocks or transposes with unit
// inner stride.
template <class A, class B, class C>
void eigen_tile(const A& a, const B& b, C& c, bool accumulate) {
  using T = typename C::Scalar;
  using Eigen::Index;
  const Index m = c.rows(), n = c.cols(), k = a.cols();
  if (m == 1 || n == 1 || k + m + n < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) {
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

// The library's path for one tile (row-major C; a column-major operand is the transpose of a
// row-major one). False when a size or stride does not fit the library's 32-bit integers.
template <class A, class B, class C>
bool blas_tile(const blas::Library& lib, const A& a, const B& b, C& c, bool accumulate) {
  using T = typename C::Scalar;
  constexpr bool a_rows = A::Flags & Eigen::RowMajorBit, b_rows = B::Flags & Eigen::RowMajorBit;
  static_assert(C::Flags & Eigen::RowMajorBit, "gemm writes row-major results");
  for (index_t v : {index_t(c.rows()), index_t(c.cols()), index_t(a.cols()), index_t(a.outerStride()),
                    index_t(b.outerStride()), index_t(c.outerStride())})
    if (v > INT_MAX) return false;
  // A leading dimension must be >= the stored row length even where a length-1 dimension makes
  // it unused (Eigen reports the row length as the stride of a one-row map).
  const int lda = static_cast<int>(std::max<index_t>(a.outerStride(), a_rows ? a.cols() : a.rows()));
  const int ldb = static_cast<int>(std::max<index_t>(b.outerStride(), b_rows ? b.cols() : b.rows()));
  const int ldc = static_cast<int>(std::max<index_t>(c.outerStride(), c.cols()));
  lib.gemm<T>()(blas::kRowMajor, a_rows ? blas::kNoTrans : blas::kTrans, b_rows ? blas::kNoTrans : blas::kTrans,
                static_cast<int>(c.rows()), static_cast<int>(c.cols()), static_cast<int>(a.cols()), T(1), a.data(), lda,
                b.data(), ldb, accumulate ? T(1) : T(0), c.data(), ldc);
  return true;
}

// c = a b, or c += a b, for one tile on the calling thread, by the active backend.
template <class A, class B, class C>
void gemm_tile(const A& a, const B& b, C& c, bool accumulate) {
  if (c.rows() == 0 || c.cols() == 0) return;
  if (a.cols() == 0) {  // an empty sum
    if (!accumulate) c.setZero();
    return;
  }
  if (const blas::Library* lib = blas::active(); lib && blas_tile(*lib, a, b, c, accumulate)) return;
  eigen_tile(a, b, c, accumulate);
}

// The tiles of a row-major m x n result of depth k. Each tile is one backend call that packs its
// rows of A and its columns of B, so tiles are few and large: splitting the rows repacks B once
// per row tile, splitting the columns repacks A once per column tile, and the halving below
// splits the longer side. A product of less than 2 kMinTileMacs is one tile, on one thread
// (measured on Linear forward + backward, batch 128, 2 cores: two threads pay from ~1.2M
// multiply-adds; below, waking the second thread costs more than the halved work). Larger ones get
// one tile per kTileMacs, at least 2 and at most kMaxTiles, in powers of two so that 2, 4, 8 threads
// share them evenly. Measured with OpenBLAS on 2 cores (Zen 5, issue 8's shapes): 4 tiles of 1024^3
// run at 431 GFLOP/s, 16 at 395-408, 32 at 351; the model-sized products (128x784x256,
// 6272x288x64) are 2-16 tiles and within 3% of each other either way.
constexpr index_t kMinTileMacs = 512 * 1024;
constexpr index_t kTileMacs = 256 * 1024 * 1024;
constexpr index_t kMaxTiles = 16;
constexpr index_t kMinTileSide = 64;

// Switches for paired benchmarks in one process (bind_gemm's _C._gemm_tuning, bench/gemm_ab.py):
// the narrow kernel on or off, the multiply-adds per tile. Read once per product.
struct Tuning {
  std::atomic<bool> narrow{true};
  std::atomic<index_t> tile_macs{kTileMacs};
};
inline Tuning tuning;

// Threads for work of `macs` multiply-adds split freely (the narrow kernels of linear_narrow.h):
// at least kMinTileMacs each, one inside a parallel region.
inline int gemm_threads(index_t macs) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
#endif
  const int nt = num_threads();
  if (nt <= 1 || macs < 2 * kMinTileMacs) return 1;
  return static_cast<int>(std::min<index_t>(nt, macs / kMinTileMacs));
}

struct Tiling {
  index_t m = 0, n = 0, tile_rows = 1, tile_cols = 1, row_tiles = 0, col_tiles = 0;
  index_t count() const { return row_tiles * col_tiles; }
  // Calls f(r0, r1, c0, c1) for tile i (row-major order of the tile grid).
  template <class F>
  void tile(index_t i, F&& f) const {
    const index_t r0 = i / col_tiles * tile_rows, c0 = i % col_tiles * tile_cols;
    f(r0, std::min(m, r0 + tile_rows), c0, std::min(n, c0 + tile_cols));
  }
};

// Tile sides are multiples of the backend's register tile where the side is split: Eigen computes
// a row-major C as C^T = B^T A^T, in register tiles of nr rows and mr columns of C.
template <class T>
Tiling gemm_tiling(index_t m, index_t n, index_t k) {
  if (const blas::Library* lib = blas::active()) lib->keep_one_thread();  // once per product, before its threads start
  Tiling t;
  t.m = m, t.n = n;
  if (m <= 0 || n <= 0) return t;
  const index_t macs = m * n * std::max<index_t>(k, 1);
  index_t want = 1;
  if (macs >= 2 * kMinTileMacs)
    want = std::clamp<index_t>(macs / tuning.tile_macs.load(std::memory_order_relaxed), 2, kMaxTiles);
  index_t rows = 1, cols = 1;  // tiles along m and along n
  while (rows * cols * 2 <= want) {
    const bool rows_can = m / (rows * 2) >= kMinTileSide, cols_can = n / (cols * 2) >= kMinTileSide;
    if (rows_can && (!cols_can || m / rows >= n / cols)) rows *= 2;  // halve the longer side
    else if (cols_can) cols *= 2;
    else break;
  }
  const bool eigen = blas::active() == nullptr;
  const index_t row_unit = eigen ? Eigen::internal::gebp_traits<T, T>::nr : 8;
  const index_t col_unit = eigen ? Eigen::internal::gebp_traits<T, T>::mr : 16;
  auto side = [](index_t len, index_t parts, index_t unit) {
    return parts == 1 ? len : ((len + parts - 1) / parts + unit - 1) / unit * unit;
  };
  t.tile_rows = side(m, rows, row_unit), t.tile_cols = side(n, cols, col_unit);
  t.row_tiles = (m + t.tile_rows - 1) / t.tile_rows, t.col_tiles = (n + t.tile_cols - 1) / t.tile_cols;
  return t;
}

// Calls f(i) for i < count on up to num_threads() threads (at most max_threads) taking contiguous
// runs of i; on the calling thread alone inside a parallel region.
template <class F>
void run_items(index_t count, index_t max_threads, F&& f) {
#ifdef _OPENMP
  const int nt = omp_in_parallel() ? 1 : static_cast<int>(std::min({index_t(num_threads()), count, max_threads}));
  if (nt >= 2) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (index_t i = 0; i < count; ++i) f(i);
    return;
  }
#endif
  for (index_t i = 0; i < count; ++i) f(i);
}

// Runs the tiles of one or two products, f(r0, r1, c0, c1) for each tile of `first`, then g for
// each of `second`, sharing one parallel region (a layer's backward: its input and weight
// gradients only read the same operands).
template <class F, class G>
void run_tiles(const Tiling& first, F&& f, const Tiling& second, G&& g) {
  const index_t n1 = first.count();
  run_items(n1 + second.count(), INT_MAX, [&](index_t i) {
    if (i < n1) first.tile(i, f); else second.tile(i - n1, g);
  });
}

template <class F>
void run_tiles(const Tiling& tiling, F&& f) {
  run_tiles(tiling, f, Tiling{}, [](index_t, index_t, index_t, index_t) {});
}

// f(item, r0, r1, c0, c1) for every tile of `items` products of one shape (m x n, depth k), all
// in one parallel region: threads take whole products when there are many, parts of each when
// there are few, the same tiles either way (bmm; grouped and per-image convolutions, whose
// depthwise groups too small to split still share the threads). Threads are limited by the
// products' total work, as one product's tiling limits them by its own.
template <class T, class F>
void run_product_tiles(index_t items, index_t m, index_t n, index_t k, F&& f) {
  const Tiling per = gemm_tiling<T>(m, n, k);
  if (per.count() == 0) return;
  const index_t macs = items * m * n * std::max<index_t>(k, 1);
  run_items(items * per.count(), macs / kMinTileMacs, [&](index_t i) {
    per.tile(i % per.count(), [&](index_t r0, index_t r1, index_t c0, index_t c1) { f(i / per.count(), r0, r1, c0, c1); });
  });
}

// Whether gemm() may give a product with this A to the narrow kernel, which reads A's rows where
// they are (a transposed view's rows are not contiguous).
template <class A>
constexpr bool rows_contiguous() {
  return (A::Flags & Eigen::RowMajorBit) && (A::Flags & Eigen::DirectAccessBit) && A::InnerStrideAtCompileTime == 1;
}

// c (m x n, row stride ldc) (+)= A (rows a + r lda) x B by the narrow kernel: B packed once by the
// calling thread and shared, threads take runs of narrow_detail::kRowUnit-row items of C (M is
// split only), epilogue(r0, r1, 0, n) after each item.
template <class T, class B, class E>
void narrow_product(const T* a, index_t lda, const B& b, T* c, index_t ldc, index_t m, bool accumulate, E& epilogue) {
  using namespace narrow_detail;
  const T* bp = pack_b<T>(b, packed_buffer<T>());
  const index_t k = b.rows(), n = b.cols(), unit = kRowUnit, items = (m + unit - 1) / unit, pw = kPanelColumns<T>;
  run_items(items, m * n * k / kMinTileMacs, [&](index_t i) {
    const index_t r0 = i * unit, r1 = std::min(m, r0 + unit);
    for (index_t p0 = 0; p0 < n; p0 += pw)  // the item's rows of A stay in cache for the next panel
      strided_rows(a, lda, bp + p0 * k, k, c + p0, ldc, std::min(pw, n - p0), r0, r1, m, accumulate);
    epilogue(r0, r1, index_t(0), n);
  });
}

}  // namespace gemm_detail

// c = a @ b (or c += a @ b) for Eigen maps with unit inner stride (row- or column-major operands,
// row-major c); c must not alias a or b. Narrow products (narrow_gemm_fits, A row-major) run
// gemm_narrow.h's kernel. `epilogue(r0, r1, c0, c1)` runs on each tile of c right
// after its product, on the same thread, while the tile is in cache (a layer's bias and
// activation: linear.h).
template <class A, class B, class C, class E>
void gemm(const A& a, const B& b, C& c, bool accumulate, E&& epilogue) {
  using namespace gemm_detail;
  using T = typename C::Scalar;
  static_assert(C::Flags & Eigen::RowMajorBit, "gemm writes row-major results");
  if constexpr (rows_contiguous<A>()) {
    if (narrow_gemm_fits<T>(c.rows(), a.cols(), c.cols()) && tuning.narrow.load(std::memory_order_relaxed))
      return narrow_product(a.data(), a.outerStride(), b, c.data(), c.outerStride(), c.rows(), accumulate, epilogue);
  }
  run_tiles(gemm_tiling<T>(c.rows(), c.cols(), a.cols()), [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    auto cb = c.block(r0, c0, r1 - r0, c1 - c0);
    gemm_tile(a.middleRows(r0, r1 - r0), b.middleCols(c0, c1 - c0), cb, accumulate);
    epilogue(r0, r1, c0, c1);
  });
}

template <class A, class B, class C>
void gemm(const A& a, const B& b, C& c, bool accumulate = false) {
  gemm(a, b, c, accumulate, [](index_t, index_t, index_t, index_t) {});
}

// c[i] = a[i] @ b[i] for i < batch; all three C-contiguous: a (batch, m, k), b (batch, k, n), c (batch, m, n).
template <class T>
void bmm(const T* a, const T* b, T* c, index_t batch, index_t m, index_t k, index_t n) {
  gemm_detail::run_product_tiles<T>(batch, m, n, k, [&](index_t i, index_t r0, index_t r1, index_t c0, index_t c1) {
    CMatMap<T> am(a + i * m * k, m, k, Eigen::OuterStride<>(k));
    CMatMap<T> bm(b + i * k * n, k, n, Eigen::OuterStride<>(n));
    MatMap<T> cm(c + i * m * n, m, n, Eigen::OuterStride<>(n));
    auto cb = cm.block(r0, c0, r1 - r0, c1 - c0);
    gemm_detail::gemm_tile(am.middleRows(r0, r1 - r0), bm.middleCols(c0, c1 - c0), cb, false);
  });
}

}  // namespace fastnn
