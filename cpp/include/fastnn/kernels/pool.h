// 2-D pooling over NCHW feature maps with PyTorch's semantics (reference/pool.py is the
// specification): max_pool2d (argmax kept as the flat index h*W + w in the input plane, -1 for a
// dilated window with no in-bounds tap), avg_pool2d (padding, ceil_mode, count_include_pad,
// divisor_override), adaptive_avg_pool2d (torch's start = floor(p H / P), end = ceil((p+1) H / P))
// and global average pooling, forward and backward, and max_pool2d_gather (the R-operator's
// forward of a max pool).
// Every pass gives each (n, c) plane to one thread and visits it in a fixed order, so results are
// bit-identical for any thread count, and the backward scatters never race. The backward passes
// overwrite grad_input. The BENCH.md CNN's non-overlapping 2x2 stride-2 max pool has its own
// forward (pair maxima in one flat pass on even widths, the four taps unrolled otherwise).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fastnn/common.h"
#include "fastnn/kernels/blockwise.h"
#include "fastnn/kernels/im2col.h"

namespace fastnn {

namespace pool_detail {

inline index_t floor_div(index_t a, index_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// PyTorch's pooling_output_shape for one axis: may be < 1 (the caller reports it).
inline index_t axis_size(index_t n, index_t k, index_t s, index_t pad, index_t d, bool ceil_mode) {
  index_t out = floor_div(n + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (out - 1) * s >= n + pad) --out;  // the last window would start in the right padding
  return out;
}

inline std::string pair_str(index_t a, index_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }
inline std::string nchw_str(index_t n, index_t c, index_t h, index_t w) {
  return "(" + std::to_string(n) + ", " + std::to_string(c) + ", " + pair_str(h, w).substr(1);
}

// For each output position of one axis, the taps i in [lo, hi) of its (dilated) window that fall
// inside [0, n): tap i reads index p s - pad + i d.
struct TapRange {
  std::vector<index_t> lo, hi;
  TapRange(index_t out, index_t n, index_t k, index_t s, index_t pad, index_t d) : lo(out), hi(out) {
    for (index_t p = 0; p < out; ++p) {
      const index_t h0 = p * s - pad;
      index_t a = h0 >= 0 ? 0 : (-h0 + d - 1) / d;
      index_t b = h0 > n - 1 ? 0 : (n - 1 - h0) / d + 1;
      a = std::min(a, k), b = std::min(b, k);
      lo[p] = a, hi[p] = std::max(a, b);
    }
  }
};

// best, at = v, k if v beats best in max_pool2d's scan (v > best, or v is NaN, or it is the
// window's first in-bounds tap: at < 0), without a branch:
// the comparison becomes a mask that selects the bits. Random data made the branches of
// `if (v > best || isnan(v))` mispredict about once per window (3x slower on the CNN's pool).
template <class T, class I>
inline void take_if_better(T v, I k, T& best, I& at) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(U) == sizeof(T), "float32 or float64");
  const bool t = (v > best) | (v != v) | (at < 0);  // v != v: NaN; | so that all are evaluated
  const U mask = U(0) - U(t);
  U b, n;
  std::memcpy(&b, &best, sizeof(T));
  std::memcpy(&n, &v, sizeof(T));
  b = (n & mask) | (b & ~mask);
  std::memcpy(&best, &b, sizeof(T));
  const I imask = I(0) - I(t);
  at = (k & imask) | (at & ~imask);
}

// Pairs per chunk of the even-width 2x2 passes (their stack buffers: 8-16 KB).
constexpr index_t kPairChunk = 1024;

}  // namespace pool_detail

