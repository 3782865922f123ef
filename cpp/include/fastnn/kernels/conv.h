// 2-D convolution (cross-correlation, as torch.nn.Conv2d) as im2col + GEMM, groups included
// (reference/conv.py is the specification). x is NCHW, weight (O, C/G, kh, kw), the output NCHW;
// with cols (N*P*Q, C*kh*kw) = im2col(x) (cols_n: image n's P*Q rows) and W_g = rows g*O/G .. of
// weight as (O/G, C/G*kh*kw):
//   forward   y[n]_g = W_g cols_n,g^T + b_g;
//   backward  dW_g (+)= sum_n g[n]_g cols_n,g,  db (+)= sums of grad_out,
//             dx = col2im([dcols_n,g]_g), dcols_n,g = g[n]_g^T W_g  (g[n]: grad_out[n] as (O, P*Q)).
// Batches of >= kFusedMinImages images run image by image in 8 chunks of images (threads split
// the chunks): each image's patches and column gradient are made, used and dropped while in L2
// (one buffer per chunk), and the products read and write NCHW in place (no reorders). dW's
// chunk partial sums are added in chunk order. Measured on the cnn's shapes: forward ~1.3-3x,
// backward ~1.5x faster than one product over the whole minibatch (indicative, loaded machine).
// There the patches are transposed, colsT_n (C*kh*kw x P*Q, im2col_image_t): y[n]_g = W_g colsT_n,g
// with both operands row-major, and im2col/col2im write and read each tap's row in order (the
// (P*Q x K) layout scatters one element per K-wide row): conv2 of the cnn (32 -> 64, 14x14) ~15%
// less CPU time forward, ~7% backward (1 thread, process time on the loaded machine).
// Smaller batches run one product per group over the whole minibatch, threaded over its tiles,
// in NHWC: Y_g = cols_g W_g^T reordered to NCHW (+ b) in each tile's epilogue; G = NHWC(grad_out),
// dW_g (+)= G_g^T cols_g, dx = col2im([G_g W_g]_g).
// A 1x1, stride-1, unpadded convolution skips im2col and the reorders: per image, x[n] is already
// the (C, H*W) matrix, so y[n]_g = W_g x[n]_g, dx[n]_g = W_g^T g[n]_g, dW_g (+)= sum_n g[n]_g x[n]_g^T,
// on gemm.h's tiles for small batches, and for larger ones image by image in the chunks above
// (reading x[n] and writing dx[n] in place), so that dW's partial sums share the threads: one
// product over the batch, (O x N*H*W) by (N*H*W x C), is a single tile when O and C are below
// 128 (a DenseNet's 1x1 convs, 48 x c), which left dW to one thread.
// In those passes a 3x3 stride-1 ungrouped convolution with >= 16 input and >= 8 output channels
// runs as Winograd F(2x2, 3x3) (kernels/conv_winograd.h: 2.25x fewer multiply-adds; F(4x4, 3x3) for a
// forward of >= 64 output channels): the forward,
// the weight gradient and (unless input_grad_as_conv) the input gradient, several images of a
// chunk per set of 16 GEMMs.
// Every product runs on gemm.h's shape-only tiles or one per image, every other pass gives each
// output to one thread, and the path is chosen by shape: results are bit-identical for any
// thread count.
#pragma once

#include <algorithm>
#include <functional>
#include <limits>

#include "fastnn/common.h"
#include "fastnn/kernels/activations.h"
#include "fastnn/kernels/conv_direct.h"
#include "fastnn/kernels/conv_winograd.h"
#include "fastnn/kernels/gemm.h"
#include "fastnn/kernels/im2col.h"

namespace fastnn {

// A convolution's geometry: the image and window (ConvGeometry) plus the channels. make()
// validates that groups divides both channel counts; errors name `op`.
struct Conv2dShape {
  ConvGeometry geom;
  index_t out_channels = 0, groups = 1;

  static Conv2dShape make(const ConvGeometry& g, index_t out_channels, index_t groups, const char* op) {
    FASTNN_CHECK(groups >= 1, op, "groups must be a positive int, got " << groups);
    FASTNN_CHECK(out_channels >= 1, op, "out_channels must be >= 1, got " << out_channels);
    FASTNN_CHECK(out_channels % groups == 0, op,
                 "out_channels " << out_channels << " is not divisible by groups=" << groups);
    FASTNN_CHECK(g.c % groups == 0, op, "in_channels " << g.c << " is not divisible by groups=" << groups);
    FASTNN_CHECK(double(g.n) * double(out_channels) * double(g.p) * double(g.q) < 0x1p60, op,
                 "the output (" << g.n << ", " << out_channels << ", " << g.p << ", " << g.q << ") is too large");
    Conv2dShape s;
    s.geom = g, s.out_channels = out_channels, s.groups = groups;
    return s;
  }

