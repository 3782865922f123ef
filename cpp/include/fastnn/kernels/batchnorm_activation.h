// Batch normalization followed by ReLU and optionally inverted dropout, in BatchNorm's passes:
//   forward:  z = BN(x) (batchnorm.h, train or eval),  r = relu(z),  y = r * keep / (1 - p)
//   backward: g_z = [z > 0] * keep / (1 - p) * g,  then BN's backward on g_z
// The ReLU and the dropout cost no pass of their own: they are applied where the normalize pass
// writes z, and their derivative where BN's two backward passes read g. The backward learns where
// the ReLU passed (z > 0; y == 0 cannot tell after dropout) in one of two ways:
//   - mask bytes written by the forward (needed with dropout, which must remember its draws):
//       bit 0 (kReluPass): z > 0;  bit 1 (kKept): dropout kept the element (always set without dropout);
//   - without dropout, no mask at all: z is recomputed from x, which BN's backward reads anyway, as
//     (x - z_mean) * z_scale + z_shift with the per-channel coefficients and the expression the
//     forward used, so it is the same value, bit for bit (measured on (128, 32, 28, 28) floats:
//     with the mask BatchNorm2d+ReLU forward+backward took 1.5x BatchNorm2d's time, recomputing 1.1x).
// The keep decision is dropout.h's, element for element (the flat C-order index of x under
// rng::stream_key(seed, step)), and every value is computed with the same expression as in the
// separate kernels, so BatchNorm -> ReLU -> Dropout layers and this fused op give bit-identical
// outputs and gradients. reference/batchnorm_activation.py composes the separate references.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "fastnn/common.h"
#include "fastnn/kernels/batchnorm.h"
#include "fastnn/kernels/dropout.h"
#include "fastnn/kernels/pool.h"
#include "fastnn/kernels/rng.h"

