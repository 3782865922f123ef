// im2col / col2im: the patches of an NCHW image as the rows of a matrix, and the adjoint that sums
// them back, in reference/im2col.py's layout (the one conv2d's GEMM over the whole minibatch wants):
//   cols[(n*P + p)*Q + q, (c*kh + i)*kw + j] = x[n, c, p sh + i dh - ph, q sw + j dw - pw]
// (0 in the padding). Both are pure copies / fixed-order sums: results do not depend on the
// thread count (col2im gives each (n, c) plane to one thread, so overlapping taps never race).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "fastnn/common.h"

namespace fastnn {

// The image, the window and the output size of a 2-D convolution or pooling (PyTorch's Conv2d
// output size). Built by make(), which validates it: a ConvGeometry always has P, Q >= 1.
struct ConvGeometry {
  index_t n = 0, c = 0, h = 0, w = 0;  // input (N, C, H, W)
  index_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  index_t p = 0, q = 0;  // output (P, Q)

  // Sizes up to 2^31 each (so no intermediate below overflows); errors name `op`.
  static ConvGeometry make(index_t n, index_t c, index_t h, index_t w, index_t kh, index_t kw, index_t sh, index_t sw,
                           index_t ph, index_t pw, index_t dh, index_t dw, const char* op) {
    constexpr index_t kMax = index_t(1) << 31;
    for (index_t v : {n, c, h, w, kh, kw, sh, sw, dh, dw})
      FASTNN_CHECK(v >= 1 && v <= kMax, op, "sizes, kernel, stride and dilation must be in [1, 2^31], got " << v);
    FASTNN_CHECK(ph >= 0 && pw >= 0 && ph <= kMax && pw <= kMax, op,
                 "padding must be in [0, 2^31], got (" << ph << ", " << pw << ")");
    ConvGeometry g;
    g.n = n, g.c = c, g.h = h, g.w = w, g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw;
    g.dh = dh, g.dw = dw;
    const index_t eh = dh * (kh - 1) + 1, ew = dw * (kw - 1) + 1;  // the dilated kernel
    // floor division, as the reference's // (C++'s / truncates a negative span toward zero)
    auto floor_div = [](index_t a, index_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
    g.p = floor_div(h + 2 * ph - eh, sh) + 1, g.q = floor_div(w + 2 * pw - ew, sw) + 1;
    FASTNN_CHECK(g.p >= 1 && g.q >= 1, op,
                 "the (dilated) kernel (" << eh << ", " << ew << ") is larger than the padded input (" << h + 2 * ph
                                          << ", " << w + 2 * pw << "): output size (" << g.p << ", " << g.q << ")");
    // products of up to 2^32-sized extents overflow int64: check the patch matrix in floating point
    FASTNN_CHECK(double(n) * double(g.p) * double(g.q) * double(c) * double(kh) * double(kw) < 0x1p60, op,
                 "the patch matrix (N*P*Q, C*kh*kw) = (" << n << "*" << g.p << "*" << g.q << ", " << c << "*" << kh
                                                         << "*" << kw << ") is too large");
    return g;
  }

  index_t rows() const { return n * p * q; }  // rows of cols: output positions (n, p, q)
  index_t taps() const { return c * kh * kw; }  // columns of cols: taps (c, i, j)
  index_t input_size() const { return n * c * h * w; }
  // A 1x1, stride-1, unpadded window reads each pixel once, in place: conv2d skips im2col.
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

namespace im2col_detail {

// For kernel column j, the output columns q whose pixel q sw + j dw - pw lies inside [0, W):
// [lo[j], hi[j]), possibly empty. The same for every row, so computed once per call.
struct InsideColumns {
  std::vector<index_t> lo, hi;
  explicit InsideColumns(const ConvGeometry& g) : lo(g.kw), hi(g.kw) {
    for (index_t j = 0; j < g.kw; ++j) {
      const index_t off = j * g.dw - g.pw;
      index_t a = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
      index_t b = off > g.w - 1 ? 0 : (g.w - 1 - off) / g.sw + 1;
      a = std::min(a, g.q), b = std::min(b, g.q);
      lo[j] = a, hi[j] = std::max(a, b);
    }
  }
};

// Stride 1 with the output as wide as the input (Q = W: a "same" padding): the rows p of a tap's
// row of colsT and the input rows p + i dh - ph they read are equally far apart, so a tap's whole
// run of in-bounds rows is one contiguous block on both sides (a long copy or sum instead of one
// short one per row; the CNN's 14-wide rows spent a third of im2col in memmove/memset calls).
inline bool same_width_stride1(const ConvGeometry& g) { return g.sh == 1 && g.sw == 1 && g.q == g.w; }

// For tap row i (stride 1), the output rows p whose input row p + i dh - ph is in [0, H):
// [first, last), possibly empty.
inline void inside_rows(const ConvGeometry& g, index_t i, index_t& first, index_t& last) {
  first = std::clamp(g.ph - i * g.dh, index_t(0), g.p);
  last = std::clamp(g.h + g.ph - i * g.dh, first, g.p);
}

}  // namespace im2col_detail

// Bands [b0, b1) of cols (band b = output row p = b % P of image b / P: Q rows of cols) =
// the patches of x there, on the calling thread. Within a band (Q x K, in L1 for the usual
// sizes) the loops run tap by tap over q: long runs of unit-stride reads of an input row instead
// of kw-element pieces.
template <class T>
void im2col_bands(const T* x, T* cols, const ConvGeometry& g, const im2col_detail::InsideColumns& inside, index_t b0,
                  index_t b1) {
  const index_t K = g.taps(), Q = g.q;
  for (index_t b = b0; b < b1; ++b) {
    const index_t n = b / g.p, p = b % g.p;
    const T* xn = x + n * g.c * g.h * g.w;
    T* band = cols + b * Q * K;
    for (index_t c = 0; c < g.c; ++c) {
      for (index_t i = 0; i < g.kh; ++i) {
        const index_t hh = p * g.sh + i * g.dh - g.ph, tap0 = (c * g.kh + i) * g.kw;
        if (hh < 0 || hh >= g.h) {
          for (index_t q = 0; q < Q; ++q) std::fill(band + q * K + tap0, band + q * K + tap0 + g.kw, T(0));
          continue;
        }
        const T* row = xn + (c * g.h + hh) * g.w;
        for (index_t j = 0; j < g.kw; ++j) {
          T* d = band + tap0 + j;
          const index_t off = j * g.dw - g.pw, lo = inside.lo[j], hi = inside.hi[j];
          for (index_t q = 0; q < lo; ++q) d[q * K] = T(0);
          for (index_t q = lo; q < hi; ++q) d[q * K] = row[q * g.sw + off];
          for (index_t q = hi; q < Q; ++q) d[q * K] = T(0);
        }
      }
    }
  }
}

// cols (g.rows() x g.taps(), C-contiguous) = the patches of x (N, C, H, W), C-contiguous.
// Threads take bands (im2col_bands).
template <class T>
void im2col(const T* x, T* cols, const ConvGeometry& g) {
  const im2col_detail::InsideColumns inside(g);
  parallel_for(g.n * g.p, g.q * g.taps(), [&](index_t b0, index_t b1) { im2col_bands(x, cols, g, inside, b0, b1); });
}

// Planes [b0, b1) of x (plane b = image b / C, channel b % C) = col2im(cols) there, on the
// calling thread: every entry of cols added to the pixel it was read from, in a fixed order
// (p, i, j, q). A plane reads its channel's kh*kw columns of each band; the neighbouring
// channels' planes, next on the same thread, find the rest of those cache lines in L2.
template <class T>
void col2im_planes(const T* cols, T* x, const ConvGeometry& g, const im2col_detail::InsideColumns& inside,
                   index_t b0, index_t b1) {
  const index_t K = g.taps(), Q = g.q, HW = g.h * g.w;
  for (index_t b = b0; b < b1; ++b) {
    const index_t n = b / g.c, c = b % g.c;
    T* plane = x + b * HW;
    std::fill(plane, plane + HW, T(0));
    for (index_t p = 0; p < g.p; ++p) {
      const T* band = cols + (n * g.p + p) * Q * K;
      for (index_t i = 0; i < g.kh; ++i) {
        const index_t hh = p * g.sh + i * g.dh - g.ph;
        if (hh < 0 || hh >= g.h) continue;
        T* row = plane + hh * g.w;
        for (index_t j = 0; j < g.kw; ++j) {
          const T* s = band + (c * g.kh + i) * g.kw + j;
          const index_t off = j * g.dw - g.pw, hi = inside.hi[j];
          for (index_t q = inside.lo[j]; q < hi; ++q) row[q * g.sw + off] += s[q * K];
        }
      }
    }
  }
}

// x (N, C, H, W) = col2im(cols): the adjoint of im2col; x is overwritten. Each (n, c) plane is
// summed by one thread (col2im_planes), so the result does not depend on the thread count.
template <class T>
void col2im(const T* cols, T* x, const ConvGeometry& g) {
  const im2col_detail::InsideColumns inside(g);
  parallel_for(g.n * g.c, g.p * g.q * g.kh * g.kw,
               [&](index_t b0, index_t b1) { col2im_planes(cols, x, g, inside, b0, b1); });
}

// One image's patches transposed, (K x P*Q) C-contiguous: the layout of conv2d's image-by-image
// products (kernels/conv.h), y[n] = W colsT_n with both operands row-major,
//   colsT[(c*kh + i)*kw + j, p*Q + q] = xn[c, p sh + i dh - ph, q sw + j dw - pw]  (0 in the padding).
// Each tap's row is written in order from unit-stride reads of input rows (stride 1): no scattered
// writes, as the (P*Q x K) layout's one element per K-wide row has. xn: the image (C, H, W).
template <class T>
void im2col_image_t(const T* xn, T* colsT, const ConvGeometry& g, const im2col_detail::InsideColumns& inside) {
  const index_t Q = g.q, PQ = g.p * g.q;
  const bool runs = im2col_detail::same_width_stride1(g);
  for (index_t c = 0; c < g.c; ++c)
    for (index_t i = 0; i < g.kh; ++i)
      for (index_t j = 0; j < g.kw; ++j) {
        T* d = colsT + ((c * g.kh + i) * g.kw + j) * PQ;
        const index_t off = j * g.dw - g.pw, lo = inside.lo[j], hi = inside.hi[j];
        if (runs) {  // the in-bounds rows as one copy from lo of the first to hi of the last, then the
                     // columns outside [lo, hi) of each row (read from the neighbouring rows) zeroed
          index_t pa, pb;
          im2col_detail::inside_rows(g, i, pa, pb);
          if (pa == pb || lo == hi) {
            std::fill(d, d + PQ, T(0));
            continue;
          }
          std::fill(d, d + pa * Q, T(0));
          std::fill(d + pb * Q, d + PQ, T(0));
          T* dm = d + pa * Q;
          const T* src = xn + (c * g.h + pa + i * g.dh - g.ph) * g.w + off;
          std::copy(src + lo, src + (pb - pa - 1) * Q + hi, dm + lo);
          if (lo > 0 || hi < Q)
            for (index_t r = 0; r < pb - pa; ++r) {
              T* dr = dm + r * Q;
              for (index_t q = 0; q < lo; ++q) dr[q] = T(0);
              for (index_t q = hi; q < Q; ++q) dr[q] = T(0);
            }
          continue;
        }
        for (index_t p = 0; p < g.p; ++p, d += Q) {
          const index_t hh = p * g.sh + i * g.dh - g.ph;
          if (hh < 0 || hh >= g.h) {
            std::fill(d, d + Q, T(0));
            continue;
          }
          const T* row = xn + (c * g.h + hh) * g.w + off;
          std::fill(d, d + lo, T(0));
          if (g.sw == 1)
            std::copy(row + lo, row + hi, d + lo);
          else
            for (index_t q = lo; q < hi; ++q) d[q] = row[q * g.sw];
          std::fill(d + hi, d + Q, T(0));
        }
      }
}

// xn (C, H, W) = col2im of one image's transposed patches colsT (K x P*Q, im2col_image_t's layout),
// overwritten: every entry added to the pixel it was read from, plane by plane in a fixed order
// (i, j, p, q), each tap's row read in order. colsT is scratch: with stride 1 and Q = W
// (same_width_stride1) its entries read from the padding are set to 0 first, so that a tap's
// in-bounds rows are one sum over a contiguous run (those zeros land on the neighbouring rows'
// pixels: each pixel still receives one entry per tap, in the same order, so the sums are the same).
template <class T>
void col2im_image_t(T* colsT, T* xn, const ConvGeometry& g, const im2col_detail::InsideColumns& inside) {
  const index_t Q = g.q, PQ = g.p * g.q, HW = g.h * g.w;
  const bool runs = im2col_detail::same_width_stride1(g);
  for (index_t c = 0; c < g.c; ++c) {
    T* plane = xn + c * HW;
    std::fill(plane, plane + HW, T(0));
    for (index_t i = 0; i < g.kh; ++i)
      for (index_t j = 0; j < g.kw; ++j) {
        T* s = colsT + ((c * g.kh + i) * g.kw + j) * PQ;
        const index_t off = j * g.dw - g.pw, lo = inside.lo[j], hi = inside.hi[j];
        if (runs) {
          index_t pa, pb;
          im2col_detail::inside_rows(g, i, pa, pb);
          if (pa == pb || lo == hi) continue;
          T* sm = s + pa * Q;
          if (lo > 0 || hi < Q)
            for (index_t r = 0; r < pb - pa; ++r) {
              T* sr = sm + r * Q;
              for (index_t q = 0; q < lo; ++q) sr[q] = T(0);
              for (index_t q = hi; q < Q; ++q) sr[q] = T(0);
            }
          T* __restrict dst = plane + (pa + i * g.dh - g.ph) * g.w + off;
          const T* __restrict src = sm;
          const index_t end = (pb - pa - 1) * Q + hi;
          for (index_t t = lo; t < end; ++t) dst[t] += src[t];
          continue;
        }
        for (index_t p = 0; p < g.p; ++p, s += Q) {
          const index_t hh = p * g.sh + i * g.dh - g.ph;
          if (hh < 0 || hh >= g.h) continue;
          T* row = plane + hh * g.w + off;
          if (g.sw == 1)
            for (index_t q = lo; q < hi; ++q) row[q] += s[q];
          else
            for (index_t q = lo; q < hi; ++q) row[q * g.sw] += s[q];
        }
      }
  }
}

}  // namespace fastnn
