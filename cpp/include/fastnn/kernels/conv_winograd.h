// Winograd F(2x2, 3x3) convolution (reference/conv_winograd.py is the specification): a 3x3,
// stride-1, undilated, ungrouped cross-correlation computed on 4x4 input tiles that overlap by 2,
// each giving a 2x2 output tile, as
//   Y_tile = A^T [ sum_c (G g_oc G^T) .* (B^T d_c B) ] A,
// with the 16 elementwise products summed over the input channels as 16 products of depth C:
//   M_xi^T (T x O) = V_xi (T x C) U_xi^T (C x O),  U = G g G^T (the kernel), V = B^T d B (the tiles,
//   T x C: the input transform vectorizes over the channels, kLanes at a time).
// That is 16 O C multiply-adds per 2x2 outputs instead of 36 O C: 2.25x fewer. The transforms use
// only 0, +-1 and +-1/2, so the rounding stays within a small multiple of the direct sum's
// (tests/kernels/test_conv_winograd.py).
// The forward runs per block of kTileBlock tiles: its 16 products on gemm_narrow.h's register
// tiles (rows of V read in place, U^T packed once per call in transform_weight), then the output
// transform vectorized over the output channels while the block is in L1, into the image's outputs
// (channels innermost), transposed into NCHW in registers. A BLAS call per point instead wrote
// a 16 x O x T M for a group of images (600 KB for the cnn's conv2, beyond L2), zeroed it first
// (beta = 0) and packed both operands: 1.37x less CPU time forward (cnn conv2, 1 thread).
// The weight gradient's products still go to the BLAS over groups of images (group_images: a
// function of the shape), whose tiles are the columns of one set of 16 GEMMs.
// Also the two gradients:
// - the input gradient of such a convolution with padding <= 2 is the convolution of grad_out with
//   the flipped, transposed kernel and padding 2 - p (transform_weight's `flip`);
// - the weight gradient is the transposed transform of the forward:
//     dU_xi (O x C) = sum over tiles dM_xi (O x T) V_xi (T x C),  dM = A dY A^T (dY: a 2x2 tile of grad_out),
//     dW[o, c] = G^T dU[o, c] G,
//   16 GEMMs of depth T (summed over the images) instead of one of depth 9 C.
// With kWideOutChannels or more output channels the forward runs F(4x4, 3x3) instead (output_tile):
// 6x6 tiles overlapping by 2, 36 products per 4x4 outputs, the same passes with 36 points.
// Each group is one thread's, in a fixed order: results are the same for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "fastnn/common.h"
#include "fastnn/kernels/gemm.h"
#include "fastnn/kernels/gemm_narrow.h"