namespace fastnn {

constexpr std::uint8_t kReluPass = 1;  // mask bit: z > 0
constexpr std::uint8_t kKept = 2;      // mask bit: kept by dropout
// batch_norm_relu_max_pool2d_forward_train's code of a window whose ReLU passes no gradient
constexpr std::uint8_t kReluClosedWindow = pool_detail::kNoPositiveTap;

namespace bn_detail {

// relu(z) as relu_forward computes it (NaN stays NaN) and the mask bit of its derivative
// (relu_backward passes the gradient where the output is > 0, which is never the case for NaN).
template <class T> inline T relu_of(T z) { return z < T(0) ? T(0) : z; }
template <class T> inline std::uint8_t relu_bit(T z) { return z > T(0) ? kReluPass : 0; }

// y = relu((x - m) a + b) on one tile (as column_normalize), without dropout; the mask bytes too
// unless mask is null. Rows of x are x_ld apart, those of y and mask ld.
template <class T>
void column_normalize_relu(const T* __restrict x, T* __restrict y, std::uint8_t* __restrict mask, index_t ld,
                           index_t N, index_t L, const T* __restrict m, const T* __restrict a,
                           const T* __restrict b, index_t x_ld) {
  for (index_t i = 0; i < N; ++i) {
    const T* __restrict xr = x + i * x_ld;
    T* __restrict yr = y + i * ld;
    if (!mask) {
      for (index_t j = 0; j < L; ++j) yr[j] = relu_of((xr[j] - m[j]) * a[j] + b[j]);
      continue;
    }
    std::uint8_t* __restrict mr = mask + i * ld;
    for (index_t j = 0; j < L; ++j) {
      const T z = (xr[j] - m[j]) * a[j] + b[j];
      yr[j] = relu_of(z);
      mr[j] = std::uint8_t(relu_bit(z) | kKept);
    }
  }
}

// y = relu((x - m) a + b) * keep / (1 - p) on one tile; `first` is the flat index of the tile's
// element (0, 0). The counter of element k is key + (k + 1) kGamma, advanced by addition along a row
// as in dropout_forward_range. 512-bit vectors for the 64-bit hash, as there (FASTNN_DROPOUT_512).
template <class T>
FASTNN_DROPOUT_512 void column_normalize_relu_dropout(const T* __restrict x, T* __restrict y,
                                                      std::uint8_t* __restrict mask, index_t ld, index_t N, index_t L,
                                                      const T* __restrict m, const T* __restrict a,
                                                      const T* __restrict b, index_t first, std::uint64_t key,
                                                      std::uint64_t threshold, T scale) {
  for (index_t i = 0; i < N; ++i) {
    const T* __restrict xr = x + i * ld;
    T* __restrict yr = y + i * ld;
    std::uint8_t* __restrict mr = mask + i * ld;
    std::uint64_t counter = key + (static_cast<std::uint64_t>(first + i * ld) + 1) * rng::kGamma;
    for (index_t j = 0; j < L; ++j) {
      const bool kept = rng::keep(rng::mix64(counter), threshold);
      counter += rng::kGamma;
      const T z = (xr[j] - m[j]) * a[j] + b[j];
      yr[j] = relu_of(z) * (kept ? scale : T(0));  // as dropout_forward_range: a dropped NaN stays NaN
      mr[j] = std::uint8_t(relu_bit(z) | (kept ? kKept : 0));
    }
  }
}

// The gradient reaching BN: relu_backward(dropout_backward(g)) = [z > 0] g keep / (1 - p), with the
// products in the order the separate kernels use. scale = 1 / (1 - p) (1 without dropout).
template <class T>
inline T masked_grad(T g, std::uint8_t mk, T scale) {
  return (mk & kReluPass) ? g * ((mk & kKept) ? scale : T(0)) : T(0);
}

// column_grad_sums with g replaced by gate(g, byte) of each element's byte (mask): the same
// arithmetic, term by term. masked_grad's gate: column_masked_grad_sums.
template <class T, class Gate>
void column_gated_grad_sums(const T* __restrict g, const std::uint8_t* __restrict mask, const T* __restrict x,
                            index_t ld, index_t N, index_t L, const T* __restrict m, const Gate& gate,
                            double* __restrict sg, double* __restrict sgx) {
  std::fill(sg, sg + L, 0.0);
  std::fill(sgx, sgx + L, 0.0);
  index_t i = 0;
  for (; i + 4 <= N; i += 4) {
    const T *__restrict g0 = g + i * ld, *__restrict g1 = g0 + ld, *__restrict g2 = g1 + ld, *__restrict g3 = g2 + ld;
    const std::uint8_t *__restrict k0 = mask + i * ld, *__restrict k1 = k0 + ld, *__restrict k2 = k1 + ld,
                                   *__restrict k3 = k2 + ld;
    const T *__restrict x0 = x + i * ld, *__restrict x1 = x0 + ld, *__restrict x2 = x1 + ld, *__restrict x3 = x2 + ld;
    for (index_t j = 0; j < L; ++j) {
      const T e0 = gate(g0[j], k0[j]), e1 = gate(g1[j], k1[j]), e2 = gate(g2[j], k2[j]), e3 = gate(g3[j], k3[j]);
      sg[j] += double((e0 + e1) + (e2 + e3));
      sgx[j] += double((e0 * (x0[j] - m[j]) + e1 * (x1[j] - m[j])) + (e2 * (x2[j] - m[j]) + e3 * (x3[j] - m[j])));
    }
  }
  for (; i < N; ++i) {
    const T *__restrict g0 = g + i * ld, *__restrict x0 = x + i * ld;
    const std::uint8_t* __restrict k0 = mask + i * ld;
    for (index_t j = 0; j < L; ++j) {
      const T e0 = gate(g0[j], k0[j]);
      sg[j] += double(e0);
      sgx[j] += double(e0 * (x0[j] - m[j]));
    }
  }
}

template <class T>
void column_masked_grad_sums(const T* __restrict g, const std::uint8_t* __restrict mask, const T* __restrict x,
                             index_t ld, index_t N, index_t L, const T* __restrict m, T scale, double* __restrict sg,
                             double* __restrict sgx) {
  column_gated_grad_sums(g, mask, x, ld, N, L, m, [scale](T gv, std::uint8_t mk) { return masked_grad(gv, mk, scale); },
                         sg, sgx);
}

// column_grad_input with g replaced by masked_grad(g, mask).
template <class T>
void column_masked_grad_input(const T* __restrict g, const std::uint8_t* __restrict mask, const T* __restrict x,
                              T* __restrict dx, index_t ld, index_t N, index_t L, const T* __restrict m, T scale,
                              const T* __restrict a, const T* __restrict b, const T* __restrict d) {
  for (index_t i = 0; i < N; ++i) {
    const T *__restrict gr = g + i * ld, *__restrict xr = x + i * ld;
    const std::uint8_t* __restrict kr = mask + i * ld;
    T* __restrict dr = dx + i * ld;
    for (index_t j = 0; j < L; ++j) dr[j] = a[j] * masked_grad(gr[j], kr[j], scale) + b[j] * (xr[j] - m[j]) + d[j];
  }
}

// column_grad_sums with g replaced by [z > 0] g, z = (x - zm) za + zb recomputed (no dropout).
// Rows of g are ld apart, those of x x_ld.
template <class T>
void column_relu_grad_sums(const T* __restrict g, const T* __restrict x, index_t ld, index_t N, index_t L,
                           const T* __restrict m, const T* __restrict zm, const T* __restrict za,
                           const T* __restrict zb, double* __restrict sg, double* __restrict sgx, index_t x_ld) {
  std::fill(sg, sg + L, 0.0);
  std::fill(sgx, sgx + L, 0.0);
  auto gate = [&](T gv, T xv, index_t j) { return (xv - zm[j]) * za[j] + zb[j] > T(0) ? gv : T(0); };
  index_t i = 0;
  for (; i + 4 <= N; i += 4) {
    const T *__restrict g0 = g + i * ld, *__restrict g1 = g0 + ld, *__restrict g2 = g1 + ld, *__restrict g3 = g2 + ld;
    const T *__restrict x0 = x + i * x_ld, *__restrict x1 = x0 + x_ld, *__restrict x2 = x1 + x_ld,
               *__restrict x3 = x2 + x_ld;
    for (index_t j = 0; j < L; ++j) {
      const T e0 = gate(g0[j], x0[j], j), e1 = gate(g1[j], x1[j], j), e2 = gate(g2[j], x2[j], j),
              e3 = gate(g3[j], x3[j], j);
      sg[j] += double((e0 + e1) + (e2 + e3));
      sgx[j] += double((e0 * (x0[j] - m[j]) + e1 * (x1[j] - m[j])) + (e2 * (x2[j] - m[j]) + e3 * (x3[j] - m[j])));
    }
  }
  for (; i < N; ++i) {
    const T *__restrict g0 = g + i * ld, *__restrict x0 = x + i * x_ld;
    for (index_t j = 0; j < L; ++j) {
      const T e0 = gate(g0[j], x0[j], j);
      sg[j] += double(e0);
      sgx[j] += double(e0 * (x0[j] - m[j]));
    }
  }
}

// column_grad_input with g replaced by [z > 0] g, z recomputed. Rows of g are ld apart, those of x
// and dx x_ld; accumulate: dx += the gradient instead of dx = (a DenseBlock's later layers' uses).
template <class T>
void column_relu_grad_input(const T* __restrict g, const T* __restrict x, T* __restrict dx, index_t ld, index_t N,
                            index_t L, const T* __restrict m, const T* __restrict zm, const T* __restrict za,
                            const T* __restrict zb, const T* __restrict a, const T* __restrict b,
                            const T* __restrict d, index_t x_ld, bool accumulate) {
  for (index_t i = 0; i < N; ++i) {
    const T *__restrict gr = g + i * ld, *__restrict xr = x + i * x_ld;
    T* __restrict dr = dx + i * x_ld;
    if (accumulate) {
      for (index_t j = 0; j < L; ++j) {
        const T e = (xr[j] - zm[j]) * za[j] + zb[j] > T(0) ? gr[j] : T(0);
        dr[j] += a[j] * e + b[j] * (xr[j] - m[j]) + d[j];
      }
      continue;
    }
    for (index_t j = 0; j < L; ++j) {
      const T e = (xr[j] - zm[j]) * za[j] + zb[j] > T(0) ? gr[j] : T(0);
      dr[j] = a[j] * e + b[j] * (xr[j] - m[j]) + d[j];
    }
  }
}

// col[j] = v[c(j)] for the columns of the tile at j0, or 0 when v is null.
template <class T>
void expand_or_zero(const T* v, index_t j0, index_t L, index_t S, T* col) {
  if (v) {
    expand_columns(v, j0, L, S, 0, col);
  } else {
    std::fill(col, col + L, T(0));
  }
}

// The recomputed z's per-column coefficients of one tile: z = (x - zm) za + zb (null arrays: 0).
template <class T>
struct ZColumns {
  T zm[kTileCols], za[kTileCols], zb[kTileCols];
  ZColumns(const T* z_mean, const T* z_scale, const T* z_shift, index_t j0, index_t L, index_t S) {
    expand_or_zero(z_mean, j0, L, S, zm);
    expand_or_zero(z_scale, j0, L, S, za);
    expand_or_zero(z_shift, j0, L, S, zb);
  }
};

}  // namespace bn_detail

// Training-mode forward: batch_norm_forward_train (the same statistics, save_mean/save_invstd and
// running-statistics update) with y = relu(z) * keep / (1 - p) written by the normalize pass. p in
// [0, 1); p = 0 is ReLU alone. The keep decisions are dropout_forward's for (seed, step) over the
// N*C*S elements of x in C order. mask (N*C*S bytes, kReluPass | kKept) may be null when p = 0:
// the backward then recomputes z from save_mean, z_scale (if not null, receives the C per-channel
// scales gamma * invstd the forward used) and beta. y must not alias x.
// x_ld: the distance of x's samples in memory, 0 for contiguous (C * S); more when x is a channel
// slice of a wider tensor (DenseBlock: channels [0, c) of its feature buffer). y is contiguous.
// Dropout needs x contiguous.
template <class T>
void batch_norm_relu_forward_train(const T* x, index_t N, index_t C, index_t S, const T* gamma, const T* beta, T eps,
                                   T* y, std::uint8_t* mask, T* save_mean, T* save_invstd, T momentum,
                                   T* running_mean, T* running_var, double p, std::uint64_t seed, std::uint64_t step,
                                   T* z_scale = nullptr, index_t x_ld = 0) {
  using namespace bn_detail;
  FASTNN_CHECK(p >= 0.0 && p < 1.0, "batch_norm_relu_forward", "p must be in [0, 1), got " << p);
  FASTNN_CHECK(mask || p == 0.0, "batch_norm_relu_forward", "dropout needs the mask");
  const index_t ld = C * S, n = N * S;
  if (x_ld == 0) x_ld = ld;
  FASTNN_CHECK(x_ld >= ld && (p == 0.0 || x_ld == ld), "batch_norm_relu_forward",
               "x_ld " << x_ld << " must be >= C * S = " << ld << " (and equal to it with dropout)");
  if (p == 0.0) {
    forward_train_groups(x, x_ld, N, C, S, gamma, beta, eps, save_mean, save_invstd, momentum, running_mean,
                         running_var, z_scale, 4 * n, "batch_norm_relu_forward",
                         [&](index_t j0, index_t L, const T* m, const T* a, const T* b) {
                           column_normalize_relu(x + j0, y + j0, mask ? mask + j0 : nullptr, ld, N, L, m, a, b, x_ld);
                         });
    return;
  }
  const std::uint64_t key = rng::stream_key(seed, step), threshold = rng::keep_threshold(p);
  const T scale = static_cast<T>(1.0 / (1.0 - p));  // as dropout_forward
  forward_train_groups(x, ld, N, C, S, gamma, beta, eps, save_mean, save_invstd, momentum, running_mean,
                       running_var, z_scale, 4 * n + detail::kDropoutCost * n, "batch_norm_relu_forward",
                       [&](index_t j0, index_t L, const T* m, const T* a, const T* b) {
                         column_normalize_relu_dropout(x + j0, y + j0, mask + j0, ld, N, L, m, a, b, j0, key,
                                                       threshold, scale);
                       });
}

// Training forward of BatchNorm -> ReLU -> MaxPool2d(2) (2x2 windows, stride 2, on an even width:
// pool.h's is_even_2x2(pool), pool the pool's geometry on x (N, C, H, W)) in BatchNorm's passes:
// the statistics and running-statistics update of batch_norm_relu_forward_train with p = 0, then an
// output pass that pools relu(z) plane by plane (its channel group still in L2 from the
// statistics) and writes only the pooled values y (N, C, P, Q) and their argmax (indices, as
// max_pool2d_forward's): the full-size relu(z) is neither stored nor read back by the pool. z is
// the expression of column_normalize_relu, and the scan max_pool2d_forward's, so y and indices
// equal those of the two kernels run one after the other, bit for bit. The backward is
// max_pool2d_backward, then batch_norm_relu_backward recomputing z (no mask; z_scale as there).
// x_at_max and codes (N, C, P, Q each, both or neither) receive what batch_norm_relu_max_pool2d_backward
// reads instead of x at the windows: each window's x at its argmax, and its code (the argmax's tap,
// 0 1 / 2 3 over the window's two rows, or kReluClosedWindow when its maximum relu(z) is not > 0).
template <class T, class I>
void batch_norm_relu_max_pool2d_forward_train(const T* x, const ConvGeometry& pool, const T* gamma, const T* beta,
                                              T eps, T* y, I* indices, T* save_mean, T* save_invstd, T momentum,
                                              T* running_mean, T* running_var, T* z_scale = nullptr,
                                              T* x_at_max = nullptr, std::uint8_t* codes = nullptr) {
  const char* op = "batch_norm_relu_max_pool2d_forward";
  FASTNN_CHECK(pool_detail::is_even_2x2(pool), op,
               "needs a 2x2 window of stride 2 without padding or dilation on an even width, got kernel ("
                   << pool.kh << ", " << pool.kw << "), stride (" << pool.sh << ", " << pool.sw << ") on width "
                   << pool.w);
  const index_t N = pool.n, C = pool.c, S = pool.h * pool.w, PQ = pool.p * pool.q;
  // The output pass reads its group from L2 and leaves memory idle: it prefetches the next group's
  // planes (channel c + k's plane n beside channel c's), so that the next group's first pass (the
  // sums) reads cache. Only when the group is not wider than kGroupBytes: the two then fit a 1 MB L2
  // (Zen 4's). Measured on the cnn's first block (perf, 1 thread, loaded machine): column_sum's
  // samples 40% fewer, about 0.4 ms of the step's forward.
  const index_t k = bn_detail::group_channels<T>(N, S);
  const bool prefetch = k * N * S * index_t(sizeof(T)) <= bn_detail::kGroupBytes;
  bn_detail::forward_train_groups(
      x, C * S, N, C, S, gamma, beta, eps, save_mean, save_invstd, momentum, running_mean, running_var, z_scale,
      4 * N * S, op, [&](index_t j0, index_t L, const T* m, const T* a, const T* b) {
        // the planes of the channels that start in this tile, each whole (tiles split channels at
        // 512 columns, not at the pool's row pairs): the pool's plane pass on relu(z), computed
        // where it loads each tap (column_normalize_relu's expression), so never stored
        for (index_t c = (j0 + S - 1) / S; c * S < j0 + L; ++c) {
          const T mc = m[c * S - j0], ac = a[c * S - j0], bc = b[c * S - j0];
          const auto relu_z = [mc, ac, bc](T v) { return bn_detail::relu_of((v - mc) * ac + bc); };
          for (index_t n = 0; n < N; ++n) {
            const index_t plane = n * C + c;
            if (prefetch && c + k < C)
              for (index_t s = 0; s < S; s += 64 / index_t(sizeof(T))) __builtin_prefetch(x + (plane + k) * S + s, 0, 2);
            // codes: the tap where relu(z) > 0 at the argmax (the ReLU passes the gradient; NaN does not)
            pool_detail::max_pool_even_2x2_plane(x + plane * S, y + plane * PQ, indices + plane * PQ, pool, relu_z,
                                                 x_at_max ? x_at_max + plane * PQ : nullptr,
                                                 codes ? codes + plane * PQ : nullptr);
          }
        }
      });
}

namespace bn_detail {

// y = relu(scale[c] x + shift[c]) over the planes (n, c) of S contiguous values (x's samples x_ld
// apart, y contiguous), with the mask bytes unless mask is null.
template <class T>
void affine_relu_planes(const T* x, index_t x_ld, index_t N, index_t C, index_t S, const T* scale, const T* shift,
                        T* y, std::uint8_t* mask) {
  parallel_for(N * C, S, [&](index_t p0, index_t p1) {  // planes (n, c) of S contiguous values
    for (index_t q = p0; q < p1; ++q) {
      const T a = scale[q % C], b = shift[q % C];
      const T* __restrict xp = x + (q / C) * x_ld + (q % C) * S;
      T* __restrict yp = y + q * S;
      if (!mask) {
        for (index_t s = 0; s < S; ++s) yp[s] = relu_of(a * xp[s] + b);
        continue;
      }
      std::uint8_t* __restrict mp = mask + q * S;
      for (index_t s = 0; s < S; ++s) {
        const T z = a * xp[s] + b;
        yp[s] = relu_of(z);
        mp[s] = std::uint8_t(relu_bit(z) | kKept);
      }
    }
  });
}

}  // namespace bn_detail

// Eval-mode forward: y = relu(scale x + shift) with the folded affine from the running statistics
// (batch_norm_forward_eval; dropout is the identity in eval mode), and the mask bytes unless mask
// is null (the backward then recomputes z with z_mean = 0, z_scale = scale, z_shift = shift).
// scale and shift (C values each) receive the folded affine. y must not alias x. x_ld as in
// batch_norm_relu_forward_train.
template <class T>
void batch_norm_relu_forward_eval(const T* x, index_t N, index_t C, index_t S, const T* gamma, const T* beta,
                                  const T* running_mean, const T* running_var, T eps, T* y, std::uint8_t* mask,
                                  T* scale, T* shift, index_t x_ld = 0) {
  using bn_detail::relu_bit;
  using bn_detail::relu_of;
  batch_norm_fold(gamma, beta, running_mean, running_var, C, eps, scale, shift);
  FASTNN_CHECK(x_ld == 0 || x_ld >= C * S, "batch_norm_relu_forward_eval",
               "x_ld " << x_ld << " must be >= C * S = " << C * S);
  if ((x_ld == 0 || x_ld == C) && S == 1) {  // rows, as batch_norm_affine
    parallel_for(N, C, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) {
        const T* __restrict xr = x + i * C;
        T* __restrict yr = y + i * C;
        if (!mask) {
          for (index_t c = 0; c < C; ++c) yr[c] = relu_of(scale[c] * xr[c] + shift[c]);
          continue;
        }
        std::uint8_t* __restrict mr = mask + i * C;
        for (index_t c = 0; c < C; ++c) {
          const T z = scale[c] * xr[c] + shift[c];
          yr[c] = relu_of(z);
          mr[c] = std::uint8_t(relu_bit(z) | kKept);
        }
      }
    });
    return;
  }
  bn_detail::affine_relu_planes(x, x_ld ? x_ld : C * S, N, C, S, scale, shift, y, mask);
}

