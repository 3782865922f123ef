// A convolution with few taps per output (C/G * kh * kw <= kDirectMaxTaps: the first layer of an
// image model, 1 or 3 input channels), one image's products written as plain register-tiled loops
// over its transposed patches colsT (K x P*Q, im2col_image_t's layout; x[n] itself for a 1x1
// convolution) instead of a GEMM call:
//   forward      y[o, :] = epi(sum_k w[o, k] colsT[k, :])    vectorized over the output pixels,
//   weight grad  dW[o, k] (+)= sum_pq g[o, pq] colsT[k, pq]  dot products over the pixels.
// At depth K = 9 a BLAS's packing and its K-blocked micro-kernel cost more than the multiply-adds
// (the GEMM issue's 25088x9x32 at 0.8x numpy); here each output row is summed in registers,
// written once and passed through the epilogue while in L1, and each weight-gradient element is
// one chain of packets over the pixels. Every element's sum has a fixed order set by the shape (k
// ascending; lanes of the pixel packets, then the tail), so results do not depend on the thread
// count. kernels/conv.h takes this path by shape alone (conv_detail::direct_taps).
#pragma once

#include <algorithm>
#include <type_traits>

#include "fastnn/common.h"
#include "fastnn/kernels/gemm_narrow.h"  // Packet, kP, FASTNN_UNROLL