  index_t group_in() const { return geom.c / groups; }  // C/G
  index_t group_out() const { return out_channels / groups; }  // O/G
  index_t group_taps() const { return group_in() * geom.kh * geom.kw; }  // C/G*kh*kw: one row of weight
  index_t weight_size() const { return out_channels * group_taps(); }
  index_t output_size() const { return geom.n * out_channels * geom.p * geom.q; }
};

// Caller-owned scratch (so a layer allocates it once and reuses it every step), sizes in elements
// from conv2d_workspace_size (a function of the shape alone). Batches of >= kFusedMinImages:
// cols holds one image's patches (or column gradient) per chunk of images, partial one weight
// gradient per chunk. Smaller batches: cols holds im2col(x) of the whole batch, rows the NHWC
// output or gradient. A pointwise convolution uses partial alone (batches of >= kFusedMinImages).
template <class T>
struct ConvWorkspace {
  T* cols = nullptr;
  T* rows = nullptr;
  T* partial = nullptr;
};

struct ConvWorkspaceSize {
  index_t cols = 0, rows = 0, partial = 0;
};

// What the output pass does to output channel o after the sum, in the pass that writes it (while
// the tile or image is in cache): y = acc + bias[o]; then y = y * scale[o] + shift[o] (an eval-mode
// BatchNorm's folded affine, kernels/batchnorm.h batch_norm_fold); then y = max(y, 0). Each step
// is optional (null pointers, relu false); scale and shift come together. The arithmetic is that of
// the separate passes (conv's + bias, BN's scale * y + shift, relu_of).
template <class T>
struct ConvEpilogue {
  const T* bias = nullptr;
  const T* scale = nullptr;
  const T* shift = nullptr;
  bool relu = false;

  bool empty() const { return !bias && !scale && !relu; }