// Validates the window arguments alone (any input): positive kernel, stride and dilation, and
// padding of at most half the kernel. Errors name `op`.
inline void check_pool_window(index_t kh, index_t kw, index_t sh, index_t sw, index_t ph, index_t pw, index_t dh,
                              index_t dw, const char* op) {
  constexpr index_t kMax = index_t(1) << 31;
  for (index_t v : {kh, kw, sh, sw, dh, dw})
    FASTNN_CHECK(v >= 1 && v <= kMax, op, "kernel_size, stride and dilation must be in [1, 2^31], got " << v);
  FASTNN_CHECK(ph >= 0 && pw >= 0, op, "padding must be >= 0, got " << pool_detail::pair_str(ph, pw));
  // PyTorch's pool2d_shape_check: half the kernel without its dilation
  FASTNN_CHECK(ph <= kh / 2 && pw <= kw / 2, op,
               "padding should be at most half of kernel_size, got padding=" << pool_detail::pair_str(ph, pw)
                                                                             << ", kernel_size="
                                                                             << pool_detail::pair_str(kh, kw));
}

// Validates a pooling window on an (N, C, H, W) input and returns its geometry (ConvGeometry with
// pooling's output size). Errors name `op` and read as the reference's.
inline ConvGeometry pool_geometry(index_t n, index_t c, index_t h, index_t w, index_t kh, index_t kw, index_t sh,
                                  index_t sw, index_t ph, index_t pw, index_t dh, index_t dw, bool ceil_mode,
                                  const char* op) {
  constexpr index_t kMax = index_t(1) << 31;
  for (index_t v : {n, c, h, w})
    FASTNN_CHECK(v >= 1 && v <= kMax, op,
                 "input sizes must be in [1, 2^31], got " << pool_detail::nchw_str(n, c, h, w));
  check_pool_window(kh, kw, sh, sw, ph, pw, dh, dw, op);
  ConvGeometry g;
  g.n = n, g.c = c, g.h = h, g.w = w, g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw;
  g.dh = dh, g.dw = dw;
  g.p = pool_detail::axis_size(h, kh, sh, ph, dh, ceil_mode);
  g.q = pool_detail::axis_size(w, kw, sw, pw, dw, ceil_mode);
  FASTNN_CHECK(g.p >= 1 && g.q >= 1, op,
               "input " << pool_detail::nchw_str(n, c, h, w) << " with kernel_size=" << pool_detail::pair_str(kh, kw)
                        << ", padding=" << pool_detail::pair_str(ph, pw) << ", dilation="
                        << pool_detail::pair_str(dh, dw) << " gives output size " << pool_detail::pair_str(g.p, g.q));
  FASTNN_CHECK(double(n) * double(c) * std::max(double(h) * double(w), double(g.p) * double(g.q)) < 0x1p60, op,
               "the input or output is too large");
  return g;
}

// The non-overlapping 2x2 stride-2 window whose taps are all inside the input (the CNN's pool).
inline bool pool_is_2x2_tiling(const ConvGeometry& g) {
  return g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1 &&
         2 * g.p <= g.h && 2 * g.q <= g.w;
}