// Backward of batch_norm_relu_forward_train / _eval: batch_norm_backward applied to
// g_z = [z > 0] * keep / (1 - p) * g, which is formed where BN's two passes read g (no pass of its
// own). mask: the forward's, or null (p = 0) to recompute z = (x - z_mean) * z_scale + z_shift per
// channel (z_mean, z_shift null: 0) with the forward's coefficients: training save_mean, the
// forward's z_scale and beta; eval 0, scale and shift. p: the forward's drop probability (0 without
// dropout or in eval mode); training: the mode of the forward's batch normalization.
// dx must not alias g or x.
// x_ld: x's (and dx's) sample distance as in the forward, 0 for contiguous; g is contiguous.
// accumulate: dx += the input gradient (DenseBlock sums the uses of its feature buffer's channels);
// both need the mask-free form.
template <class T>
void batch_norm_relu_backward(const T* g, const std::uint8_t* mask, const T* x, index_t N, index_t C, index_t S,
                              const T* gamma, const T* save_mean, const T* save_invstd, bool training, double p, T* dx,
                              T* dgamma, T* dbeta, const T* z_mean = nullptr, const T* z_scale = nullptr,
                              const T* z_shift = nullptr, index_t x_ld = 0, bool accumulate = false) {
  using namespace bn_detail;
  const char* op = "batch_norm_relu_backward";
  FASTNN_CHECK(p >= 0.0 && p < 1.0, op, "p must be in [0, 1), got " << p);
  FASTNN_CHECK(mask || (p == 0.0 && z_scale), op, "needs the mask, or z_scale without dropout");
  const index_t ld = C * S;
  if (x_ld == 0) x_ld = ld;
  FASTNN_CHECK(x_ld >= ld && (!mask || (x_ld == ld && !accumulate)), op,
               "x_ld " << x_ld << " must be >= C * S = " << ld << "; a strided or accumulating backward needs no mask");
  if (!mask) {
    backward_groups(
        N, C, S, gamma, save_mean, save_invstd, training, dgamma, dbeta, 2 * N, 6 * N * S, op,
        [&](index_t j0, index_t L, const T* m, double* acc_g, double* acc_gx) {
          const ZColumns<T> z(z_mean, z_scale, z_shift, j0, L, S);
          column_relu_grad_sums(g + j0, x + j0, ld, N, L, m, z.zm, z.za, z.zb, acc_g, acc_gx, x_ld);
        },
        [&](index_t j0, index_t L, const T* m, const T* a, const T* b, const T* d) {
          const ZColumns<T> z(z_mean, z_scale, z_shift, j0, L, S);
          column_relu_grad_input(g + j0, x + j0, dx + j0, ld, N, L, m, z.zm, z.za, z.zb, a, b, d, x_ld, accumulate);
        });
    return;
  }
  const T scale = static_cast<T>(1.0 / (1.0 - p));  // as dropout_backward (exactly 1 for p = 0)
  // Per channel the passes read g, x and the mask bytes (a quarter or an eighth of a row of T).
  const index_t rows = 2 * N + (N + index_t(sizeof(T)) - 1) / index_t(sizeof(T));
  backward_groups(
      N, C, S, gamma, save_mean, save_invstd, training, dgamma, dbeta, rows, 6 * N * S, op,
      [&](index_t j0, index_t L, const T* m, double* acc_g, double* acc_gx) {
        column_masked_grad_sums(g + j0, mask + j0, x + j0, ld, N, L, m, scale, acc_g, acc_gx);
      },
      [&](index_t j0, index_t L, const T* m, const T* a, const T* b, const T* d) {
        column_masked_grad_input(g + j0, mask + j0, x + j0, dx + j0, ld, N, L, m, scale, a, b, d);
      });
}