namespace fastnn {
namespace conv_direct {

using narrow_detail::kP;
using narrow_detail::Packet;

// The largest C/G * kh * kw taken (3 channels of 3x3 is 27; 1 channel of 5x5 is 25).
constexpr index_t kMaxTaps = 32;

// Output rows per register tile in the forward, and packets of pixels per tile: 4 x 2 accumulators.
constexpr int kRows = 4;
constexpr int kCols = 2;

// y rows [o0, o0 + R) (ld PQ) = sum_k w[o, k] cols[k, :] over K taps (cols rows PQ apart).
// R = kRows (a full tile) or 1 (the rows left over).
template <int R, class T>
void forward_rows(const T* __restrict cols, index_t K, index_t PQ, const T* __restrict w, T* __restrict y) {
  using P = Packet<T>;
  using namespace Eigen::internal;
  constexpr index_t step = kCols * kP<T>;
  index_t j = 0;
  for (; j + step <= PQ; j += step) {
    P acc[R][kCols];
    FASTNN_UNROLL for (int r = 0; r < R; ++r) FASTNN_UNROLL for (int v = 0; v < kCols; ++v) acc[r][v] = pset1<P>(T(0));
    for (index_t k = 0; k < K; ++k) {
      P c[kCols];
      FASTNN_UNROLL for (int v = 0; v < kCols; ++v) c[v] = ploadu<P>(cols + k * PQ + j + v * kP<T>);
      FASTNN_UNROLL for (int r = 0; r < R; ++r) {
        const P wv = pset1<P>(w[r * K + k]);
        FASTNN_UNROLL for (int v = 0; v < kCols; ++v) acc[r][v] = pmadd(wv, c[v], acc[r][v]);
      }
    }
    FASTNN_UNROLL for (int r = 0; r < R; ++r) FASTNN_UNROLL for (int v = 0; v < kCols; ++v)
        pstoreu(y + r * PQ + j + v * kP<T>, acc[r][v]);
  }
  for (; j + kP<T> <= PQ; j += kP<T>) {
    P acc[R];
    FASTNN_UNROLL for (int r = 0; r < R; ++r) acc[r] = pset1<P>(T(0));
    for (index_t k = 0; k < K; ++k) {
      const P c = ploadu<P>(cols + k * PQ + j);
      FASTNN_UNROLL for (int r = 0; r < R; ++r) acc[r] = pmadd(pset1<P>(w[r * K + k]), c, acc[r]);
    }
    FASTNN_UNROLL for (int r = 0; r < R; ++r) pstoreu(y + r * PQ + j, acc[r]);
  }
  for (; j < PQ; ++j)
    for (int r = 0; r < R; ++r) {
      T acc = T(0);
      for (index_t k = 0; k < K; ++k) acc += w[r * K + k] * cols[k * PQ + j];
      y[r * PQ + j] = acc;
    }
}

// One image and group: y (Og x PQ, rows PQ apart) = W (Og x K) colsT (K x PQ), row o then through
// epi(ch0 + o) (a callable (o, row, len)) while it is in cache.
template <class T, class Epi>
void forward_image(const T* cols, index_t K, index_t PQ, const T* w, index_t Og, T* y, Epi&& epi) {
  index_t o = 0;
  for (; o + kRows <= Og; o += kRows) {
    forward_rows<kRows>(cols, K, PQ, w + o * K, y + o * PQ);
    for (index_t r = o; r < o + kRows; ++r) epi(r, y + r * PQ, PQ);
  }
  for (; o < Og; ++o) {
    forward_rows<1>(cols, K, PQ, w + o * K, y + o * PQ);
    epi(o, y + o * PQ, PQ);
  }
}

// dw rows [o0, o0 + RO), columns [k0, k0 + RK) (ld K) (+)= g rows (ld PQ) . cols rows (ld PQ): RO x RK
// dot products over the PQ pixels, each a chain of packets, its lanes summed (predux), then the
// scalar tail.
template <int RO, int RK, class T>
void grad_block(const T* __restrict g, const T* __restrict cols, index_t PQ, T* __restrict dw, index_t K,
                bool accumulate) {
  using P = Packet<T>;
  using namespace Eigen::internal;
  P acc[RO][RK];
  FASTNN_UNROLL for (int r = 0; r < RO; ++r) FASTNN_UNROLL for (int s = 0; s < RK; ++s) acc[r][s] = pset1<P>(T(0));
  index_t j = 0;
  for (; j + kP<T> <= PQ; j += kP<T>) {
    P c[RK];
    FASTNN_UNROLL for (int s = 0; s < RK; ++s) c[s] = ploadu<P>(cols + s * PQ + j);
    FASTNN_UNROLL for (int r = 0; r < RO; ++r) {
      const P gv = ploadu<P>(g + r * PQ + j);
      FASTNN_UNROLL for (int s = 0; s < RK; ++s) acc[r][s] = pmadd(gv, c[s], acc[r][s]);
    }
  }
  for (int r = 0; r < RO; ++r)
    for (int s = 0; s < RK; ++s) {
      T sum = predux(acc[r][s]);
      for (index_t t = j; t < PQ; ++t) sum += g[r * PQ + t] * cols[s * PQ + t];
      T& d = dw[r * K + s];
      d = accumulate ? d + sum : sum;
    }
}

// Output channels and taps per weight-gradient tile: 4 x 3 accumulators (and 7 loads per 12 FMAs).
constexpr int kGradRows = 4;
constexpr int kGradTaps = 3;

// One image and group: dw (Og x K) (+)= g (Og x PQ) colsT^T (PQ x K).
template <class T>
void weight_grad_image(const T* g, const T* cols, index_t K, index_t PQ, T* dw, index_t Og, bool accumulate) {
  index_t o = 0;
  auto taps = [&](auto rows, index_t o) {
    constexpr int RO = decltype(rows)::value;
    index_t k = 0;
    for (; k + kGradTaps <= K; k += kGradTaps)
      grad_block<RO, kGradTaps>(g + o * PQ, cols + k * PQ, PQ, dw + o * K + k, K, accumulate);
    for (; k < K; ++k) grad_block<RO, 1>(g + o * PQ, cols + k * PQ, PQ, dw + o * K + k, K, accumulate);
  };
  for (; o + kGradRows <= Og; o += kGradRows) taps(std::integral_constant<int, kGradRows>{}, o);
  for (; o < Og; ++o) taps(std::integral_constant<int, 1>{}, o);
}

}  // namespace conv_direct
}  // namespace fastnn