namespace pool_detail {

// The 2x2 tiling on an even width whose row pair (W pairs: Q from each row) fits a chunk: the
// pairs of a run of rows are one flat array (the fast passes of max_pool2d and avg_pool2d).
inline bool is_even_2x2(const ConvGeometry& g) {
  return pool_is_2x2_tiling(g) && g.w == 2 * g.q && g.w <= kPairChunk;
}

// Lanes of max_pool_even_2x2_plane's row-pair pass: one 64-byte vector of T, a compile-time count
// so that the pass over a row's Q outputs (14 or 7 on the CNN) is a few whole-vector operations.
template <class T>
constexpr index_t kRowLanes = 64 / index_t(sizeof(T));

// max_pool_even_2x2_plane's tap of a window whose maximum is not > 0.
constexpr std::uint8_t kNoPositiveTap = 4;

// The identity: max_pool_even_2x2_plane's `load` for the pool's own input.
struct Identity {
  template <class T>
  T operator()(T v) const { return v; }
};

// max_pool2d_forward of one plane (H x W) on is_even_2x2's geometry g (even widths: the CNN's 28
// and 14) of the values load(xp[s]) (Identity: the input itself; BatchNorm -> ReLU -> MaxPool's
// output pass, batchnorm_activation.h, passes relu(z) computed here, so it is never stored).
// The horizontal pairs (2i, 2i+1) of a run of rows are one flat array, so the first pass, the
// maximum of each pair, is one long vectorized loop (into a stack buffer, chunks of whole row
// pairs); the second combines the pairs of rows 2p and 2p + 1 in whole vectors of kRowLanes
// outputs starting at each row's first, into a second buffer whose rows overlap: the lanes past a
// row's Q outputs are overwritten by the next row's (the buffers' tails are padding), and the
// chunk's outputs are then copied out in one flat copy. (A loop of Q per row, 14 or 7 on the CNN,
// ran mostly in its scalar tail: 7.5% of a fit batch at 1 thread on Zen 4.) The selection is
// max_pool2d's scan, which compares the taps in a total order (NaN last-wins, ties first-wins), so
// pairing them first gives the same maximum and index.
// With a load, at_max and taps (PQ values each, both or neither) receive each window's input value
// at its argmax (xp's, before load) and the argmax's tap in the window (0, 1: top row; 2, 3: bottom
// row), or kNoPositiveTap where the maximum is not > 0 (after a ReLU: no gradient passes), for a
// backward that works at the pooled size (batchnorm_activation.h's fused BN -> ReLU -> pool).
template <class T, class I, class Load = Identity>
void max_pool_even_2x2_plane(const T* xp, T* yp, I* ip, const ConvGeometry& g, const Load& load = Load{},
                             T* at_max = nullptr, std::uint8_t* taps = nullptr) {
  constexpr bool carry = !std::is_same_v<std::decay_t<Load>, Identity>;  // a load: at_max and taps too
  constexpr index_t V = kRowLanes<T>, CV = carry ? kPairChunk + V : 1, CO = carry ? kPairChunk / 2 + V : 1;
  const index_t W = g.w, P = g.p, Q = g.q;
  const index_t rows_per_chunk = kPairChunk / W;  // row pairs, >= 1 (is_even_2x2)
  T pm[kPairChunk + V], om[kPairChunk / 2 + V];
  I pk[kPairChunk + V], ok[kPairChunk / 2 + V];
  // with a load: load()'s values of a chunk, the pair pass's input at the pick, and the row pass's
  T zb[carry ? 2 * kPairChunk : 1], pr[CV], oa[CO];
  I ot[CO];
  for (index_t p0 = 0; p0 < P; p0 += rows_per_chunk) {
    const index_t p1 = std::min(P, p0 + rows_per_chunk), pairs = (p1 - p0) * W;  // 2 rows of Q pairs each
    const T* __restrict raw = xp + 2 * p0 * W;
    const T* __restrict src = raw;
    if constexpr (carry) {
      // the chunk's values first, in their own loop: with load() inside the pair loop (a ReLU's
      // select beside the pair's), GCC 12 vectorizes neither (measured: 5x slower)
      for (index_t s = 0; s < 2 * pairs; ++s) zb[s] = load(raw[s]);
      src = zb;
    }
    for (index_t i = 0; i < pairs; ++i) {
      T m = src[2 * i];
      I k = 0;
      take_if_better(src[2 * i + 1], I(1), m, k);
      pm[i] = m, pk[i] = k;
      if constexpr (carry) {
        const T r0 = raw[2 * i], r1 = raw[2 * i + 1];
        pr[i] = k ? r1 : r0;
      }
    }
    std::fill(pm + pairs, pm + pairs + V, T(0));  // read by the last row's lanes past Q, never used
    std::fill(pk + pairs, pk + pairs + V, I(0));
    if constexpr (carry) std::fill(pr + pairs, pr + pairs + V, T(0));
    for (index_t p = p0; p < p1; ++p) {
      for (index_t q0 = 0; q0 < Q; q0 += V) {
        const index_t at = (p - p0) * W + q0, out = (p - p0) * Q + q0;
        const T* __restrict top = pm + at;  // row 2p's pairs; Q further, row 2p + 1's
        const I* __restrict kt = pk + at;
        T* __restrict yr = om + out;
        I* __restrict ir = ok + out;
        const I base = static_cast<I>(2 * p * W + 2 * q0);
        for (index_t l = 0; l < V; ++l) {
          T m = top[l];
          I k = kt[l];
          take_if_better(top[Q + l], static_cast<I>(kt[Q + l] + W), m, k);
          yr[l] = m, ir[l] = base + static_cast<I>(2 * l) + k;
          if constexpr (carry) {
            const bool bottom = k >= static_cast<I>(W);
            const T rt = pr[at + l], rb = pr[at + Q + l];
            oa[out + l] = bottom ? rb : rt;
            ot[out + l] = m > T(0) ? (bottom ? I(2) : I(0)) + (k & I(1)) : I(kNoPositiveTap);
          }
        }
      }
    }
    std::copy(om, om + (p1 - p0) * Q, yp + p0 * Q);
    std::copy(ok, ok + (p1 - p0) * Q, ip + p0 * Q);
    if constexpr (carry) {
      if (at_max) std::copy(oa, oa + (p1 - p0) * Q, at_max + p0 * Q);
      if (taps)
        for (index_t o = 0; o < (p1 - p0) * Q; ++o) taps[p0 * Q + o] = static_cast<std::uint8_t>(ot[o]);
    }
  }
}

}  // namespace pool_detail