namespace bn_detail {

// column_relu_grad_sums at the pooled size: over the windows of one channel (L of them, the rows
// of g, codes and xa, the windows' x at their argmax, ld apart), the terms of the positions where
// the pool's gradient lands: e = g where the ReLU passes (codes < kReluClosedWindow), else 0;
// sg[j] = sum_i e, sgx[j] = sum_i e (xa - m). The other positions add nothing. m: L values.
template <class T>
void column_pooled_grad_sums(const T* __restrict g, const std::uint8_t* __restrict codes, const T* __restrict xa,
                             index_t ld, index_t N, index_t L, const T* __restrict m, double* __restrict sg,
                             double* __restrict sgx) {
  column_gated_grad_sums(g, codes, xa, ld, N, L, m,
                         [](T gv, std::uint8_t k) { return k < kReluClosedWindow ? gv : T(0); }, sg, sgx);
}

// The pool's gradient of n windows (g) split by their codes into the taps of the windows' top and
// bottom rows: et[2o + t] = g[o] where codes[o] == t, eb[2o + t] = g[o] where codes[o] == 2 + t (t = 0,
// 1), else 0. A window's two taps of a row are adjacent in the input, so a row pair's et and eb
// are its two rows' pool gradients. (GCC 12 vectorizes this loop of byte compares and interleaved
// float stores across 2 lanes only: AVX2 intrinsics for float, 8 windows at a time.)
template <class T>
void split_window_grads(const T* __restrict g, const std::uint8_t* __restrict codes, index_t n, T* __restrict et,
                        T* __restrict eb) {
  index_t o = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    const __m256i t0 = _mm256_setzero_si256(), t1 = _mm256_set1_epi32(1), t2 = _mm256_set1_epi32(2),
                  t3 = _mm256_set1_epi32(3);
    for (; o + 8 <= n; o += 8) {
      const __m256i k = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + o)));
      const __m256 v = _mm256_loadu_ps(g + o);
      const auto pick = [&](__m256i t) { return _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(k, t)), v); };
      // unpack interleaves within 128-bit lanes: windows 0 1 | 4 5 and 2 3 | 6 7, put in order
      const auto store_pairs = [](__m256 a, __m256 b, float* out) {
        const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
        _mm256_storeu_ps(out, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
      };
      store_pairs(pick(t0), pick(t1), et + 2 * o);
      store_pairs(pick(t2), pick(t3), eb + 2 * o);
    }
  }