namespace fastnn {
namespace winograd {

constexpr index_t kPoints = 16;  // F(2x2, 3x3): 4 x 4 transformed values per tile
constexpr index_t kMaxPoints = 36;  // F(4x4, 3x3): 6 x 6

// The forward's output tile (m x m, from (m + 2) x (m + 2) inputs): F(4x4, 3x3) for products of at
// least kWideOutChannels output channels, where the products are most of the time: 36 products per
// 16 outputs instead of 16 per 4 (1.36x fewer at 14x14, whose 4x4 tiles are 16 against 49), on
// transforms with the points 0, +-1, +-2 (reference/conv_winograd.py, tests/kernels/test_conv_winograd.py
// for the rounding). The transforms' cost per output grows with the input channels, the products'
// with both: the cnn's conv2 forward (32 -> 64) took 1.16x less CPU time, its input gradient
// (64 -> 32) none (Zen 1, 1 thread). The weight gradient stays F(2x2, 3x3).
constexpr index_t kWideOutChannels = 64;
inline index_t output_tile(index_t out) { return out >= kWideOutChannels ? 4 : 2; }
constexpr index_t points(index_t m) { return (m + 2) * (m + 2); }

// Channels below these leave the 16 GEMMs too thin to beat one im2col product (the first conv of
// a CNN: 1 input channel). A DenseNet's 48 -> 12 wins: forward 1.4-1.8x, dW 1.6-1.9x (1 thread).
constexpr index_t kMinChannels = 16;     // in
constexpr index_t kMinOutChannels = 8;   // out

// One image's m x m tiles for an output of P x Q: ceil(P/m) x ceil(Q/m).
struct Tiles {
  index_t rows = 0, cols = 0, m = 2;
  Tiles(index_t p, index_t q, index_t m = 2) : rows((p + m - 1) / m), cols((q + m - 1) / m), m(m) {}
  index_t count() const { return rows * cols; }
};

// Tiles a group of images puts side by side in the 16 GEMMs: whole images, up to about
// kGroupTiles columns (fewer images when one already has that many). Smaller groups keep V and dM
// closer to L1 (Zen 4, 1 thread, paired, against 192: the cnn's conv2, 1 image instead of 3, even;
// DenseNet 48 -> 12 at 14x14 fwd 1.06x, dW 1.14x, at 7x7 fwd 1.13x, dW 1.31x; 384 lost 2-26%).
constexpr index_t kGroupTiles = 96;
inline index_t group_images(index_t tiles_per_image) {
  return std::max<index_t>(1, kGroupTiles / std::max<index_t>(1, tiles_per_image));
}
// With F(4x4) tiles (36 points each) about half as many, and a multiple of kTileBlock for 14x14's 16
// tiles (3 images: no block of the forward's products is cut short).
constexpr index_t kGroupTiles4 = 48;
// Images per group for the forward of a P x Q output of `out` channels.
inline index_t group_images(index_t p, index_t q, index_t out) {
  const Tiles t(p, q, output_tile(out));
  return t.m == 2 ? group_images(t.count()) : std::max<index_t>(1, kGroupTiles4 / t.count());
}

// Scratch for a group of `images` images, in elements: the input transform's plane (Plane),
// V (16, images T, C), then the forward's block products and the images' outputs, or the weight
// gradient's dM (16, O, images T) and one image's 2x2 grad_out tiles (4 x T).
inline index_t group_scratch_size(index_t in_channels, index_t out_channels, index_t p, index_t q, index_t images);

// Output channels of the forward's products padded to whole SIMD packets (zeros beyond), and the
// transformed kernel's size for `depth` input and `out` output channels. The scratch sizes bound
// it by kMaxPad (one AVX-512 register of floats), so that they need not know T.
constexpr index_t kMaxPad = 16;
template <class T>
constexpr index_t padded(index_t out) {
  return narrow_detail::packets<T>(out) * narrow_detail::kP<T>;
}
template <class T>
constexpr index_t kernel_size(index_t depth, index_t out) {
  return points(output_tile(out)) * depth * padded<T>(out);
}
// narrow_detail's kernels load the panels as aligned packets: the kernel goes at the first 64-byte
// boundary of its buffer, which has kMaxPad elements more for that.
template <class T>
T* aligned_kernel(T* buf) {
  return reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(buf) + 63) & ~std::uintptr_t(63));
}
// A buffer for the kernel (aligned_kernel) of any T.
inline index_t kernel_size_bound(index_t depth, index_t out) {
  return points(output_tile(out)) * depth * ((out + kMaxPad - 1) / kMaxPad * kMaxPad) + kMaxPad;
}
// Columns of one panel of the transformed kernel: a panel of narrow_detail's packed B.
template <class T>
constexpr index_t kPanel = narrow_detail::kPanelColumns<T>;

// G v (m + 2 values) of 3 values v: F(2x2)'s G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], F(4x4)'s
// G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
template <class T>
void kernel_transform(index_t m, const T v[3], T* out) {
  if (m == 2) {
    out[0] = v[0];
    out[1] = T(0.5) * (v[0] + v[1] + v[2]);
    out[2] = T(0.5) * (v[0] - v[1] + v[2]);
    out[3] = v[2];
    return;
  }
  const T even = v[0] / T(24) + v[2] / T(6), odd = v[1] / T(12);
  out[0] = v[0] / T(4);
  out[1] = -(v[0] + v[1] + v[2]) / T(6);
  out[2] = -(v[0] - v[1] + v[2]) / T(6);
  out[3] = even + odd;
  out[4] = even - odd;
  out[5] = v[2];
}

// U = G g G^T of each kernel g[o, c] (3x3), for the output tile output_tile(out), laid out for the
// forward's products (conv3x3_images): per point xi, U_xi^T (depth x out, out padded) in panels of
// kPanel<T> columns, each panel depth x width row-major (narrow_detail's packed B). depth = C, out = O; with flip, the kernel of
// the input gradient: depth = O, out = C, from g'[c, o] = g[o, c] rotated by 180 degrees (weight is
// (O, C, 3, 3)). u: kernel_size<T>(depth, out) elements, 64-byte aligned (aligned_kernel).
template <class T>
void transform_weight(const T* weight, index_t O, index_t C, bool flip, T* u) {
  const index_t out = flip ? C : O, depth = flip ? O : C, op = padded<T>(out), pw = kPanel<T>;
  const index_t m = output_tile(out), n = m + 2;
  std::fill(u, u + kernel_size<T>(depth, out), T(0));
  parallel_for(O, C * 64, [&](index_t o0, index_t o1) {
    for (index_t o = o0; o < o1; ++o)
      for (index_t c = 0; c < C; ++c) {
        const T* w = weight + (o * C + c) * 9;
        T g[3][3];  // g transposed: g[j] is column j
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) g[j][i] = flip ? w[(2 - i) * 3 + (2 - j)] : w[i * 3 + j];
        T gg[3][6];  // G g, its columns
        for (int j = 0; j < 3; ++j) kernel_transform(m, g[j], gg[j]);
        const index_t r = flip ? c : o, k = flip ? o : c;  // output channel, depth index
        const index_t panel = r / pw, width = std::min(pw, op - panel * pw);
        T* dst = u + depth * panel * pw + k * width + (r - panel * pw);
        for (index_t a = 0; a < n; ++a) {  // (G g) G^T, row a
          const T row[3] = {gg[0][a], gg[1][a], gg[2][a]};
          T v[6];
          kernel_transform(m, row, v);
          for (index_t b = 0; b < n; ++b) dst[(a * n + b) * depth * op] = v[b];
        }
      }
  });
}