// ---- max pooling ---------------------------------------------------------------------------

// y (N, C, P, Q) = the maximum of each window's in-bounds taps, indices (same shape) = h*W + w of
// the first tap reaching it in (i, j) order; a NaN wins over everything, later NaNs over earlier
// ones (PyTorch's `val > max || isnan(val)`); a window without an in-bounds tap is -inf with -1.
// I: the index type (int64 for torch's indices; a layer may keep int32 when H*W < 2^31).
template <class T, class I>
void max_pool2d_forward(const T* x, T* y, I* indices, const ConvGeometry& g) {
  const index_t H = g.h, W = g.w, P = g.p, Q = g.q, HW = H * W, PQ = P * Q;
  if (pool_detail::is_even_2x2(g)) {
    parallel_for(g.n * g.c, PQ * 4, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b)
        pool_detail::max_pool_even_2x2_plane(x + b * HW, y + b * PQ, indices + b * PQ, g);
    });
    return;
  }
  if (pool_is_2x2_tiling(g)) {  // odd widths (or very wide rows): the window's four taps unrolled
    parallel_for(g.n * g.c, PQ * 4, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        const T* xp = x + b * HW;
        for (index_t p = 0; p < P; ++p) {
          const T* r0 = xp + 2 * p * W;
          const T* r1 = r0 + W;
          T* yr = y + b * PQ + p * Q;
          I* ir = indices + b * PQ + p * Q;
          const I base = static_cast<I>(2 * p * W);
          for (index_t q = 0; q < Q; ++q) {
            T m = r0[2 * q];
            I k = 0;
            pool_detail::take_if_better(r0[2 * q + 1], I(1), m, k);
            pool_detail::take_if_better(r1[2 * q], static_cast<I>(W), m, k);
            pool_detail::take_if_better(r1[2 * q + 1], static_cast<I>(W + 1), m, k);
            yr[q] = m;
            ir[q] = base + static_cast<I>(2 * q) + k;
          }
        }
      }
    });
    return;
  }
  // Row by row of the output, tap by tap of the window in (i, j) order, over the output columns
  // whose tap is in bounds (im2col's InsideColumns): unit- or sw-strided runs instead of one
  // short loop per window; the row of y and indices is the running maximum.
  const pool_detail::TapRange rows(P, H, g.kh, g.sh, g.ph, g.dh);
  const im2col_detail::InsideColumns inside(g);
  parallel_for(g.n * g.c, PQ * g.kh * g.kw, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const T* xp = x + b * HW;
      for (index_t p = 0; p < P; ++p) {
        T* yr = y + b * PQ + p * Q;
        I* ir = indices + b * PQ + p * Q;
        std::fill(yr, yr + Q, -std::numeric_limits<T>::infinity());  // a window without an in-bounds tap
        std::fill(ir, ir + Q, I(-1));
        for (index_t i = rows.lo[p]; i < rows.hi[p]; ++i) {
          const index_t h = p * g.sh - g.ph + i * g.dh;
          const T* row = xp + h * W;
          for (index_t j = 0; j < g.kw; ++j) {
            const index_t off = j * g.dw - g.pw, sw = g.sw, q1 = inside.hi[j];
            const I first = static_cast<I>(h * W + off);
            T* __restrict ym = yr;  // locals, so that the stores alias nothing and the loop vectorizes
            I* __restrict im = ir;
            for (index_t q = inside.lo[j]; q < q1; ++q)
              pool_detail::take_if_better(row[q * sw + off], first + static_cast<I>(q * sw), ym[q], im[q]);
          }
        }
      }
    }
  });
}