#endif
  for (; o < n; ++o) {
    const std::uint8_t k = codes[o];
    const T v = g[o];
    et[2 * o] = k == 0 ? v : T(0), et[2 * o + 1] = k == 1 ? v : T(0);
    eb[2 * o] = k == 2 ? v : T(0), eb[2 * o + 1] = k == 3 ? v : T(0);
  }
}

// One plane (H x W, the pool's geometry g) of the input gradient dx = a e + b (x - m) + d, e the
// pool's gradient gp (P x Q) at each window's argmax tap where the ReLU passes (codes), 0 elsewhere
// (rows past 2P, in no window, too): split_window_grads of a chunk of row pairs, then the rows.
template <class T>
void relu_max_pool_grad_plane(const T* __restrict gp, const std::uint8_t* __restrict codes, const T* __restrict xp,
                              T* __restrict dp, const ConvGeometry& g, T m, T a, T b, T d) {
  const index_t W = g.w, Q = g.q, rows_per_chunk = pool_detail::kPairChunk / W;  // >= 1 (is_even_2x2)
  T et[pool_detail::kPairChunk], eb[pool_detail::kPairChunk];
  const auto row = [&](const T* __restrict e, const T* __restrict xr, T* __restrict dr) {
    for (index_t s = 0; s < W; ++s) dr[s] = a * e[s] + b * (xr[s] - m) + d;
  };
  for (index_t p0 = 0; p0 < g.p; p0 += rows_per_chunk) {
    const index_t p1 = std::min(g.p, p0 + rows_per_chunk);
    split_window_grads(gp + p0 * Q, codes + p0 * Q, (p1 - p0) * Q, et, eb);
    for (index_t p = p0; p < p1; ++p) {
      const index_t s = 2 * p * W;
      row(et + (p - p0) * W, xp + s, dp + s);
      row(eb + (p - p0) * W, xp + s + W, dp + s + W);
    }
  }
  for (index_t s = 2 * g.p * W; s < g.h * W; ++s) dp[s] = a * T(0) + b * (xp[s] - m) + d;
}

}  // namespace bn_detail

