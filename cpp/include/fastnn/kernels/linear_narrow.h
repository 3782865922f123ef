// Linear layers with few outputs (at most 4 SIMD packets: 64 floats with AVX-512), such as the
// first layer of a small MLP (784 -> 32). Eigen's GEMM packs both operands for every product and
// its register tile (48 x 4 floats) is mostly empty at such widths; these kernels keep a whole
// output row in registers and read the input rows where they are, so a shuffled batch needs no
// gather copy either: the rows are given as pointers (the samples of the epoch, in order).
//
//   forward:      y[r, :] = x_r W^T   (+ bias and activation, linear.h's epilogue): gemm_narrow.h
//   weight grad:  dW[o, k] (+)= sum_r g[r, o] x_r[k]
//
// Every output element is summed by the same instructions in the same order (k, resp. r,
// ascending) whatever the thread count and alignment: results are bit-identical across both.
#pragma once

#include <vector>

#include "fastnn/common.h"
#include "fastnn/kernels/gemm.h"
#include "fastnn/kernels/gemm_narrow.h"

namespace fastnn {
namespace narrow_detail {

// Output rows x input packets per weight-gradient register tile: 12 sums in flight with 16
// registers (4 x 2 left the tile bound by the multiply-add latency), 24 with 32.
constexpr int kGradOut = kRegs >= 32 ? 8 : 4;
constexpr int kGradPackets = 3;
// Rows per block of the weight gradient: a block's lines of one column chunk and its g rows stay
// in L1 while every output tile reads them (over all rows at once they came from L2: 784 -> 32 on
// 1024 rows, 1.1 ms against 0.8 in blocks of 64).
constexpr index_t kGradBlockRows = 64;

// dw[o0 + i, k0 + j*S ...] (+)= sum_r g[r, o0 + i] x_r[k0 + ...] for OB outputs and KV packets of inputs.
template <class T, int OB, int KV>
inline void grad_tile(const T* const* rows, index_t n, const T* g, index_t out, index_t o0, index_t k0, T* dw,
                      index_t in, bool accumulate) {
  using P = Packet<T>;
  constexpr int S = kP<T>;
  P acc[OB][KV];
  FASTNN_UNROLL for (int i = 0; i < OB; ++i)
    FASTNN_UNROLL for (int j = 0; j < KV; ++j) acc[i][j] = pset1<P>(T(0));
  for (index_t r = 0; r < n; ++r) {
    const T* x = rows[r] + k0;
    P xv[KV];
    FASTNN_UNROLL for (int j = 0; j < KV; ++j) xv[j] = ploadu<P>(x + j * S);
    const T* gr = g + r * out + o0;
    FASTNN_UNROLL for (int i = 0; i < OB; ++i) {
      const P gv = pset1<P>(gr[i]);
      FASTNN_UNROLL for (int j = 0; j < KV; ++j) acc[i][j] = pmadd(gv, xv[j], acc[i][j]);
    }
  }
  FASTNN_UNROLL for (int i = 0; i < OB; ++i)
    FASTNN_UNROLL for (int j = 0; j < KV; ++j) {
      T* d = dw + (o0 + i) * in + k0 + j * S;
      pstoreu(d, accumulate ? padd(ploadu<P>(d), acc[i][j]) : acc[i][j]);
    }
}

// All outputs for the input columns [k0, k0 + KV * S).
template <class T, int KV>
void grad_columns(const T* const* rows, index_t n, const T* g, index_t out, index_t k0, T* dw, index_t in,
                  bool accumulate) {
  index_t o = 0;
  for (; o + kGradOut <= out; o += kGradOut) grad_tile<T, kGradOut, KV>(rows, n, g, out, o, k0, dw, in, accumulate);
  for (; o < out; ++o) grad_tile<T, 1, KV>(rows, n, g, out, o, k0, dw, in, accumulate);
}

// Input columns [k0, k1) of outputs [o0, o1), one scalar sum per element (same order: r ascending).
template <class T>
void grad_scalar_columns(const T* const* rows, index_t n, const T* g, index_t out, index_t o0, index_t o1, index_t k0,
                         index_t k1, T* dw, index_t in, bool accumulate) {
  for (index_t o = o0; o < o1; ++o)
    for (index_t k = k0; k < k1; ++k) {
      T s = 0;
      for (index_t r = 0; r < n; ++r) s += g[r * out + o] * rows[r][k];
      dw[o * in + k] = accumulate ? dw[o * in + k] + s : s;
    }
}

// dw (out, in) (+)= g^T [rows] over rows [0, n), on the calling thread: per block of
// kGradBlockRows rows, column chunks of kGradPackets packets, then single packets, then scalars
// (every element summed in row order within a block, the blocks added in order).
template <class T>
void weight_grad_rows(const T* const* rows, index_t n, const T* g, index_t out, index_t in, T* dw, bool accumulate) {
  constexpr index_t chunk = kGradPackets * kP<T>;
  const index_t chunks = in / chunk;
  for (index_t r0 = 0; r0 < n; r0 += kGradBlockRows) {
    const index_t m = std::min(kGradBlockRows, n - r0);
    const T* const* br = rows + r0;
    const T* bg = g + r0 * out;
    const bool acc = accumulate || r0 > 0;
    for (index_t c = 0; c < chunks; ++c) grad_columns<T, kGradPackets>(br, m, bg, out, c * chunk, dw, in, acc);
    index_t k = chunks * chunk;
    for (; k + kP<T> <= in; k += kP<T>) grad_columns<T, 1>(br, m, bg, out, k, dw, in, acc);
    grad_scalar_columns(br, m, bg, out, 0, out, k, in, dw, in, acc);  // past the last whole packet
  }
}

// f(begin, end) over [0, items) on the threads a GEMM of `macs` multiply-adds would use (a
// parallel region costs microseconds: small layers stay on one thread).
template <class F>
void parallel_items(index_t items, index_t macs, F&& f) {
  if (items <= 0) return;
  const int nt = static_cast<int>(std::min<index_t>(gemm_detail::gemm_threads(macs), items));
  if (nt <= 1) return f(index_t(0), items);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), nth = omp_get_num_threads();
    const index_t b = items * t / nth, e = items * (t + 1) / nth;
    if (b < e) f(b, e);
  }
#else
  f(index_t(0), items);
#endif
}