// grad_input (N, C, H, W) = 0 except grad_input[n, c].flat[indices[n, c, p, q]] += grad_out[n, c, p, q],
// in (p, q) order (index -1 adds nothing). indices must be -1 or in [0, H*W) (the bindings check
// caller-given ones). Each plane is zeroed just before its scatter, while it is in L1/L2, so each
// cache line still goes to memory once: measured on the CNN's pools, a pass that writes every
// element once (the gradient or 0 by the argmax's position in its 2x2 window) was ~20x slower
// (a select per element on interleaved stores, not vectorized).
namespace pool_detail {
// One plane of max_pool2d_backward: dp (HW) = 0, then gp[o] (PQ) added at ip[o] in order.
template <class T, class I>
void max_pool_backward_plane(const T* gp, const I* ip, T* dp, index_t HW, index_t PQ) {
  std::fill(dp, dp + HW, T(0));  // the plane stays in L1/L2 for the scatter that follows
  for (index_t o = 0; o < PQ; ++o)
    if (ip[o] >= 0) dp[ip[o]] += gp[o];
}
}  // namespace pool_detail

template <class T, class I>
void max_pool2d_backward(const T* grad_out, const I* indices, T* grad_input, const ConvGeometry& g) {
  const index_t HW = g.h * g.w, PQ = g.p * g.q;
  parallel_for(g.n * g.c, HW + PQ, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b)
      pool_detail::max_pool_backward_plane(grad_out + b * PQ, indices + b * PQ, grad_input + b * HW, HW, PQ);
  });
}

// y[n, c, p, q] = x[n, c].flat[indices[n, c, p, q]] (0 for index -1): the values at a max pool's
// kept argmax, i.e. the pool's linearization at its last input, as the R-operator applies it to
// R{x} (max_pool2d_backward is its adjoint). indices as max_pool2d_backward's.
template <class T, class I>
void max_pool2d_gather(const T* x, const I* indices, T* y, const ConvGeometry& g) {
  const index_t HW = g.h * g.w, PQ = g.p * g.q;
  parallel_for(g.n * g.c, PQ, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const T* xp = x + b * HW;
      const I* ip = indices + b * PQ;
      T* __restrict yp = y + b * PQ;
      for (index_t o = 0; o < PQ; ++o) yp[o] = ip[o] >= 0 ? xp[ip[o]] : T(0);
    }
  });
}

// ---- average pooling (fixed and adaptive windows) ------------------------------------------

// The windows of one axis: output p averages input indices [start[p], end[p]) and counts
// size[p] along this axis in its divisor.
struct PoolWindows {
  std::vector<index_t> start, end, size;

  // avg_pool2d (PyTorch's avg_pool2d_out_frame): a window clipped to the input, its size counting
  // the padding (up to the right padding in ceil_mode) when count_include_pad.
  static PoolWindows fixed(index_t out, index_t n, index_t k, index_t s, index_t pad, bool count_include_pad) {
    PoolWindows a;
    for (index_t p = 0; p < out; ++p) {
      const index_t s0 = p * s - pad, e0 = std::min(s0 + k, n + pad);
      const index_t st = std::max<index_t>(s0, 0), en = std::min(e0, n);
      a.start.push_back(st), a.end.push_back(en), a.size.push_back(count_include_pad ? e0 - s0 : en - st);
    }
    return a;
  }
  // adaptive_avg_pool2d (PyTorch's start_index / end_index): [floor(p n / out), ceil((p+1) n / out)).
  static PoolWindows adaptive(index_t out, index_t n) {
    PoolWindows a;
    for (index_t p = 0; p < out; ++p) {
      const index_t st = (p * n) / out, en = ((p + 1) * n + out - 1) / out;
      a.start.push_back(st), a.end.push_back(en), a.size.push_back(en - st);
    }
    return a;
  }
  index_t count() const { return static_cast<index_t>(start.size()); }
};