// The sums pass of the backward of batch_norm_relu_max_pool2d_forward_train (MaxPool2d's backward,
// then batch_norm_relu_backward in training mode): g_z is the pool's gradient g_pool at each
// window's argmax where the ReLU passes and 0 elsewhere, so BN's sums (of g_z and g_z (x - mean))
// run over the windows, from the forward's x_at_max and codes, a quarter of the positions and no x.
// Writes dgamma, dbeta and coef (3 C values: the input gradient's per-channel a, b, d, dx = a g_z +
// b (x - mean) + d). The sums are the separate kernels' in another order (each channel's windows
// 4 samples at a time, then in window order), so equal to rounding: within |terms| eps sqrt(n).
// pool: the pool's geometry on x (N, C, H, W), g_pool, x_at_max, codes (N, C, P, Q).
template <class T>
void batch_norm_relu_max_pool2d_backward_sums(const T* g_pool, const std::uint8_t* codes, const T* x_at_max,
                                              const ConvGeometry& pool, const T* gamma, const T* save_mean,
                                              const T* save_invstd, T* dgamma, T* dbeta, T* coef) {
  using namespace bn_detail;
  const index_t N = pool.n, C = pool.c, PQ = pool.p * pool.q, ld = C * PQ;
  FASTNN_CHECK(N > 0 && C > 0 && PQ > 0, "batch_norm_relu_max_pool2d_backward", "x is empty");
  parallel_for(C, 2 * N * PQ, [&](index_t c0, index_t c1) {
    double acc_g[kTileCols], acc_gx[kTileCols];
    T col_m[kTileCols];
    for (index_t c = c0; c < c1; ++c) {
      double sg = 0, sgx = 0;
      std::fill(col_m, col_m + kTileCols, save_mean[c]);
      for (index_t j0 = 0; j0 < PQ; j0 += kTileCols) {
        const index_t L = std::min(kTileCols, PQ - j0), at = c * PQ + j0;
        column_pooled_grad_sums(g_pool + at, codes + at, x_at_max + at, ld, N, L, col_m, acc_g, acc_gx);
        for (index_t j = 0; j < L; ++j) sg += acc_g[j], sgx += acc_gx[j];
      }
      grad_coefficients(sg, sgx, gamma ? gamma[c] : T(1), save_invstd[c], true, N * pool.h * pool.w, dgamma[c],
                        dbeta[c], coef[c], coef[C + c], coef[2 * C + c]);
    }
  });
}