// dW[o, c] (+)= G^T dU[o, c] G for du (16, O, C); G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1].
template <class T>
void weight_from_transform(const T* du, index_t O, index_t C, T* dw, bool accumulate) {
  parallel_for(O, C * 64, [&](index_t o0, index_t o1) {
    for (index_t o = o0; o < o1; ++o)
      for (index_t c = 0; c < C; ++c) {
        T d[4][4];
        for (int xi = 0; xi < 16; ++xi) d[xi / 4][xi % 4] = du[(xi * O + o) * C + c];
        T r[3][4];  // G^T d
        for (int b = 0; b < 4; ++b) {
          r[0][b] = d[0][b] + T(0.5) * (d[1][b] + d[2][b]);
          r[1][b] = T(0.5) * (d[1][b] - d[2][b]);
          r[2][b] = T(0.5) * (d[1][b] + d[2][b]) + d[3][b];
        }
        T* w = dw + (o * C + c) * 9;
        for (int i = 0; i < 3; ++i) {  // (G^T d) G
          const T v[3] = {r[i][0] + T(0.5) * (r[i][1] + r[i][2]), T(0.5) * (r[i][1] - r[i][2]),
                          T(0.5) * (r[i][1] + r[i][2]) + r[i][3]};
          for (int j = 0; j < 3; ++j) w[i * 3 + j] = accumulate ? w[i * 3 + j] + v[j] : v[j];
        }
      }
  });
}