namespace pool_detail {

// One window covering the whole plane (global average pooling): a vectorized sum, and a fill back.
inline bool is_global(const PoolWindows& rows, const PoolWindows& cols, index_t h, index_t w) {
  return rows.count() == 1 && cols.count() == 1 && rows.start[0] == 0 && rows.end[0] == h && cols.start[0] == 0 &&
         cols.end[0] == w && rows.size[0] == h && cols.size[0] == w;
}

}  // namespace pool_detail

// y[b, p, q] = (sum of x[b] over rows [start, end) x cols [start, end)) / divisor for the
// planes b < planes of h x w inputs; divisor = divisor_override if nonzero, else
// rows.size[p] * cols.size[q]. `fixed`: avg_pool2d's geometry when the windows are its (then each
// output row sums tap by tap over the columns whose tap is in bounds, strided runs over q instead
// of one short loop per window), null for adaptive windows.
template <class T>
void window_mean_forward(const T* x, T* y, index_t planes, index_t h, index_t w, const PoolWindows& rows,
                         const PoolWindows& cols, index_t divisor_override = 0, const ConvGeometry* fixed = nullptr) {
  const index_t P = rows.count(), Q = cols.count(), HW = h * w, PQ = P * Q;
  if (!divisor_override && pool_detail::is_global(rows, cols, h, w)) {
    parallel_for(planes, HW, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) y[b] = blockwise::sum(x + b * HW, HW) / static_cast<T>(HW);
    });
    return;
  }
  auto divisor = [&](index_t p, index_t q) {
    return static_cast<T>(divisor_override ? divisor_override : rows.size[p] * cols.size[q]);
  };
  if (fixed && pool_detail::is_even_2x2(*fixed)) {
    // AvgPool2d(2) on even widths (a DenseNet transition): the sums of the horizontal pairs of a
    // run of rows in one flat vectorized pass (as max_pool2d's), then the two rows' pairs.
    const index_t rows_per_chunk = pool_detail::kPairChunk / w;  // >= 1 (is_even_2x2)
    parallel_for(planes, HW, [&](index_t b0, index_t b1) {
      T ps[pool_detail::kPairChunk];
      for (index_t b = b0; b < b1; ++b) {
        for (index_t p0 = 0; p0 < P; p0 += rows_per_chunk) {
          const index_t p1 = std::min(P, p0 + rows_per_chunk), pairs = (p1 - p0) * w;
          const T* __restrict src = x + b * HW + 2 * p0 * w;
          for (index_t i = 0; i < pairs; ++i) ps[i] = src[2 * i] + src[2 * i + 1];
          for (index_t p = p0; p < p1; ++p) {
            const T* top = ps + (p - p0) * w;
            T* __restrict yr = y + b * PQ + p * Q;
            for (index_t q = 0; q < Q; ++q) yr[q] = (top[q] + top[Q + q]) / divisor(p, q);
          }
        }
      }
    });
    return;
  }
  if (fixed) {
    const ConvGeometry& g = *fixed;
    const im2col_detail::InsideColumns inside(g);
    parallel_for(planes, PQ * g.kh * g.kw, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        const T* xp = x + b * HW;
        for (index_t p = 0; p < P; ++p) {
          T* yr = y + b * PQ + p * Q;
          std::fill(yr, yr + Q, T(0));
          for (index_t hh = rows.start[p]; hh < rows.end[p]; ++hh) {
            const T* row = xp + hh * w;
            for (index_t j = 0; j < g.kw; ++j) {
              const index_t off = j - g.pw;
              for (index_t q = inside.lo[j]; q < inside.hi[j]; ++q) yr[q] += row[q * g.sw + off];
            }
          }
          for (index_t q = 0; q < Q; ++q) yr[q] /= divisor(p, q);
        }
      }
    });
    return;
  }
  parallel_for(planes, HW + PQ, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const T* xp = x + b * HW;
      for (index_t p = 0; p < P; ++p) {
        for (index_t q = 0; q < Q; ++q) {
          T sum = T(0);
          for (index_t hh = rows.start[p]; hh < rows.end[p]; ++hh)
            for (index_t ww = cols.start[q]; ww < cols.end[q]; ++ww) sum += xp[hh * w + ww];
          y[b * PQ + p * Q + q] = sum / divisor(p, q);
        }
      }
    }
  });
}