// Image n's part of that backward's input gradient, (C, H, W) into dxn, from the coefficients of
// batch_norm_relu_max_pool2d_backward_sums (coef) and x.
template <class T>
void batch_norm_relu_max_pool2d_grad_image(index_t n, const T* g_pool, const std::uint8_t* codes,
                                           const ConvGeometry& pool, const T* x, const T* save_mean, const T* coef,
                                           T* dxn) {
  const index_t C = pool.c, S = pool.h * pool.w, PQ = pool.p * pool.q;
  for (index_t c = 0; c < C; ++c) {
    const index_t plane = n * C + c;
    bn_detail::relu_max_pool_grad_plane(g_pool + plane * PQ, codes + plane * PQ, x + plane * S, dxn + c * S, pool,
                                        save_mean[c], coef[c], coef[C + c], coef[2 * C + c]);
  }
}

// The whole backward: the sums pass, then the input gradient dx (N, C, H, W) plane by plane.
template <class T>
void batch_norm_relu_max_pool2d_backward(const T* g_pool, const std::uint8_t* codes, const T* x_at_max,
                                         const ConvGeometry& pool, const T* x, const T* gamma, const T* save_mean,
                                         const T* save_invstd, T* dx, T* dgamma, T* dbeta) {
  const index_t C = pool.c, S = pool.h * pool.w, PQ = pool.p * pool.q;
  std::vector<T> coef(static_cast<size_t>(3 * C));
  batch_norm_relu_max_pool2d_backward_sums(g_pool, codes, x_at_max, pool, gamma, save_mean, save_invstd, dgamma,
                                           dbeta, coef.data());
  parallel_for(pool.n * C, 3 * S, [&](index_t b0, index_t b1) {
    for (index_t q = b0; q < b1; ++q) {
      const index_t c = q % C;
      bn_detail::relu_max_pool_grad_plane(g_pool + q * PQ, codes + q * PQ, x + q * S, dx + q * S, pool, save_mean[c],
                                          coef[c], coef[C + c], coef[2 * C + c]);
    }
  });
}