  // One channel's constants: y = max((acc + b) s + t, lo); s = 1, t = 0, lo = -inf leave y as is.
  struct Channel {
    T b, s, t, lo;
    T operator()(T acc) const {
      const T v = (acc + b) * s + t;
      return v < lo ? lo : v;
    }
  };
  Channel channel(index_t o) const {
    return {bias ? bias[o] : T(0), scale ? scale[o] : T(1), scale ? shift[o] : T(0),
            relu ? T(0) : -std::numeric_limits<T>::infinity()};
  }
  // y[0, len) of channel o, in place.
  void apply(T* __restrict y, index_t len, index_t o) const {
    const Channel c = channel(o);
    for (index_t i = 0; i < len; ++i) y[i] = c(y[i]);
  }
};

namespace conv_detail {

// dst[j * dst_ld + i] = epi(src[i * src_ld + j]) for i < m, j < n, with epi channel ch0 + j's
// epilogue (none when epi is null). In 32 x 32 blocks, so that the strided side stays in L1.
template <class T>
void transpose(const T* src, index_t src_ld, T* dst, index_t dst_ld, index_t m, index_t n,
               const ConvEpilogue<T>* epi = nullptr, index_t ch0 = 0) {
  constexpr index_t B = 32;
  for (index_t j0 = 0; j0 < n; j0 += B) {
    const index_t j1 = std::min(n, j0 + B);
    for (index_t i0 = 0; i0 < m; i0 += B) {
      const index_t i1 = std::min(m, i0 + B);
      for (index_t j = j0; j < j1; ++j) {
        T* d = dst + j * dst_ld;
        if (!epi) {
          for (index_t i = i0; i < i1; ++i) d[i] = src[i * src_ld + j];
          continue;
        }
        const auto c = epi->channel(ch0 + j);
        for (index_t i = i0; i < i1; ++i) d[i] = c(src[i * src_ld + j]);
      }
    }
  }
}

// grad_bias[o] (+)= sum over (n, p, q) of grad_out[n, o, p, q]; each channel by one thread, in an
// order that does not depend on grad_out's address (blockwise::sum, not Eigen's alignment-peeling sum()).
template <class T>
void bias_grad(const T* grad_out, T* grad_bias, index_t n, index_t o, index_t pq, bool accumulate) {
  parallel_for(o, n * pq, [&](index_t o0, index_t o1) {
    for (index_t oc = o0; oc < o1; ++oc) {
      T s = T(0);
      for (index_t i = 0; i < n; ++i) s += blockwise::sum(grad_out + (i * o + oc) * pq, pq);
      grad_bias[oc] = accumulate ? grad_bias[oc] + s : s;
    }
  });
}

// Batches of at least this many images take the image-by-image passes (threads split the
// chunks of images; fewer images than that would leave threads idle).
constexpr index_t kFusedMinImages = 4;

// Chunks of images for the image-by-image passes: each has one patch buffer and one partial
// weight gradient, added in chunk order. Set by the batch size alone (never by the thread
// count), 8 so that 2, 4 or 8 threads share them evenly.
inline index_t image_chunks(index_t n) { return std::min<index_t>(n, 8); }

// Calls f(k, first, n0, n1) for each group of images [n0, n1) of each chunk k (whose first image is
// `first`), the chunks split among the threads (cost: one image's work), each chunk's images in
// order, in groups of at most `group` images of near-equal size.
template <class F>
void for_each_image_group(index_t images, index_t group, index_t cost, F&& f) {
  const index_t chunks = image_chunks(images);
  parallel_for(chunks, (images / chunks) * cost, [&](index_t k0, index_t k1) {
    for (index_t k = k0; k < k1; ++k) {
      const index_t first = k * images / chunks, count = (k + 1) * images / chunks - first;
      const index_t groups = (count + group - 1) / group;
      for (index_t i = 0; i < groups; ++i) f(k, first, first + i * count / groups, first + (i + 1) * count / groups);
    }
  });
}
// The same one image at a time: f(k, first, n).
template <class F>
void for_each_image(index_t images, index_t cost, F&& f) {
  for_each_image_group(images, 1, cost, [&](index_t k, index_t first, index_t n, index_t) { f(k, first, n); });
}

// The input gradient of an ungrouped stride-1 convolution whose output has its input's size (a
// "same" padding: P = H, Q = W) and fewer output than input channels, image by image, as the
// convolution of grad_out[n] with the flipped kernel (same window and padding):
//   dx[n] (C x HW) = Wf (C x O kh kw) im2col(g[n]) (O kh kw x HW),  Wf[c, (o, i, j)] = W[o, c, kh-1-i, kw-1-j].
// Its patches are C / O times fewer than the column gradient's (C kh kw x PQ), which the other form
// writes with a depth-O product and then scatters back with col2im: a DenseNet's 3x3 convs
// (48 -> 12: 108 instead of 432 rows an image).
inline bool input_grad_as_conv(const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  return !g.pointwise() && s.groups == 1 && s.out_channels < g.c && g.sh == 1 && g.sw == 1 && g.p == g.h &&
         g.q == g.w;
}
// That convolution's geometry: grad_out's planes (O channels of P x Q = H x W) as its input.
inline ConvGeometry transposed_geometry(const Conv2dShape& s) {
  ConvGeometry t = s.geom;
  t.c = s.out_channels, t.h = s.geom.p, t.w = s.geom.q;
  return t;
}
// The image-by-image passes run a 3x3, stride-1, undilated, ungrouped convolution with enough
// channels as Winograd F(2x2, 3x3) (kernels/conv_winograd.h): the forward, and the input gradient
// as the convolution of grad_out with the flipped kernel (padding 2 - p, so p <= 2).
inline bool winograd_forward(const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  return g.n >= kFusedMinImages && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 &&
         s.groups == 1 && g.c >= winograd::kMinChannels && s.out_channels >= winograd::kMinOutChannels;
}
// (not where input_grad_as_conv applies: with fewer output than input channels, a DenseNet's
// 48 -> 12, its depth-12 im2col product is faster: 19 vs 27 ms at 128x48x28x28, 1 thread)
inline bool winograd_input_grad(const Conv2dShape& s) {
  return winograd_forward(s) && s.geom.ph <= 2 && s.geom.pw <= 2 && !input_grad_as_conv(s);
}
// and its weight gradient as the transposed transform (winograd::weight_grad_images)
inline bool winograd_weight_grad(const Conv2dShape& s) { return winograd_forward(s); }
// The image-by-image passes run the forward and the weight gradient of a convolution with few taps
// per output as kernels/conv_direct.h's loops instead of a GEMM per image.
inline bool direct_taps(const Conv2dShape& s) {
  return s.geom.n >= kFusedMinImages && s.group_taps() <= conv_direct::kMaxTaps && !winograd_forward(s);
}
// Images per group of the forward's Winograd products, and of the backward's (the fewer of the
// weight gradient's, F(2x2) on P x Q, and the input gradient's, whose output is the input's H x W
// of C channels).
inline index_t winograd_group(const Conv2dShape& s) {
  return winograd::group_images(s.geom.p, s.geom.q, s.out_channels);
}
inline index_t winograd_backward_group(const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  return std::min(winograd::group_images(winograd::Tiles(g.p, g.q).count()), winograd::group_images(g.h, g.w, g.c));
}
// Its scratch per chunk of images (the largest of the forward's and the gradients') and its
// transformed kernel (16 O C, in the workspace's rows).
inline index_t winograd_chunk_size(const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  const index_t b = winograd_backward_group(s);
  return std::max({winograd::group_scratch_size(g.c, s.out_channels, g.p, g.q, winograd_group(s)),
                   winograd::group_scratch_size(g.c, s.out_channels, g.p, g.q, b),
                   winograd::group_scratch_size(s.out_channels, g.c, g.h, g.w, b)});
}
// One chunk's buffer in the image-by-image passes: an image's patches, or its Winograd scratch.
inline index_t chunk_buffer_size(const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  const index_t patches = g.pointwise() ? 0 : g.p * g.q * g.taps();
  return winograd_forward(s) ? std::max(patches, winograd_chunk_size(s)) : patches;
}

// wf (C x O kh kw) = the flipped kernel of weight (O, C, kh, kw).
template <class T>
void flip_weight(const T* weight, T* wf, const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  const index_t O = s.out_channels, kk = g.kh * g.kw;
  for (index_t c = 0; c < g.c; ++c)
    for (index_t o = 0; o < O; ++o)
      for (index_t i = 0; i < g.kh; ++i)
        for (index_t j = 0; j < g.kw; ++j)
          wf[(c * O + o) * kk + i * g.kw + j] = weight[((o * g.c + c) * g.kh + (g.kh - 1 - i)) * g.kw + (g.kw - 1 - j)];
}

}  // namespace conv_detail

// Whether conv2d_backward can take its upstream gradient image by image (grad_image): the
// image-by-image passes, without Winograd (which reads groups of images).
inline bool conv2d_grad_images(const Conv2dShape& s) {
  return s.geom.n >= conv_detail::kFusedMinImages && !conv_detail::winograd_forward(s);
}

inline ConvWorkspaceSize conv2d_workspace_size(const Conv2dShape& s) {
  const ConvGeometry& g = s.geom;
  const bool pointwise = g.pointwise();
  if (g.n >= conv_detail::kFusedMinImages) {
    const index_t chunks = conv_detail::image_chunks(g.n);
    index_t rows = conv_detail::input_grad_as_conv(s) ? s.weight_size() : 0;
    if (conv_detail::winograd_forward(s))  // the transformed kernel of the forward or the input gradient
      rows = std::max({rows, winograd::kernel_size_bound(g.c, s.out_channels),
                       winograd::kernel_size_bound(s.out_channels, g.c)});
    // a Winograd weight gradient sums its transform (16 O C) per chunk
    const index_t part = conv_detail::winograd_weight_grad(s) ? std::max(s.weight_size(), winograd::kPoints * g.c * s.out_channels)
                                                              : s.weight_size();
    return {chunks * conv_detail::chunk_buffer_size(s), rows, chunks * part};
  }
  if (pointwise) return {};
  return {g.rows() * g.taps(), g.rows() * s.out_channels, 0};
}

// ---- forward -------------------------------------------------------------------------------

// y (N, O, P, Q) = epi(conv2d(x, weight)) per output channel (ConvEpilogue: + bias, an eval
// BatchNorm's affine, ReLU). x (N, C, H, W), weight (O, C/G, kh, kw), the epilogue's arrays (O),
// y: all C-contiguous, y must not alias the others. ws: conv2d_workspace_size(s), scratch only
// (nothing in it is kept for the backward, which recomputes the patches in cache).
template <class T>
void conv2d_forward(const T* x, const T* weight, const ConvEpilogue<T>& epi, T* y, const Conv2dShape& s,
                    ConvWorkspace<T> ws) {
  using gemm_detail::run_product_tiles;
  const ConvGeometry& g = s.geom;
  const index_t O = s.out_channels, G = s.groups, Og = s.group_out(), Cg = s.group_in(), Kg = s.group_taps();
  const index_t PQ = g.p * g.q;
  if (g.pointwise() && g.n < conv_detail::kFusedMinImages) {  // y[n]_grp (Og x HW) = W_grp (Og x Cg) x[n]_grp (Cg x HW)
    run_product_tiles<T>(g.n * G, Og, PQ, Cg, [&](index_t item, index_t r0, index_t r1, index_t c0, index_t c1) {
      const index_t n = item / G, grp = item % G;
      CMatMap<T> wm(weight + grp * Og * Cg + r0 * Cg, r1 - r0, Cg, Eigen::OuterStride<>(Cg));
      CMatMap<T> xm(x + (n * g.c + grp * Cg) * PQ + c0, Cg, c1 - c0, Eigen::OuterStride<>(PQ));
      T* yt = y + (n * O + grp * Og + r0) * PQ + c0;
      MatMap<T> ym(yt, r1 - r0, c1 - c0, Eigen::OuterStride<>(PQ));
      gemm_detail::gemm_tile(wm, xm, ym, false);
      if (!epi.empty())
        for (index_t r = r0; r < r1; ++r) epi.apply(yt + (r - r0) * PQ, c1 - c0, grp * Og + r);
    });
    return;
  }
  const index_t M = g.rows(), K = g.taps();
  if (g.n >= conv_detail::kFusedMinImages) {
    // Image by image, in chunks of images (one patch buffer each): an image's patches (PQ x K,
    // in L2; x[n] itself for a pointwise conv), then y[n]_grp (Og x PQ) = W_grp cols_n,grp^T
    // straight into NCHW (no reorder), then the epilogue while the image's output is in cache.
    const im2col_detail::InsideColumns inside(g);
    const index_t CHW = g.c * g.h * g.w, chunk = conv_detail::chunk_buffer_size(s);
    if (conv_detail::winograd_forward(s)) {  // the transformed kernel in ws.rows, then each image
      T* u = winograd::aligned_kernel(ws.rows);
      winograd::transform_weight(weight, O, g.c, false, u);
      conv_detail::for_each_image_group(
          g.n, conv_detail::winograd_group(s), PQ * K * O / 2, [&](index_t k, index_t, index_t n0, index_t n1) {
            winograd::conv3x3_images(x + n0 * CHW, n1 - n0, g.c, g.h, g.w, g.ph, g.pw, u, O, y + n0 * O * PQ, g.p,
                                     g.q, ws.cols + k * chunk, [&](index_t o, T* row, index_t len) {
                                       if (!epi.empty()) epi.apply(row, len, o);
                                     });
          });
      return;
    }
    const bool direct = conv_detail::direct_taps(s);
    conv_detail::for_each_image(g.n, PQ * K * Og, [&](index_t k, index_t, index_t n) {
      const T* cols = x + n * CHW;
      if (!g.pointwise()) {
        im2col_image_t(x + n * CHW, ws.cols + k * chunk, g, inside);
        cols = ws.cols + k * chunk;
      }
      for (index_t grp = 0; grp < G; ++grp) {
        T* yn = y + (n * O + grp * Og) * PQ;
        if (direct) {
          conv_direct::forward_image(cols + grp * Kg * PQ, Kg, PQ, weight + grp * Og * Kg, Og, yn,
                                     [&](index_t r, T* row, index_t len) {
                                       if (!epi.empty()) epi.apply(row, len, grp * Og + r);
                                     });
          continue;
        }
        CMatMap<T> wm(weight + grp * Og * Kg, Og, Kg, Eigen::OuterStride<>(Kg));
        CMatMap<T> cm(cols + grp * Kg * PQ, Kg, PQ, Eigen::OuterStride<>(PQ));
        MatMap<T> ym(yn, Og, PQ, Eigen::OuterStride<>(PQ));
        gemm_detail::gemm_tile(wm, cm, ym, false);
        if (!epi.empty())
          for (index_t r = 0; r < Og; ++r) epi.apply(yn + r * PQ, PQ, grp * Og + r);
      }
    });
    return;
  }
  im2col(x, ws.cols, g);
  // Y_grp (M x Og, columns grp*Og.. of rows) = cols_grp (M x Kg) W_grp^T; each finished tile goes
  // to y in NCHW (through the epilogue), in runs of rows that stay within one image.
  run_product_tiles<T>(G, M, Og, Kg, [&](index_t grp, index_t r0, index_t r1, index_t c0, index_t c1) {
    CMatMap<T> cm(ws.cols + r0 * K + grp * Kg, r1 - r0, Kg, Eigen::OuterStride<>(K));
    CMatMap<T> wm(weight + (grp * Og + c0) * Kg, c1 - c0, Kg, Eigen::OuterStride<>(Kg));
    MatMap<T> ym(ws.rows + r0 * O + grp * Og + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(O));
    gemm_detail::gemm_tile(cm, wm.transpose(), ym, false);
    const index_t ch = grp * Og + c0;
    for (index_t r = r0; r < r1;) {
      const index_t n = r / PQ, pq = r % PQ, len = std::min(r1 - r, PQ - pq);
      conv_detail::transpose(ws.rows + r * O + ch, O, y + (n * O + ch) * PQ + pq, PQ, len, c1 - c0,
                             epi.empty() ? nullptr : &epi, ch);
      r += len;
    }
  });
}

// y (N, O, P, Q) = conv2d(x, weight) + bias (bias (O) or null).
template <class T>
void conv2d_forward(const T* x, const T* weight, const T* bias, T* y, const Conv2dShape& s, ConvWorkspace<T> ws) {
  ConvEpilogue<T> epi;
  epi.bias = bias;
  conv2d_forward(x, weight, epi, y, s, ws);
}

// ---- backward ------------------------------------------------------------------------------

// Gradients of conv2d_forward for the upstream gradient grad_out (N, O, P, Q), all C-contiguous:
//   grad_input (N, C, H, W) = col2im([G_g W_g]_g), always overwritten;
//   grad_weight (O, C/G, kh, kw) (+)= [G_g^T cols_g]_g;  grad_bias (O) (+)= sums of grad_out,
// added to (+=) with accumulate_weight / accumulate_bias (the layers' contract), else overwritten.
// Null outputs are skipped. ws: conv2d_workspace_size(s), scratch only.
// grad_image (conv2d_grad_images(s) only, and no grad_bias): grad_out is null and (*grad_image)(n)
// returns image n's (O x P*Q) gradient, made on demand in a buffer of the calling thread that
// stays valid until its next call there (FusedConvBatchNormPool: BN's input gradient never goes
// to memory in full).
template <class T>
void conv2d_backward(const T* grad_out, const T* x, const T* weight, T* grad_input, T* grad_weight, T* grad_bias,
                     const Conv2dShape& s, ConvWorkspace<T> ws, bool accumulate_weight = false,
                     bool accumulate_bias = false, const std::function<const T*(index_t)>* grad_image = nullptr) {
  using gemm_detail::run_product_tiles;
  const ConvGeometry& g = s.geom;
  const index_t O = s.out_channels, G = s.groups, Og = s.group_out(), Cg = s.group_in(), Kg = s.group_taps();
  const index_t PQ = g.p * g.q;
  FASTNN_CHECK(!grad_image || (!grad_bias && conv2d_grad_images(s)), "conv2d_backward",
               "a gradient made image by image needs the image-by-image passes without Winograd or a bias");
  if (grad_bias) conv_detail::bias_grad(grad_out, grad_bias, g.n, O, PQ, accumulate_bias);
  if (g.pointwise() && g.n < conv_detail::kFusedMinImages) {
    if (grad_weight) {  // dW_grp (Og x Cg) (+)= sum_n g[n]_grp (Og x HW) x[n]_grp^T, n in order inside each tile
      run_product_tiles<T>(G, Og, Cg, g.n * PQ, [&](index_t grp, index_t r0, index_t r1, index_t c0, index_t c1) {
        MatMap<T> dw(grad_weight + (grp * Og + r0) * Cg + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(Cg));
        for (index_t n = 0; n < g.n; ++n) {
          CMatMap<T> gm(grad_out + (n * O + grp * Og + r0) * PQ, r1 - r0, PQ, Eigen::OuterStride<>(PQ));
          CMatMap<T> xm(x + (n * g.c + grp * Cg + c0) * PQ, c1 - c0, PQ, Eigen::OuterStride<>(PQ));
          gemm_detail::gemm_tile(gm, xm.transpose(), dw, accumulate_weight || n > 0);
        }
      });
    }
    if (grad_input) {  // dx[n]_grp (Cg x HW) = W_grp^T (Cg x Og) g[n]_grp (Og x HW)
      run_product_tiles<T>(g.n * G, Cg, PQ, Og, [&](index_t item, index_t r0, index_t r1, index_t c0, index_t c1) {
        const index_t n = item / G, grp = item % G;
        CMatMap<T> wm(weight + grp * Og * Cg + r0, Og, r1 - r0, Eigen::OuterStride<>(Cg));
        CMatMap<T> gm(grad_out + (n * O + grp * Og) * PQ + c0, Og, c1 - c0, Eigen::OuterStride<>(PQ));
        MatMap<T> dx(grad_input + (n * g.c + grp * Cg + r0) * PQ + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(PQ));
        gemm_detail::gemm_tile(wm.transpose(), gm, dx, false);
      });
    }
    return;
  }
  if (!grad_weight && !grad_input) return;
  const index_t M = g.rows(), K = g.taps();
  if (g.n >= conv_detail::kFusedMinImages) {
    // Image by image, in chunks of images (one patch buffer each), reading grad_out[n] in place
    // (no NHWC copy): the image's patches (x[n] itself for a pointwise conv), its chunk's partial
    // dW_grp (+)= g[n]_grp (Og x PQ) cols_n,grp (PQ x Kg), then its column gradient dcols_n,grp =
    // g[n]_grp^T W_grp over the patches and col2im into its planes (written to dx[n] directly for
    // a pointwise conv), all while in L2. The chunks are contiguous runs of images, their number
    // set by the batch size alone, and their partial sums are added in order: the same sums for
    // any thread count.
    const im2col_detail::InsideColumns inside(g);
    const index_t chunks = conv_detail::image_chunks(g.n), wsize = s.weight_size(), CHW = g.c * g.h * g.w;
    const bool pointwise = g.pointwise();
    // the input gradient as a convolution of grad_out (conv_detail::input_grad_as_conv), its
    // flipped kernel in ws.rows and its patches in the chunk's patch buffer (C / O times larger)
    const bool as_conv = grad_input && conv_detail::input_grad_as_conv(s);
    const ConvGeometry gt = conv_detail::transposed_geometry(s);
    const im2col_detail::InsideColumns inside_t(gt);
    const index_t KT = O * g.kh * g.kw, chunk = conv_detail::chunk_buffer_size(s);
    // the input gradient by Winograd: the flipped kernel's transform in ws.rows (instead of as_conv)
    const bool winograd_dx = grad_input && conv_detail::winograd_input_grad(s);
    T* u = winograd_dx ? winograd::aligned_kernel(ws.rows) : nullptr;
    if (winograd_dx) winograd::transform_weight(weight, O, g.c, true, u);
    else if (as_conv) conv_detail::flip_weight(weight, ws.rows, s);
    // Winograd shapes: groups of images (winograd_backward_group) share one set of 16 GEMMs; each chunk sums
    // the transformed weight gradient dU (16 O C) and the chunks' sums become dW at the end
    const bool winograd_dw = grad_weight && conv_detail::winograd_weight_grad(s);
    const index_t group = conv_detail::winograd_forward(s) ? conv_detail::winograd_backward_group(s) : 1;
    const index_t pstride = winograd_dw ? winograd::kPoints * O * g.c : wsize;
    const bool direct = conv_detail::direct_taps(s);
    conv_detail::for_each_image_group(g.n, group, PQ * K * Og * 2, [&](index_t k, index_t first, index_t n0, index_t n1) {
      T* buf = pointwise ? nullptr : ws.cols + k * chunk;
      T* part = ws.partial + k * pstride;
      if (winograd_dw)
        winograd::weight_grad_images(x + n0 * CHW, grad_out + n0 * O * PQ, n1 - n0, g.c, g.h, g.w, g.ph, g.pw, O, g.p,
                                     g.q, part, n0 > first, buf);
      if (winograd_dx)  // dx = the 3x3 convolution of grad_out with the flipped kernel, padding 2 - p
        winograd::conv3x3_images(grad_out + n0 * O * PQ, n1 - n0, O, g.p, g.q, 2 - g.ph, 2 - g.pw, u, g.c,
                                 grad_input + n0 * CHW, g.h, g.w, buf, [](index_t, T*, index_t) {});
      for (index_t n = n0; n < n1; ++n) {
        const T* gn = grad_image ? (*grad_image)(n) : grad_out + n * O * PQ;  // grad_out[n]
        if (grad_weight && !winograd_dw) {
          const T* cols = x + n * CHW;
          if (!pointwise) {
            im2col_image_t(x + n * CHW, buf, g, inside);
            cols = buf;
          }
          for (index_t grp = 0; grp < G; ++grp) {
            if (direct) {
              conv_direct::weight_grad_image(gn + grp * Og * PQ, cols + grp * Kg * PQ, Kg, PQ,
                                             part + grp * Og * Kg, Og, n > first);
              continue;
            }
            CMatMap<T> gm(gn + grp * Og * PQ, Og, PQ, Eigen::OuterStride<>(PQ));
            CMatMap<T> cm(cols + grp * Kg * PQ, Kg, PQ, Eigen::OuterStride<>(PQ));
            MatMap<T> pm(part + grp * Og * Kg, Og, Kg, Eigen::OuterStride<>(Kg));
            gemm_detail::gemm_tile(gm, cm.transpose(), pm, n > first);
          }
        }
        if (winograd_dx) continue;
        if (as_conv) {  // dx[n] = Wf im2col(g[n])
          im2col_image_t(gn, buf, gt, inside_t);
          CMatMap<T> wf(ws.rows, g.c, KT, Eigen::OuterStride<>(KT));
          CMatMap<T> cm(buf, KT, PQ, Eigen::OuterStride<>(PQ));
          MatMap<T> dx(grad_input + n * CHW, g.c, PQ, Eigen::OuterStride<>(PQ));
          gemm_detail::gemm_tile(wf, cm, dx, false);
        } else if (grad_input) {
          T* dcols = pointwise ? grad_input + n * CHW : buf;
          for (index_t grp = 0; grp < G; ++grp) {
            CMatMap<T> gm(gn + grp * Og * PQ, Og, PQ, Eigen::OuterStride<>(PQ));
            CMatMap<T> wm(weight + grp * Og * Kg, Og, Kg, Eigen::OuterStride<>(Kg));
            MatMap<T> dc(dcols + grp * Kg * PQ, Kg, PQ, Eigen::OuterStride<>(PQ));
            gemm_detail::gemm_tile(wm.transpose(), gm, dc, false);
          }
          if (!pointwise) col2im_image_t(buf, grad_input + n * CHW, g, inside);
        }
      }
    });
    if (grad_weight) {  // dW (or dU) (+)= part_0 + part_1 + ... in chunk order, each element by one thread
      const index_t total = winograd_dw ? pstride : wsize;
      T* sum_to = winograd_dw ? ws.partial : grad_weight;  // dU summed into chunk 0's
      const bool acc = !winograd_dw && accumulate_weight;
      parallel_for(total, chunks, [&](index_t e0, index_t e1) {
        for (index_t e = e0; e < e1; ++e) {
          T sum = ws.partial[e];
          for (index_t k = 1; k < chunks; ++k) sum += ws.partial[k * pstride + e];
          sum_to[e] = acc ? sum_to[e] + sum : sum;
        }
      });
      if (winograd_dw) winograd::weight_from_transform(ws.partial, O, g.c, grad_weight, accumulate_weight);
    }
    return;
  }
  // G = grad_out in NHWC (M x O), one image per thread
  parallel_for(g.n, O * PQ, [&](index_t n0, index_t n1) {
    for (index_t n = n0; n < n1; ++n)
      conv_detail::transpose(grad_out + n * O * PQ, PQ, ws.rows + n * PQ * O, O, O, PQ);
  });
  if (grad_weight) {  // dW_grp (Og x Kg) (+)= G_grp^T (Og x M) cols_grp (M x Kg)
    im2col(x, ws.cols, g);
    run_product_tiles<T>(G, Og, Kg, M, [&](index_t grp, index_t r0, index_t r1, index_t c0, index_t c1) {
      CMatMap<T> gm(ws.rows + grp * Og + r0, M, r1 - r0, Eigen::OuterStride<>(O));
      CMatMap<T> cm(ws.cols + grp * Kg + c0, M, c1 - c0, Eigen::OuterStride<>(K));
      MatMap<T> dw(grad_weight + (grp * Og + r0) * Kg + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(Kg));
      gemm_detail::gemm_tile(gm.transpose(), cm, dw, accumulate_weight);
    });
  }
  if (grad_input) {  // dcols_grp (M x Kg, into ws.cols: cols is no longer needed) = G_grp W_grp; dx = col2im
    run_product_tiles<T>(G, M, Kg, Og, [&](index_t grp, index_t r0, index_t r1, index_t c0, index_t c1) {
      CMatMap<T> gm(ws.rows + r0 * O + grp * Og, r1 - r0, Og, Eigen::OuterStride<>(O));
      CMatMap<T> wm(weight + grp * Og * Kg + c0, Og, c1 - c0, Eigen::OuterStride<>(Kg));
      MatMap<T> dc(ws.cols + r0 * K + grp * Kg + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(K));
      gemm_detail::gemm_tile(gm, wm, dc, false);
    });
    col2im(ws.cols, grad_input, g);
  }
}

}  // namespace fastnn