namespace detail {

// Channels one pass of the input transform vectorizes over (one AVX-512 float register).
constexpr index_t kLanes = 16;

// The input transform's plane: the zero-padded input of a P x Q output's tiles, HP x WP pixels of
// kLanes channels each (channels innermost).
// With F(4x4) tiles, B^T d of one row of tiles follows it: 6 values per plane column (rows wp x 6 of
// kLanes channels), which the tiles of the row share (each column is in two of them).
struct Plane {
  index_t hp, wp, m;
  explicit Plane(const Tiles& t) : hp(t.m * t.rows + 2), wp(t.m * t.cols + 2), m(t.m) {}
  index_t pixels() const { return hp * wp * kLanes; }
  index_t size() const { return pixels() + (m == 4 ? 6 * wp * kLanes : 0); }
};

// One SIMD packet with the arithmetic operators (Eigen's padd, psub, pnegate), so that a transform
// is written once for packets and scalars.
template <class T>
struct Packed {
  using P = narrow_detail::Packet<T>;
  static constexpr index_t kSize = narrow_detail::kP<T>;
  P p;
  static Packed load(const T* a) { return {Eigen::internal::ploadu<P>(a)}; }
  void store(T* a) const { Eigen::internal::pstoreu(a, p); }
  friend Packed operator+(const Packed& a, const Packed& b) { return {Eigen::internal::padd(a.p, b.p)}; }
  friend Packed operator-(const Packed& a, const Packed& b) { return {Eigen::internal::psub(a.p, b.p)}; }
  Packed operator-() const { return {Eigen::internal::pnegate(p)}; }
  friend Packed operator*(T s, const Packed& a) { return {Eigen::internal::pmul(Eigen::internal::pset1<P>(s), a.p)}; }
};

// B^T d of 6 values (F(4x4)): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
// 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
template <class V>
inline void input_transform6(const V d[6], V t[6]) {
  const V s12 = d[1] + d[2], d12 = d[1] - d[2], s34 = d[3] + d[4], d43 = d[4] - d[3], d42 = d[4] - d[2],
          d31 = d[3] - d[1];
  t[0] = (4 * d[0] - 5 * d[2]) + d[4];
  t[1] = s34 - 4 * s12;
  t[2] = d43 + 4 * d12;
  t[3] = d42 + 2 * d31;
  t[4] = d42 - 2 * d31;
  t[5] = (4 * d[1] - 5 * d[3]) + d[5];
}

// V[xi, col0 + t, c] = (B^T d B)[a, b] (xi = n a + b, n = m + 2) for the m x m tiles t (tiles.m) of
// one image x (C, H, W), padding (ph, pw); V_xi is a (rows x C) row-major matrix, its rows t: each
// xi's block is ld x C; F(2x2)'s B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], F(4x4)'s in
// input_transform6. kLanes channels at a time: their planes are
// transposed into `plane` (channels innermost), then every tile's n x n values are packets of
// channels and the transform is packet arithmetic, stored as contiguous runs of V's rows.
template <class T>
void input_transform(const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, const Tiles& tiles, T* plane,
                     T* v, index_t ld, index_t col0) {
  using Pk = narrow_detail::Packet<T>;
  using Vec = Packed<T>;
  constexpr index_t L = kLanes, PS = narrow_detail::kP<T>;
  static_assert(L % PS == 0, "the plane's channel groups hold whole packets");
  const index_t TR = tiles.rows, TC = tiles.cols;
  const Plane pl(tiles);
  const index_t WP = pl.wp, HW = H * W;
  // rows and columns of x that a tile reads (the plane covers the padded input up to the last tile)
  const index_t rows = std::min(H, pl.hp - ph), cols = std::min(W, WP - pw);
  const index_t S = ld * C;  // from one xi to the next
  // the plane's pixel of x's (i, j), or null where no tile reads it
  const auto pixel = [&](index_t i, index_t j) { return i < rows && j < cols ? plane + ((i + ph) * WP + j + pw) * L : nullptr; };
  // zeros around x (the padding and beyond: the last tiles' unused part), once: the channel groups
  // below write x's pixels only (not one memset per plane row for every group of channels)
  const auto zero = [&](index_t from, index_t to) {  // pixels [from, to) of the plane
    std::fill(plane + std::min(from, pl.hp * WP) * L, plane + std::min(to, pl.hp * WP) * L, T(0));
  };
  zero(0, ph * WP + pw);
  for (index_t i = 0; i < rows; ++i)  // right of row i, then left of row i + 1
    zero((i + ph) * WP + pw + cols, (i + 1 + ph) * WP + pw);
  zero((rows + ph) * WP + pw, pl.hp * WP);
  for (index_t c0 = 0; c0 < C; c0 += L) {
    const index_t nc = std::min(L, C - c0);
    if (nc < L)  // x's pixels: channels beyond the last (the tail of the last group)
      for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j < cols; ++j) std::fill(pixel(i, j) + nc, pixel(i, j) + L, T(0));
    // PS channels x PS pixels at a time transposed in registers: the pixels are consecutive in the
    // channel planes (H x W), across rows (a row of 14 is less than one AVX-512 packet of floats);
    // the rest (fewer channels or pixels) one by one
    index_t c = 0;
    for (; c + PS <= nc; c += PS) {
      const T* src = x + (c0 + c) * HW;
      index_t e = 0, i = 0, j = 0;  // e = i W + j
      for (; e + PS <= HW; e += PS) {
        Eigen::internal::PacketBlock<Pk, PS> blk;
        for (index_t k = 0; k < PS; ++k) blk.packet[k] = Eigen::internal::ploadu<Pk>(src + k * HW + e);
        Eigen::internal::ptranspose(blk);
        for (index_t k = 0; k < PS; ++k) {
          if (T* dst = pixel(i, j)) Eigen::internal::pstoreu(dst + c, blk.packet[k]);
          if (++j == W) j = 0, ++i;
        }
      }
      for (; e < HW; ++e) {
        if (T* dst = pixel(i, j))
          for (index_t k = 0; k < PS; ++k) dst[c + k] = src[k * HW + e];
        if (++j == W) j = 0, ++i;
      }
    }
    for (; c < nc; ++c) {
      const T* xc = x + (c0 + c) * HW;
      for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j < cols; ++j) pixel(i, j)[c] = xc[i * W + j];
    }
    // per tile row and packet of channels: B^T d down each plane column once (a column is shared
    // by two neighbouring tiles), then B along the tile's rows, left to right
    for (index_t tr = 0; tr < TR; ++tr)
      for (index_t l = 0; l < nc; l += PS) {
        const T* d = plane + tiles.m * tr * WP * L + l;
        // full packets, or the last, partial one of an odd channel count: decided once per row of
        // tiles, so that the stores of a tile have no branch and its packets stay in registers
        const auto put = [&](auto full, T* dst, const Vec& val) {
          if constexpr (decltype(full)::value) {
            val.store(dst);
          } else {
            alignas(64) T buf[PS];
            val.store(buf);
            std::copy(buf, buf + (nc - l), dst);
          }
        };
        // F(4x4): B^T d of the row's columns into the plane's column buffer, then per tile B^T
        // along its 6 rows of 6 columns
        const auto row_of_tiles4 = [&](auto full) {
          T* tcol = plane + pl.pixels();  // (WP x 6) x PS
          for (index_t j = 0; j < WP; ++j) {
            Vec dj[6], tj[6];
            for (int i = 0; i < 6; ++i) dj[i] = Vec::load(d + (i * WP + j) * L);
            input_transform6(dj, tj);
            for (int i = 0; i < 6; ++i) tj[i].store(tcol + (j * 6 + i) * PS);
          }
          for (index_t tc = 0; tc < TC; ++tc) {
            T* vt = v + (col0 + tr * TC + tc) * C + c0 + l;
            const T* tt = tcol + 4 * tc * 6 * PS;
            for (int a = 0; a < 6; ++a) {
              Vec r[6], out[6];
              FASTNN_UNROLL for (int b = 0; b < 6; ++b) r[b] = Vec::load(tt + (b * 6 + a) * PS);
              input_transform6(r, out);
              FASTNN_UNROLL for (int b = 0; b < 6; ++b) put(full, vt + (6 * a + b) * S, out[b]);
            }
          }
        };
        const auto column = [&](index_t j, Vec out[4]) {
          const T* p = d + j * L;
          const Vec d0 = Vec::load(p), d1 = Vec::load(p + WP * L), d2 = Vec::load(p + 2 * WP * L),
                    d3 = Vec::load(p + 3 * WP * L);
          out[0] = d0 - d2, out[1] = d1 + d2, out[2] = d2 - d1, out[3] = d1 - d3;
        };
        const auto row_of_tiles = [&](auto full) {
          if (tiles.m == 4) return row_of_tiles4(full);
          Vec a[4], b[4];  // the tile's columns 0 and 1 (the previous tile's 2 and 3)
          column(0, a);
          column(1, b);
          for (index_t tc = 0; tc < TC; ++tc) {
            Vec e[4], f[4];
            column(2 * tc + 2, e);
            column(2 * tc + 3, f);
            T* vt = v + (col0 + tr * TC + tc) * C + c0 + l;
            FASTNN_UNROLL for (int r = 0; r < 4; ++r) {
              put(full, vt + (4 * r) * S, a[r] - e[r]);
              put(full, vt + (4 * r + 1) * S, b[r] + e[r]);
              put(full, vt + (4 * r + 2) * S, e[r] - b[r]);
              put(full, vt + (4 * r + 3) * S, b[r] - f[r]);
              a[r] = e[r], b[r] = f[r];
            }
          }
        };
        if (l + PS <= nc)
          row_of_tiles(std::true_type{});
        else
          row_of_tiles(std::false_type{});
      }
  }
}

