// Winograd F(2x2, 3x3) convolution of one image (reference/conv_winograd.py is the specification):
// a 3x3, stride-1, undilated, ungrouped cross-correlation computed on 4x4 input tiles that overlap by
// 2, each giving a 2x2 output tile, as
//   Y_tile = A^T [ sum_c (G g_oc G^T) .* (B^T d_c B) ] A,
// with the 16 elementwise products summed over the input channels as 16 GEMMs of depth C:
//   M_xi (O x T) = U_xi (O x C) V_xi (C x T),  U = G g G^T (the kernel), V = B^T d B (the tiles).
// That is 16 O C multiply-adds per 2x2 outputs instead of 36 O C: 2.25x fewer. At the CNN's
// 32 -> 64 channels on 14 x 14 the 16 GEMMs ran 2.3-2.7x faster than the im2col product of one
// image (OpenBLAS, 1 thread; bench/conv_profile.py). The transforms use only 0, +-1 and +-1/2, so the
// rounding stays within a small multiple of the direct sum's (tests/kernels/test_conv_winograd.py).
// Also the input gradient of such a convolution with padding <= 2: it is the convolution of
// grad_out with the flipped, transposed kernel and padding 2 - p (transform_weight's `flip`).
// Each image is one thread's, in a fixed order: results are the same for any thread count.
#pragma once

#include <algorithm>

#include "fastnn/common.h"
#include "fastnn/kernels/gemm.h"