// W^T (in x packets of out), zero-padded, in an aligned buffer owned by the calling thread.
template <class T, class WM>
const T* pack_transposed(const WM& w) {
  return pack_b<T>(w.transpose(), packed_buffer<T>());
}

}  // namespace narrow_detail

// The most outputs the narrow kernels handle: four SIMD registers of them, so it depends on the
// instruction set compiled for (64 float32 with AVX-512, 32 with AVX2, 16 with SSE2).
template <class T>
constexpr index_t narrow_linear_max_outputs() { return narrow_detail::kMaxPackets * narrow_detail::kP<T>; }

// Whether the narrow kernels handle `out` outputs.
template <class T>
constexpr bool narrow_linear_fits(index_t out) {
  return out >= 1 && out <= narrow_linear_max_outputs<T>();
}

// Both kernels need narrow_linear_fits<T>(out).
//
// y (n, out), C-contiguous = rows x W^T, then post(y row) on each row while it is in L1 (the
// caller's bias + activation); rows[r] points at input row r (in values); w: any view of (out, in).
template <class T, class WM, class Post>
void narrow_linear_forward(const T* const* rows, index_t n, const Eigen::MatrixBase<WM>& w, T* y, const Post& post) {
  using namespace narrow_detail;
  const index_t out = w.rows(), in = w.cols();
  eigen_assert(narrow_linear_fits<T>(out) && "the callers check narrow_linear_fits");
  const T* wt = pack_transposed<T>(w.derived());
  const index_t unit = kRowUnit;
  const index_t items = (n + unit - 1) / unit;
  parallel_items(items, n * in * out, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i)  // an item at a time: post reads its rows while in L1
      product_rows(PointerRows<T>{rows}, wt, in, y, out, out, i * unit, std::min(n, (i + 1) * unit), std::min(n, e * unit),
                   false, post);
  });
}

// dw (out, in), C-contiguous, (+)= g^T [rows]: g (n, out) C-contiguous.
//
// Large products are summed as two halves of the rows, split where the forward splits them
// between two threads, and then added: each thread reads the rows already in its own cache
// (splitting the inputs instead read half of every row from the other core: 33 vs 26 us for
// 128 x 784 -> 32). One thread sums the same two halves, so the bits do not depend on the count.
template <class T>
void narrow_linear_weight_grad(const T* const* rows, index_t n, const T* g, index_t out, index_t in, T* dw,
                               bool accumulate) {
  using namespace narrow_detail;
  auto sum_rows = [&](index_t r0, index_t r1, T* dst, bool acc) {
    weight_grad_rows(rows + r0, r1 - r0, g + r0 * out, out, in, dst, acc);
  };
  const index_t macs = n * out * in, items = (n + kRowUnit - 1) / kRowUnit;
  if (macs < 2 * gemm_detail::kMinTileMacs || items < 2) return sum_rows(0, n, dw, accumulate);
  const index_t split = items / 2 * kRowUnit, size = out * in;
  thread_local std::vector<T, Eigen::aligned_allocator<T>> halves;
  halves.resize(static_cast<size_t>(2 * size));
  T* const part[2] = {halves.data(), halves.data() + size};
  auto add = [&](index_t b, index_t e) {
    for (index_t j = b; j < e; ++j) dw[j] = accumulate ? dw[j] + (part[0][j] + part[1][j]) : part[0][j] + part[1][j];
  };
#ifdef _OPENMP
  if (gemm_detail::gemm_threads(macs) >= 2) {
#pragma omp parallel num_threads(2)
    {
      const index_t t = omp_get_thread_num();
      sum_rows(t ? split : 0, t ? n : split, part[t], false);
#pragma omp barrier
      add(t * size / 2, (t + 1) * size / 2);
    }
    return;
  }
#endif
  sum_rows(0, split, part[0], false);
  sum_rows(split, n, part[1], false);
  add(0, size);
}

}  // namespace fastnn