// Tiles per block of the forward's fused pass: the block's 16 (or 36) products (kTileBlock x out
// each) are made and turned into outputs while in L1 (16 x 12 x 32 floats: 24 KiB) or L2.
constexpr index_t kTileBlock = 12;

// The block's products M_xi^T (n x out, rows op long: tiles t.. of V_xi, whose rows are ld long
// per xi) = V_xi rows (n x C) U_xi^T (C x out, transform_weight's panels), into mb
// (points x kTileBlock x op), by narrow_detail's register tiles: C ascending for every element.
template <class T>
void block_products(const T* v, index_t ld, index_t C, const T* u, index_t op, index_t t, index_t n, index_t points,
                    T* mb) {
  const index_t pw = kPanel<T>;
  for (index_t xi = 0; xi < points; ++xi) {
    const T* a = v + (xi * ld + t) * C;
    for (index_t p0 = 0; p0 < op; p0 += pw)
      narrow_detail::strided_rows(a, C, u + (xi * op + p0) * C, C, mb + xi * kTileBlock * op + p0, op,
                                  std::min(pw, op - p0), 0, n, n, false);
  }
}

// Y = A^T M A (A^T = [1 1 1 0; 0 1 -1 -1]) of the block's tiles t0 .. t0 + n of a group's images
// (their tiles image after image) from mb, vectorized over the output channels, into yt (images x
// P*Q x op: the images' outputs, channels innermost);
// the last tile row and column are cut at P, Q.
template <class T>
void block_outputs(const T* mb, index_t op, const Tiles& tiles, index_t t0, index_t n, index_t P, index_t Q, T* yt) {
  const index_t NT = tiles.count();
  using Pk = narrow_detail::Packet<T>;
  using Eigen::internal::padd;
  using Eigen::internal::ploadu;
  using Eigen::internal::psub;
  using Eigen::internal::pstoreu;
  constexpr index_t S = narrow_detail::kP<T>;
  for (index_t r = 0; r < n; ++r) {
    const index_t image = (t0 + r) / NT, t = (t0 + r) % NT;
    const index_t tr = t / tiles.cols, tc = t % tiles.cols, p = 2 * tr, q = 2 * tc;
    const bool down = p + 1 < P, right = q + 1 < Q;
    T* y0 = yt + ((image * P + p) * Q + q) * op;
    T* y1 = y0 + Q * op;
    const T* m = mb + r * op;
    for (index_t j = 0; j < op; j += S) {
      Pk s0[4], s1[4];
      for (int b = 0; b < 4; ++b) {
        const index_t e = b * kTileBlock * op + j;  // point xi = b, then 4 + b, 8 + b, 12 + b
        const Pk m0 = ploadu<Pk>(m + e), m1 = ploadu<Pk>(m + e + 4 * kTileBlock * op),
                 m2 = ploadu<Pk>(m + e + 8 * kTileBlock * op), m3 = ploadu<Pk>(m + e + 12 * kTileBlock * op);
        s0[b] = padd(padd(m0, m1), m2);
        s1[b] = psub(psub(m1, m2), m3);
      }
      pstoreu(y0 + j, padd(padd(s0[0], s0[1]), s0[2]));
      if (right) pstoreu(y0 + op + j, psub(psub(s0[1], s0[2]), s0[3]));
      if (!down) continue;
      pstoreu(y1 + j, padd(padd(s1[0], s1[1]), s1[2]));
      if (right) pstoreu(y1 + op + j, psub(psub(s1[1], s1[2]), s1[3]));
    }
  }
}