// The adjoint: grad_input[b] = 0 plus grad_out[b, p, q] / divisor added to each tap of window (p, q)
// (`fixed` as in window_mean_forward).
template <class T>
void window_mean_backward(const T* grad_out, T* grad_input, index_t planes, index_t h, index_t w,
                          const PoolWindows& rows, const PoolWindows& cols, index_t divisor_override = 0,
                          const ConvGeometry* fixed = nullptr) {
  const index_t P = rows.count(), Q = cols.count(), HW = h * w, PQ = P * Q;
  if (!divisor_override && pool_detail::is_global(rows, cols, h, w)) {
    parallel_for(planes, HW, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        const T v = grad_out[b] / static_cast<T>(HW);
        std::fill(grad_input + b * HW, grad_input + (b + 1) * HW, v);
      }
    });
    return;
  }
  auto divisor = [&](index_t p, index_t q) {
    return static_cast<T>(divisor_override ? divisor_override : rows.size[p] * cols.size[q]);
  };
  if (fixed && pool_detail::is_even_2x2(*fixed)) {
    // Each input element is in one window: written once, g / divisor to both taps of each pair
    // (stores that vectorize), and 0 in an odd last row that no window covers.
    parallel_for(planes, HW, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        T* dp = grad_input + b * HW;
        for (index_t p = 0; p < P; ++p) {
          const T* gr = grad_out + b * PQ + p * Q;
          T* __restrict r0 = dp + 2 * p * w;
          T* __restrict r1 = r0 + w;
          for (index_t q = 0; q < Q; ++q) {
            const T v = gr[q] / divisor(p, q);
            r0[2 * q] = v, r0[2 * q + 1] = v, r1[2 * q] = v, r1[2 * q + 1] = v;
          }
        }
        std::fill(dp + 2 * P * w, dp + HW, T(0));
      }
    });
    return;
  }
  if (fixed) {
    const ConvGeometry& g = *fixed;
    const im2col_detail::InsideColumns inside(g);
    parallel_for(planes, PQ * g.kh * g.kw + HW, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        T* dp = grad_input + b * HW;
        std::fill(dp, dp + HW, T(0));
        for (index_t p = 0; p < P; ++p) {
          const T* gr = grad_out + b * PQ + p * Q;
          for (index_t hh = rows.start[p]; hh < rows.end[p]; ++hh) {
            T* row = dp + hh * w;
            for (index_t j = 0; j < g.kw; ++j) {
              const index_t off = j - g.pw;
              for (index_t q = inside.lo[j]; q < inside.hi[j]; ++q) row[q * g.sw + off] += gr[q] / divisor(p, q);
            }
          }
        }
      }
    });
    return;
  }
  parallel_for(planes, HW + PQ, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      T* dp = grad_input + b * HW;
      std::fill(dp, dp + HW, T(0));
      for (index_t p = 0; p < P; ++p) {
        for (index_t q = 0; q < Q; ++q) {
          const T v = grad_out[b * PQ + p * Q + q] / divisor(p, q);
          for (index_t hh = rows.start[p]; hh < rows.end[p]; ++hh)
            for (index_t ww = cols.start[q]; ww < cols.end[q]; ++ww) dp[hh * w + ww] += v;
        }
      }
    }
  });
}

// avg_pool2d's windows for a geometry from pool_geometry (dilation 1).
inline PoolWindows avg_pool_rows(const ConvGeometry& g, bool count_include_pad) {
  return PoolWindows::fixed(g.p, g.h, g.kh, g.sh, g.ph, count_include_pad);
}
inline PoolWindows avg_pool_cols(const ConvGeometry& g, bool count_include_pad) {
  return PoolWindows::fixed(g.q, g.w, g.kw, g.sw, g.pw, count_include_pad);
}

}  // namespace fastnn