// The output of batch_norm_relu_forward_train (p = 0) or _eval again, from x and the coefficients
// the forward kept, bit for bit: training z_mean = save_mean, z_scale, z_shift = beta (null: 0);
// eval z_mean = null, z_scale = scale, z_shift = shift. DenseBlock recomputes its layers' BN-ReLU
// outputs in backward into one shared buffer instead of keeping each (Pleiss et al. 2017).
template <class T>
void batch_norm_relu_recompute(const T* x, index_t N, index_t C, index_t S, bool training, const T* z_mean,
                               const T* z_scale, const T* z_shift, T* y, index_t x_ld = 0) {
  using namespace bn_detail;
  const index_t ld = C * S;
  if (x_ld == 0) x_ld = ld;
  if (!training) {  // the eval forward's expression and loop (batch_norm_relu_forward_eval)
    if (S > 1 || x_ld != ld)
      return affine_relu_planes(x, x_ld, N, C, S, z_scale, z_shift, y, static_cast<std::uint8_t*>(nullptr));
    return parallel_for(N, C, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i)
        for (index_t c = 0; c < C; ++c) y[i * C + c] = relu_of(z_scale[c] * x[i * C + c] + z_shift[c]);
    });
  }
  const index_t k = group_channels<T>(N, S);
  parallel_for(C, 2 * N * S, [&](index_t c0, index_t c1) {
    T col_m[kTileCols], col_a[kTileCols], col_b[kTileCols];
    for_each_group(c0, c1, k, [&](index_t ca, index_t cb) {
      for_each_tile(ca, cb, S, [&](index_t j0, index_t L) {
        expand_or_zero(z_mean, j0, L, S, col_m);
        expand_or_zero(z_scale, j0, L, S, col_a);
        expand_or_zero(z_shift, j0, L, S, col_b);
        column_normalize_relu(x + j0, y + j0, static_cast<std::uint8_t*>(nullptr), ld, N, L, col_m, col_a, col_b,
                              x_ld);
      });
    });
  });
}

}  // namespace fastnn