// A^T m of 6 values (F(4x4)): A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
template <class P>
inline void output_transform6(const P m[6], P y[4]) {
  using Eigen::internal::padd;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  using Eigen::internal::psub;
  using T = typename Eigen::internal::unpacket_traits<P>::type;
  const P s12 = padd(m[1], m[2]), d12 = psub(m[1], m[2]), s34 = padd(m[3], m[4]), d34 = psub(m[3], m[4]);
  y[0] = padd(padd(m[0], s12), s34);
  y[1] = pmadd(pset1<P>(T(2)), d34, d12);
  y[2] = pmadd(pset1<P>(T(4)), s34, s12);
  y[3] = padd(pmadd(pset1<P>(T(8)), d34, d12), m[5]);
}

// block_outputs for F(4x4) tiles: Y = A^T M A (4 x 4 of 6 x 6), cut at P, Q.
template <class T>
void block_outputs4(const T* mb, index_t op, const Tiles& tiles, index_t t0, index_t n, index_t P, index_t Q, T* yt) {
  using Pk = narrow_detail::Packet<T>;
  constexpr index_t S = narrow_detail::kP<T>;
  const index_t NT = tiles.count(), step = kTileBlock * op;  // from one point to the next
  for (index_t r = 0; r < n; ++r) {
    const index_t image = (t0 + r) / NT, t = (t0 + r) % NT;
    const index_t p = 4 * (t / tiles.cols), q = 4 * (t % tiles.cols);
    const index_t down = std::min<index_t>(4, P - p), right = std::min<index_t>(4, Q - q);
    T* y0 = yt + ((image * P + p) * Q + q) * op;
    const T* m = mb + r * op;
    for (index_t j = 0; j < op; j += S) {
      Pk s[6][4];  // A^T M, by columns b of M
      for (int b = 0; b < 6; ++b) {
        Pk col[6];
        for (int a = 0; a < 6; ++a) col[a] = Eigen::internal::ploadu<Pk>(m + (6 * a + b) * step + j);
        output_transform6(col, s[b]);
      }
      for (index_t a = 0; a < down; ++a) {  // (A^T M) A, row a
        const Pk row[6] = {s[0][a], s[1][a], s[2][a], s[3][a], s[4][a], s[5][a]};
        Pk out[4];
        output_transform6(row, out);
        for (index_t c = 0; c < right; ++c) Eigen::internal::pstoreu(y0 + (a * Q + c) * op + j, out[c]);
      }
    }
  }
}

// y (O x PQ, NCHW planes) = the transpose of yt (PQ x op), S x S blocks transposed in registers.
template <class T>
void to_planes(const T* yt, index_t op, index_t O, index_t PQ, T* y) {
  using Pk = narrow_detail::Packet<T>;
  constexpr index_t S = narrow_detail::kP<T>;
  index_t e = 0;
  for (; e + S <= PQ; e += S)
    for (index_t o0 = 0; o0 < O; o0 += S) {
      Eigen::internal::PacketBlock<Pk, S> blk;
      for (index_t i = 0; i < S; ++i) blk.packet[i] = Eigen::internal::ploadu<Pk>(yt + (e + i) * op + o0);
      Eigen::internal::ptranspose(blk);
      for (index_t j = 0; j < std::min(S, O - o0); ++j) Eigen::internal::pstoreu(y + (o0 + j) * PQ + e, blk.packet[j]);
    }
  for (; e < PQ; ++e)
    for (index_t o = 0; o < O; ++o) y[o * PQ + e] = yt[e * op + o];
}