namespace fastnn {
namespace winograd {

constexpr index_t kPoints = 16;  // 4 x 4 transformed values per tile

// Channels below this on either side leave the 16 GEMMs too thin to beat one im2col product
// (the first conv of a CNN: 1 input channel).
constexpr index_t kMinChannels = 16;

// One image's tiles for an output of P x Q: ceil(P/2) x ceil(Q/2).
struct Tiles {
  index_t rows = 0, cols = 0;
  Tiles(index_t p, index_t q) : rows((p + 1) / 2), cols((q + 1) / 2) {}
  index_t count() const { return rows * cols; }
};

// Scratch for one image, in elements: the zero-padded input plane split into its even and odd
// columns (HP x (TC + 1) each), their row transforms for one tile row (8 x (TC + 1)), V (16, C, T),
// M (16, O, T) and the 2x2 outputs of every tile (4 x T).
inline index_t image_scratch_size(index_t in_channels, index_t out_channels, index_t p, index_t q) {
  const Tiles t(p, q);
  const index_t half = t.cols + 1;
  return 2 * (2 * t.rows + 2) * half + 8 * half + kPoints * (in_channels + out_channels) * t.count() + 4 * t.count();
}

// U (16, O, C) = G g G^T of each kernel g[o, c] (3x3). With flip, the kernel of the input
// gradient: U (16, C, O) from g'[c, o] = g[o, c] rotated by 180 degrees (weight is (O, C, 3, 3)).
template <class T>
void transform_weight(const T* weight, index_t O, index_t C, bool flip, T* u) {
  const index_t rows = flip ? C : O, cols = flip ? O : C;  // U_xi is rows x cols
  parallel_for(O, C * 64, [&](index_t o0, index_t o1) {
    for (index_t o = o0; o < o1; ++o)
      for (index_t c = 0; c < C; ++c) {
        const T* w = weight + (o * C + c) * 9;
        T g[3][3];
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) g[i][j] = flip ? w[(2 - i) * 3 + (2 - j)] : w[i * 3 + j];
        T gg[4][3];  // G g, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
        for (int j = 0; j < 3; ++j) {
          gg[0][j] = g[0][j];
          gg[1][j] = T(0.5) * (g[0][j] + g[1][j] + g[2][j]);
          gg[2][j] = T(0.5) * (g[0][j] - g[1][j] + g[2][j]);
          gg[3][j] = g[2][j];
        }
        const index_t r = flip ? c : o, k = flip ? o : c;
        for (int a = 0; a < 4; ++a) {  // (G g) G^T
          const T v[4] = {gg[a][0], T(0.5) * (gg[a][0] + gg[a][1] + gg[a][2]), T(0.5) * (gg[a][0] - gg[a][1] + gg[a][2]),
                          gg[a][2]};
          for (int b = 0; b < 4; ++b) u[((a * 4 + b) * rows + r) * cols + k] = v[b];
        }
      }
  });
}

// y (O, P, Q) = epi(conv3x3(x)) of one image x (C, H, W) with padding (ph, pw), P = H + 2 ph - 2,
// Q = W + 2 pw - 2, u from transform_weight (16, O, C); epi(o, row, len) finishes len outputs of
// channel o in place. scratch: image_scratch_size(C, O, P, Q).
template <class T, class Epi>
void conv3x3_image(const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, const T* u, index_t O,
                   T* y, index_t P, index_t Q, T* scratch, Epi&& epi) {
  const Tiles tiles(P, Q);
  const index_t TR = tiles.rows, TC = tiles.cols, NT = tiles.count();
  const index_t HP = 2 * TR + 2, K1 = TC + 1;  // the padded plane the tiles read: HP x 2 K1
  T* even = scratch;  // columns 0, 2, 4, ... of the padded plane
  T* odd = even + HP * K1;
  T* rowt = odd + HP * K1;  // B^T down the columns of 4 plane rows: 4 even, then 4 odd rows of K1
  T* v = rowt + 8 * K1;
  T* m = v + kPoints * C * NT;
  T* outs = m + kPoints * O * NT;  // each tile's 2x2 outputs: 4 x NT
  // V_xi[c, t] = (B^T d B)[a, b], xi = 4 a + b; B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. The
  // plane is split by column parity so that every pass below reads and writes contiguous runs.
  for (index_t c = 0; c < C; ++c) {
    std::fill(even, even + 2 * HP * K1, T(0));
    const T* xc = x + c * H * W;
    for (index_t i = 0; i < H; ++i) {
      T *er = even + (i + ph) * K1, *orow = odd + (i + ph) * K1;
      for (index_t j = 0; j < W; ++j) {
        const index_t col = j + pw;
        (col & 1 ? orow : er)[col >> 1] = xc[i * W + j];
      }
    }
    for (index_t tr = 0; tr < TR; ++tr) {
      for (int half = 0; half < 2; ++half) {  // B^T applied down the 4 rows of the tile row
        const T* base = (half ? odd : even) + 2 * tr * K1;
        const T *__restrict r0 = base, *__restrict r1 = base + K1, *__restrict r2 = base + 2 * K1,
                *__restrict r3 = base + 3 * K1;
        T *__restrict t0 = rowt + 4 * half * K1, *__restrict t1 = t0 + K1, *__restrict t2 = t1 + K1,
          *__restrict t3 = t2 + K1;
        for (index_t k = 0; k < K1; ++k) {
          t0[k] = r0[k] - r2[k];
          t1[k] = r1[k] + r2[k];
          t2[k] = r2[k] - r1[k];
          t3[k] = r1[k] - r3[k];
        }
      }
      for (int a = 0; a < 4; ++a) {  // then B along the columns: d0..d3 = e[tc], o[tc], e[tc+1], o[tc+1]
        const T *__restrict e = rowt + a * K1, *__restrict o = rowt + (4 + a) * K1;
        T* va = v + (a * 4 * C + c) * NT + tr * TC;
        T *__restrict v0 = va, *__restrict v1 = va + C * NT, *__restrict v2 = va + 2 * C * NT,
          *__restrict v3 = va + 3 * C * NT;
        for (index_t tc = 0; tc < TC; ++tc) {
          v0[tc] = e[tc] - e[tc + 1];
          v1[tc] = o[tc] + e[tc + 1];
          v2[tc] = e[tc + 1] - o[tc];
          v3[tc] = o[tc] - o[tc + 1];
        }
      }
    }
  }
  for (index_t xi = 0; xi < kPoints; ++xi) {
    CMatMap<T> um(u + xi * O * C, O, C, Eigen::OuterStride<>(C));
    CMatMap<T> vm(v + xi * C * NT, C, NT, Eigen::OuterStride<>(NT));
    MatMap<T> mm(m + xi * O * NT, O, NT, Eigen::OuterStride<>(NT));
    gemm_detail::gemm_tile(um, vm, mm, false);
  }
  // Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1], over all tiles of a channel at once, then the 2x2
  // outputs interleaved into the channel's rows (the last tile row and column cut at P, Q)
  const index_t S = O * NT;  // from one xi to the next
  for (index_t o = 0; o < O; ++o) {
    const T* __restrict mo = m + o * NT;
    T *__restrict y00 = outs, *__restrict y01 = outs + NT, *__restrict y10 = outs + 2 * NT,
      *__restrict y11 = outs + 3 * NT;
    for (index_t t = 0; t < NT; ++t) {
      T s0[4], s1[4];
      for (int b = 0; b < 4; ++b) {
        const T m0 = mo[b * S + t], m1 = mo[(4 + b) * S + t], m2 = mo[(8 + b) * S + t], m3 = mo[(12 + b) * S + t];
        s0[b] = m0 + m1 + m2;
        s1[b] = m1 - m2 - m3;
      }
      y00[t] = s0[0] + s0[1] + s0[2];
      y01[t] = s0[1] - s0[2] - s0[3];
      y10[t] = s1[0] + s1[1] + s1[2];
      y11[t] = s1[1] - s1[2] - s1[3];
    }
    T* yo = y + o * P * Q;
    for (index_t p = 0; p < P; ++p) {
      const T* left = (p & 1 ? y10 : y00) + (p >> 1) * TC;
      const T* right = (p & 1 ? y11 : y01) + (p >> 1) * TC;
      T* row = yo + p * Q;
      for (index_t q = 0; q + 1 < Q; q += 2) {
        row[q] = left[q >> 1];
        row[q + 1] = right[q >> 1];
      }
      if (Q & 1) row[Q - 1] = left[Q >> 1];
    }
    epi(o, yo, P * Q);
  }
}

}  // namespace winograd
}  // namespace fastnn