// left[k] = row[2 k], right[k] = row[2 k + 1] for a row of Q values (right[Q / 2] = 0 when Q is odd).
// With AVX-512 floats, 16 values at a time by one permute (even ones low, odd ones high) and
// masked loads and stores (the scalar loop, 7 pairs per row of 14, was 45% of weight_grad_images).
template <class T>
inline void deinterleave(const T* __restrict row, index_t Q, T* __restrict left, T* __restrict right) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (index_t e = 0; e < Q; e += 16) {
      const index_t n = std::min<index_t>(16, Q - e), half = (n + 1) / 2;  // an odd n gives a 0 on the right
      const __m512 v = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), row + e));
      const __mmask16 out = __mmask16((1u << half) - 1);
      _mm512_mask_storeu_ps(left + e / 2, out, v);
      _mm512_mask_storeu_ps(right + e / 2, out, _mm512_shuffle_f32x4(v, v, 0xEE));  // lanes 8-15 to 0-7
    }
    return;
  }
#endif
  const index_t Q2 = Q >> 1;
  for (index_t k = 0; k < Q2; ++k) {
    left[k] = row[2 * k];
    right[k] = row[2 * k + 1];
  }
  if (Q & 1) left[Q2] = row[Q - 1], right[Q2] = T(0);
}

// dM[xi, o, col0 + t] = (A dY A^T)[a, b] for the 2x2 tiles dY of one image's grad_out g (O, P, Q)
// (zero beyond P, Q), rows ld long; A = [1 0; 1 1; 1 -1; 0 -1]. outs: 4 x T.
template <class T>
void grad_transform(const T* g, index_t O, index_t P, index_t Q, const Tiles& tiles, T* dm, index_t ld, index_t col0,
                    T* outs) {
  using Vec = Packed<T>;
  constexpr index_t L = Vec::kSize;
  const index_t NT = tiles.count(), TR = tiles.rows, TC = tiles.cols;
  T *__restrict d00 = outs, *__restrict d01 = outs + NT, *__restrict d10 = outs + 2 * NT,
    *__restrict d11 = outs + 3 * NT;
  const index_t S = O * ld;
  if (P & 1) std::fill(d10 + (TR - 1) * TC, d10 + NT, T(0)), std::fill(d11 + (TR - 1) * TC, d11 + NT, T(0));
  for (index_t o = 0; o < O; ++o) {
    const T* go = g + o * P * Q;
    for (index_t p = 0; p < P; ++p)  // deinterleave the 2x2 tiles
      deinterleave(go + p * Q, Q, (p & 1 ? d10 : d00) + (p >> 1) * TC, (p & 1 ? d11 : d01) + (p >> 1) * TC);
    T* mo = dm + o * ld + col0;
    // rows: A dY = [d0; d0 + d1; d0 - d1; -d1] (d0, d1 the tile's rows), then the same on columns;
    // packets of tiles (the compiler kept the 16 output rows' pointers on the stack, scalar)
    const auto tiles_from = [&](auto load, auto store, index_t t) {
      const auto a0 = load(d00 + t), a1 = load(d01 + t), b0 = load(d10 + t), b1 = load(d11 + t);
      const decltype(a0) r[4][2] = {{a0, a1}, {a0 + b0, a1 + b1}, {a0 - b0, a1 - b1}, {-b0, -b1}};
      for (int a = 0; a < 4; ++a) {
        store(mo + (4 * a) * S + t, r[a][0]);
        store(mo + (4 * a + 1) * S + t, r[a][0] + r[a][1]);
        store(mo + (4 * a + 2) * S + t, r[a][0] - r[a][1]);
        store(mo + (4 * a + 3) * S + t, -r[a][1]);
      }
    };
    index_t t = 0;
    for (; t + L <= NT; t += L)
      tiles_from([](const T* p) { return Vec::load(p); }, [](T* p, const Vec& v) { v.store(p); }, t);
    for (; t < NT; ++t) tiles_from([](const T* p) { return *p; }, [](T* p, T v) { *p = v; }, t);
  }
}

// A group's scratch (group_scratch_size) split into the plane, V (16 x ld x C), M or dM (16 x O x ld)
// and one image's 2x2 outputs (4 x T).
template <class T>
struct GroupBuffers {
  T *plane, *v, *m, *outs;
};
template <class T>
GroupBuffers<T> group_buffers(T* scratch, const Tiles& tiles, index_t C, index_t O, index_t ld) {
  T* v = scratch + Plane(tiles).size();
  T* m = v + points(tiles.m) * C * ld;
  return {scratch, v, m, m + kPoints * O * ld};
}

}  // namespace detail

inline index_t group_scratch_size(index_t in_channels, index_t out_channels, index_t p, index_t q, index_t images) {
  const index_t op = (out_channels + kMaxPad - 1) / kMaxPad * kMaxPad;
  const auto size = [&](index_t m) {  // of F(m x m) tiles
    const Tiles t(p, q, m);
    const index_t pts = points(m);
    // after V: the weight gradient's dM and 2x2 outputs, or the forward's block products and outputs
    const index_t rest = std::max(m == 2 ? kPoints * out_channels * t.count() * images + 4 * t.count() : 0,
                                  (pts * detail::kTileBlock + images * p * q) * op);
    return detail::Plane(t).size() + pts * in_channels * t.count() * images + rest;
  };
  return std::max(size(2), size(output_tile(out_channels)));
}

// y[i] (O, P, Q) = epi(conv3x3(x[i])) for the `images` images x[i] (C, H, W) (consecutive), with
// padding (ph, pw), P = H + 2 ph - 2, Q = W + 2 pw - 2, u from transform_weight (depth C, out O);
// epi(o, row, len) finishes len outputs of channel o of one image in place.
// The input transform of the group's images into V, then per block of kTileBlock of their tiles
// the 16 products and the output transform while in L1 (no pass over a 16 x O x T M), then each
// image's outputs transposed into NCHW. scratch: group_scratch_size(C, O, P, Q, images).
template <class T, class Epi>
void conv3x3_images(const T* x, index_t images, index_t C, index_t H, index_t W, index_t ph, index_t pw, const T* u,
                    index_t O, T* y, index_t P, index_t Q, T* scratch, Epi&& epi) {
  const Tiles tiles(P, Q, output_tile(O));
  const index_t NT = tiles.count(), ld = images * NT, op = padded<T>(O), PQ = P * Q, pts = points(tiles.m);
  const detail::GroupBuffers<T> buf = detail::group_buffers(scratch, tiles, C, O, ld);
  T *v = buf.v, *mb = buf.m, *yt = mb + pts * detail::kTileBlock * op;
  for (index_t i = 0; i < images; ++i)
    detail::input_transform(x + i * C * H * W, C, H, W, ph, pw, tiles, buf.plane, v, ld, i * NT);
  for (index_t t0 = 0; t0 < ld; t0 += detail::kTileBlock) {  // blocks across the images: fewer partial ones
    const index_t n = std::min(detail::kTileBlock, ld - t0);
    detail::block_products(v, ld, C, u, op, t0, n, pts, mb);
    if (tiles.m == 4)
      detail::block_outputs4(mb, op, tiles, t0, n, P, Q, yt);
    else
      detail::block_outputs(mb, op, tiles, t0, n, P, Q, yt);
  }
  for (index_t i = 0; i < images; ++i) {
    T* yi = y + i * O * PQ;
    detail::to_planes(yt + i * PQ * op, op, O, PQ, yi);
    for (index_t o = 0; o < O; ++o) epi(o, yi + o * PQ, PQ);
  }
}

// du (16, O, C) (+)= the transformed weight gradient of the `images` images x[i] (C, H, W) with
// grad_out g[i] (O, P, Q) (padding (ph, pw) as in conv3x3_images): dU_xi = dM_xi V_xi;
// weight_from_transform turns it into dW. scratch: group_scratch_size(C, O, P, Q, images).
template <class T>
void weight_grad_images(const T* x, const T* g, index_t images, index_t C, index_t H, index_t W, index_t ph,
                        index_t pw, index_t O, index_t P, index_t Q, T* du, bool accumulate, T* scratch) {
  const Tiles tiles(P, Q);
  const index_t NT = tiles.count(), ld = images * NT;
  const auto [plane, v, dm, outs] = detail::group_buffers(scratch, tiles, C, O, ld);
  for (index_t i = 0; i < images; ++i) {
    detail::input_transform(x + i * C * H * W, C, H, W, ph, pw, tiles, plane, v, ld, i * NT);
    detail::grad_transform(g + i * O * P * Q, O, P, Q, tiles, dm, ld, i * NT, outs);
  }
  for (index_t xi = 0; xi < kPoints; ++xi) {
    CMatMap<T> dmm(dm + xi * O * ld, O, ld, Eigen::OuterStride<>(ld));
    CMatMap<T> vm(v + xi * ld * C, ld, C, Eigen::OuterStride<>(C));
    MatMap<T> dum(du + xi * O * C, O, C, Eigen::OuterStride<>(C));
    gemm_detail::gemm_tile(dmm, vm, dum, accumulate);
  }
}

}  // namespace winograd
}  // namespace fastnn
