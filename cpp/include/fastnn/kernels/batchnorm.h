// Batch normalization (Ioffe & Szegedy 2015; seed 001 "code 1" and eq. 5.18) on raw buffers.
//
// x is viewed as (N, C, S): S = 1 for BatchNorm1d on (N, C), S = L or H*W otherwise, and channel c
// is normalized over its n = N*S values. In memory that is an (N, C*S) row-major matrix whose
// channel c owns the columns [c*S, (c+1)*S); a (N, C) input is the case S = 1 (channel = column).
//
// Layout of the work: threads take contiguous channel ranges (parallel_for); each range is done in
// groups of channels whose data fits in L2 (when a group is not forced wider to fill a column tile),
// so after the first pass over a group the later passes (variance, output; or the second backward
// pass) read cache, not DRAM: forward = 1 read + 1 write, backward = 2 reads + 1 write of memory.
// Inside a group, passes run
// over column tiles, row by row, into per-column accumulators that stay in L1 (vectorized across
// columns, which is what a (N, C) input needs: a channel is a strided column). Per-column sums are
// kept in double (4-row partials in T), then folded into channels in column order, so each
// channel's result depends on neither the grouping nor the thread count.
// The group/tile drivers (bn_detail::forward_train_groups, backward_groups) take the per-tile output
// work as a callback, so kernels/batchnorm_activation.h runs the same passes with ReLU and dropout fused.
#pragma once

#include <algorithm>
#include <cmath>

#include "fastnn/common.h"

namespace fastnn {

namespace bn_detail {

constexpr index_t kTileCols = 512;           // per-column accumulators of one tile stay in L1
constexpr index_t kGroupBytes = 512 * 1024;  // one group's x (and grad) stays in L2 between passes
constexpr index_t kMaxGroupChannels = 512;   // per-channel scratch of a group lives on the stack

// Channels per group: as many as fit in kGroupBytes, but at least a full tile of columns: rows
// split into short segments cost far more than passes that spill from L2 (measured: a (4096, 256)
// backward is 40x slower in 8-column tiles than in 256-column ones).
template <class T>
index_t group_channels(index_t N, index_t S) {
  const index_t bytes_per_channel = std::max<index_t>(N * S * index_t(sizeof(T)), 1);
  const index_t full_tile = std::max<index_t>(1, kTileCols / S);
  return std::clamp<index_t>(std::max(kGroupBytes / bytes_per_channel, full_tile), 1, kMaxGroupChannels);
}

// Calls f(ca, cb) for consecutive groups of at most k channels covering [c0, c1).
template <class F>
void for_each_group(index_t c0, index_t c1, index_t k, F&& f) {
  for (index_t ca = c0; ca < c1; ca += k) f(ca, std::min(c1, ca + k));
}

// Calls f(j0, L) for the column tiles [j0, j0 + L) covering the columns of channels [ca, cb).
template <class F>
void for_each_tile(index_t ca, index_t cb, index_t S, F&& f) {
  const index_t end = cb * S;
  for (index_t j0 = ca * S; j0 < end; j0 += kTileCols) f(j0, std::min(kTileCols, end - j0));
}

// chan[c - ca] += v[j] for the columns j of the tile starting at column j0, in column order.
inline void fold_columns(const double* v, index_t j0, index_t L, index_t S, index_t ca, double* chan) {
  if (S == 1) {  // one column per channel (and no integer division per column)
    for (index_t j = 0; j < L; ++j) chan[j0 - ca + j] += v[j];
    return;
  }
  for (index_t c = j0 / S, j = 0; j < L; ++c) {
    const index_t stop = std::min(L, (c + 1) * S - j0);
    double s = chan[c - ca];
    for (; j < stop; ++j) s += v[j];
    chan[c - ca] = s;
  }
}

// col[j] = chan[c(j) - ca]: per-channel values broadcast to the columns of a tile.
template <class T>
void expand_columns(const T* chan, index_t j0, index_t L, index_t S, index_t ca, T* col) {
  if (S == 1) {
    std::copy(chan + (j0 - ca), chan + (j0 - ca + L), col);
    return;
  }
  for (index_t c = j0 / S, j = 0; j < L; ++c) {
    const index_t stop = std::min(L, (c + 1) * S - j0);
    const T v = chan[c - ca];
    for (; j < stop; ++j) col[j] = v;
  }
}

// PyTorch's running averages: the mean, and the variance made unbiased (n / (n - 1)).
template <class T>
void update_running(double mu, double var, index_t n, double momentum, T& running_mean, T& running_var) {
  running_mean = T((1.0 - momentum) * double(running_mean) + momentum * mu);
  running_var = T((1.0 - momentum) * double(running_var) + momentum * var * double(n) / double(n - 1));
}

// The column kernels below see one tile: x points at its first column in row 0, rows are `ld`
// apart, the tile is N rows by L columns.

// acc[j] = sum_i x[i, j].
template <class T>
void column_sum(const T* __restrict x, index_t ld, index_t N, index_t L, double* __restrict acc) {
  std::fill(acc, acc + L, 0.0);
  index_t i = 0;
  for (; i + 4 <= N; i += 4) {
    const T *__restrict a = x + i * ld, *__restrict b = a + ld, *__restrict c = b + ld, *__restrict d = c + ld;
    for (index_t j = 0; j < L; ++j) acc[j] += double((a[j] + b[j]) + (c[j] + d[j]));
  }
  for (; i < N; ++i) {
    const T* __restrict a = x + i * ld;
    for (index_t j = 0; j < L; ++j) acc[j] += double(a[j]);
  }
}

// acc[j] = sum_i (x[i, j] - m[j])^2: the second pass of the two-pass variance.
template <class T>
void column_sq_dev(const T* __restrict x, index_t ld, index_t N, index_t L, const T* __restrict m,
                   double* __restrict acc) {
  std::fill(acc, acc + L, 0.0);
  index_t i = 0;
  for (; i + 4 <= N; i += 4) {
    const T *__restrict a = x + i * ld, *__restrict b = a + ld, *__restrict c = b + ld, *__restrict d = c + ld;
    for (index_t j = 0; j < L; ++j) {
      const T da = a[j] - m[j], db = b[j] - m[j], dc = c[j] - m[j], dd = d[j] - m[j];
      acc[j] += double((da * da + db * db) + (dc * dc + dd * dd));
    }
  }
  for (; i < N; ++i) {
    const T* __restrict a = x + i * ld;
    for (index_t j = 0; j < L; ++j) {
      const T da = a[j] - m[j];
      acc[j] += double(da * da);
    }
  }
}

// y[i, j] = (x[i, j] - m[j]) * a[j] + b[j].
template <class T>
void column_normalize(const T* __restrict x, T* __restrict y, index_t ld, index_t N, index_t L,
                      const T* __restrict m, const T* __restrict a, const T* __restrict b) {
  for (index_t i = 0; i < N; ++i) {
    const T* __restrict xr = x + i * ld;
    T* __restrict yr = y + i * ld;
    for (index_t j = 0; j < L; ++j) yr[j] = (xr[j] - m[j]) * a[j] + b[j];
  }
}

// sg[j] = sum_i g[i, j];  sgx[j] = sum_i g[i, j] (x[i, j] - m[j]).
template <class T>
void column_grad_sums(const T* __restrict g, const T* __restrict x, index_t ld, index_t N, index_t L,
                      const T* __restrict m, double* __restrict sg, double* __restrict sgx) {
  std::fill(sg, sg + L, 0.0);
  std::fill(sgx, sgx + L, 0.0);
  index_t i = 0;
  for (; i + 4 <= N; i += 4) {
    const T *__restrict g0 = g + i * ld, *__restrict g1 = g0 + ld, *__restrict g2 = g1 + ld, *__restrict g3 = g2 + ld;
    const T *__restrict x0 = x + i * ld, *__restrict x1 = x0 + ld, *__restrict x2 = x1 + ld, *__restrict x3 = x2 + ld;
    for (index_t j = 0; j < L; ++j) {
      sg[j] += double((g0[j] + g1[j]) + (g2[j] + g3[j]));
      sgx[j] += double((g0[j] * (x0[j] - m[j]) + g1[j] * (x1[j] - m[j])) +
                       (g2[j] * (x2[j] - m[j]) + g3[j] * (x3[j] - m[j])));
    }
  }
  for (; i < N; ++i) {
    const T *__restrict g0 = g + i * ld, *__restrict x0 = x + i * ld;
    for (index_t j = 0; j < L; ++j) {
      sg[j] += double(g0[j]);
      sgx[j] += double(g0[j] * (x0[j] - m[j]));
    }
  }
}

// dx[i, j] = a[j] g[i, j] + b[j] (x[i, j] - m[j]) + d[j].
template <class T>
void column_grad_input(const T* __restrict g, const T* __restrict x, T* __restrict dx, index_t ld, index_t N,
                       index_t L, const T* __restrict m, const T* __restrict a, const T* __restrict b,
                       const T* __restrict d) {
  for (index_t i = 0; i < N; ++i) {
    const T *__restrict gr = g + i * ld, *__restrict xr = x + i * ld;
    T* __restrict dr = dx + i * ld;
    for (index_t j = 0; j < L; ++j) dr[j] = a[j] * gr[j] + b[j] * (xr[j] - m[j]) + d[j];
  }
}

}  // namespace bn_detail

namespace bn_detail {

// The training forward's statistics and running-average update (see batch_norm_forward_train),
// with the output pass left to the caller: normalize_tile(j0, L, col_m, col_a, col_b) must write
// the outputs of the tile [j0, j0 + L) from y = (x - col_m) * col_a + col_b. `cost` is
// parallel_for's work per channel. save_scale, if not null, receives the per-channel a (C values).
// x_ld: the distance of x's samples in memory (C * S when contiguous; more for a channel slice of
// a wider tensor, as DenseBlock's layers read).
template <class T, class NormalizeTile>
void forward_train_groups(const T* x, index_t x_ld, index_t N, index_t C, index_t S, const T* gamma, const T* beta,
                          T eps, T* save_mean, T* save_invstd, T momentum, T* running_mean, T* running_var,
                          T* save_scale, index_t cost, const char* op, NormalizeTile&& normalize_tile) {
  const index_t n = N * S, ld = x_ld;
  FASTNN_CHECK(N > 0 && C > 0 && S > 0, op, "x is empty");
  FASTNN_CHECK(n > 1, op, "Expected more than 1 value per channel when training, got " << n);
  FASTNN_CHECK((running_mean == nullptr) == (running_var == nullptr), op,
               "running_mean and running_var must both be given or both be null");
  const index_t k = group_channels<T>(N, S);
  parallel_for(C, cost, [&](index_t c0, index_t c1) {
    double sum[kMaxGroupChannels], sq[kMaxGroupChannels], acc[kTileCols];
    T mean_c[kMaxGroupChannels], scale_c[kMaxGroupChannels], beta_c[kMaxGroupChannels];
    T col_m[kTileCols], col_a[kTileCols], col_b[kTileCols];
    for_each_group(c0, c1, k, [&](index_t ca, index_t cb) {
      const index_t kc = cb - ca;
      std::fill(sum, sum + kc, 0.0);
      std::fill(sq, sq + kc, 0.0);
      for_each_tile(ca, cb, S, [&](index_t j0, index_t L) {
        column_sum(x + j0, ld, N, L, acc);
        fold_columns(acc, j0, L, S, ca, sum);
      });
      for (index_t c = 0; c < kc; ++c) mean_c[c] = T(sum[c] / double(n));
      for_each_tile(ca, cb, S, [&](index_t j0, index_t L) {
        expand_columns(mean_c, j0, L, S, ca, col_m);
        column_sq_dev(x + j0, ld, N, L, col_m, acc);
        fold_columns(acc, j0, L, S, ca, sq);
      });
      for (index_t c = 0; c < kc; ++c) {
        const index_t cg = ca + c;
        const double mu = sum[c] / double(n), var = sq[c] / double(n);
        const double invstd = 1.0 / std::sqrt(var + double(eps));
        scale_c[c] = T((gamma ? double(gamma[cg]) : 1.0) * invstd);
        beta_c[c] = beta ? beta[cg] : T(0);
        save_mean[cg] = mean_c[c];
        save_invstd[cg] = T(invstd);
        if (save_scale) save_scale[cg] = scale_c[c];
        if (running_mean) update_running(mu, var, n, double(momentum), running_mean[cg], running_var[cg]);
      }
      for_each_tile(ca, cb, S, [&](index_t j0, index_t L) {
        expand_columns(mean_c, j0, L, S, ca, col_m);
        expand_columns(scale_c, j0, L, S, ca, col_a);
        expand_columns(beta_c, j0, L, S, ca, col_b);
        normalize_tile(j0, L, col_m, col_a, col_b);
      });
    });
  });
}

}  // namespace bn_detail

// Training-mode forward (seed 001 code 1), per channel c over its n = N*S values:
//   mu = mean(x), var = mean((x - mu)^2) (biased, two-pass), invstd = 1/sqrt(var + eps),
//   y = gamma * (x - mu) * invstd + beta,  save_mean = mu,  save_invstd = invstd.
// gamma/beta may be null (gamma = 1, beta = 0). If running_mean and running_var are not null they are
// updated as PyTorch does: r_mean = (1-momentum) r_mean + momentum mu,
// r_var = (1-momentum) r_var + momentum var n/(n-1). Needs n > 1. All buffers C-contiguous;
// x, y: N*C*S values; the per-channel ones: C values. y must not alias x.
template <class T>
void batch_norm_forward_train(const T* x, index_t N, index_t C, index_t S, const T* gamma, const T* beta, T eps,
                              T* y, T* save_mean, T* save_invstd, T momentum = T(0), T* running_mean = nullptr,
                              T* running_var = nullptr) {
  const index_t ld = C * S;
  bn_detail::forward_train_groups(x, ld, N, C, S, gamma, beta, eps, save_mean, save_invstd, momentum, running_mean,
                                  running_var, static_cast<T*>(nullptr), 4 * N * S, "batch_norm_forward",
                                  [&](index_t j0, index_t L, const T* m, const T* a, const T* b) {
                                    bn_detail::column_normalize(x + j0, y + j0, ld, N, L, m, a, b);
                                  });
}

// Running-statistics update alone, for callers that computed the batch mean and biased variance
// themselves (e.g. over several batches): the same formulas as in batch_norm_forward_train.
template <class T>
void batch_norm_update_running_stats(const T* mean, const T* var, index_t C, index_t n, T momentum,
                                     T* running_mean, T* running_var) {
  FASTNN_CHECK(n > 1, "batch_norm_update_running_stats", "needs more than 1 value per channel, got " << n);
  for (index_t c = 0; c < C; ++c)
    bn_detail::update_running(double(mean[c]), double(var[c]), n, double(momentum), running_mean[c], running_var[c]);
}

// invstd[c] = 1 / sqrt(var[c] + eps).
template <class T>
void batch_norm_invstd(const T* var, index_t C, T eps, T* invstd) {
  for (index_t c = 0; c < C; ++c) invstd[c] = T(1.0 / std::sqrt(double(var[c]) + double(eps)));
}

// The folded inference affine (seed 001 eq. 5.18): scale = gamma / sqrt(var + eps),
// shift = beta - mean * scale, so that eval-mode BN is y = scale * x + shift. gamma/beta may be null.
template <class T>
void batch_norm_fold(const T* gamma, const T* beta, const T* mean, const T* var, index_t C, T eps, T* scale,
                     T* shift) {
  for (index_t c = 0; c < C; ++c) {
    const double s = (gamma ? double(gamma[c]) : 1.0) / std::sqrt(double(var[c]) + double(eps));
    scale[c] = T(s);
    shift[c] = T((beta ? double(beta[c]) : 0.0) - double(mean[c]) * s);
  }
}

// y = scale[c] * x + shift[c] per channel: one multiply-add per element. y may equal x (in place).
template <class T>
void batch_norm_affine(const T* x, index_t N, index_t C, index_t S, const T* scale, const T* shift, T* y) {
  if (S == 1) {  // (N, C): vectorize along the row
    parallel_for(N, C, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) {
        const T* xr = x + i * C;
        T* yr = y + i * C;
        for (index_t c = 0; c < C; ++c) yr[c] = scale[c] * xr[c] + shift[c];
      }
    });
    return;
  }
  parallel_for(N * C, S, [&](index_t p0, index_t p1) {  // planes (n, c) of S contiguous values
    for (index_t p = p0; p < p1; ++p) {
      const T a = scale[p % C], b = shift[p % C];
      const T* xp = x + p * S;
      T* yp = y + p * S;
      for (index_t s = 0; s < S; ++s) yp[s] = a * xp[s] + b;
    }
  });
}

// Eval-mode forward: the folded affine from the running statistics, y = scale * x + shift.
// scale and shift (C values each) receive the folded affine; y may equal x.
template <class T>
void batch_norm_forward_eval(const T* x, index_t N, index_t C, index_t S, const T* gamma, const T* beta,
                             const T* running_mean, const T* running_var, T eps, T* y, T* scale, T* shift) {
  batch_norm_fold(gamma, beta, running_mean, running_var, C, eps, scale, shift);
  batch_norm_affine(x, N, C, S, scale, shift, y);
}

namespace bn_detail {

// One channel's parameter gradients from the sums sg = sum g, sgx = sum g (x - mean) over its n
// values, and its input gradient's coefficients: dx = a g + b (x - mean) + d with a = gamma invstd,
// b = -a invstd dgamma / n, d = -a dbeta / n in training (b = d = 0 in eval mode).
template <class T>
void grad_coefficients(double sg, double sgx, T gamma, T save_invstd, bool training, index_t n, T& dgamma, T& dbeta,
                       T& a, T& b, T& d) {
  const double invstd = double(save_invstd);
  const double db = sg, dgm = sgx * invstd;
  dbeta = T(db);
  dgamma = T(dgm);
  const double A = double(gamma) * invstd;
  a = T(A);
  b = training ? T(-A * invstd * dgm / double(n)) : T(0);
  d = training ? T(-A * db / double(n)) : T(0);
}

// batch_norm_backward's two passes per channel group with the per-element work left to the
// caller: sums_tile(j0, L, col_m, acc_g, acc_gx) must write the column sums of g and of
// g (x - col_m) over the tile [j0, j0 + L); input_tile(j0, L, col_m, col_a, col_b, col_d) must write
// dx = col_a g + col_b (x - col_m) + col_d there. `rows` is the number of T-sized rows that the
// two passes read per channel (what must stay in L2 between them); `cost` parallel_for's work per channel.
// group_start(ca, cb), if given, runs in the thread before the passes over channels [ca, cb).
template <class T, class SumsTile, class InputTile, class GroupStart>
void backward_groups(index_t N, index_t C, index_t S, const T* gamma, const T* save_mean, const T* save_invstd,
                     bool training, T* dgamma, T* dbeta, index_t rows, index_t cost, const char* op,
                     SumsTile&& sums_tile, InputTile&& input_tile, GroupStart&& group_start) {
  const index_t n = N * S;
  FASTNN_CHECK(N > 0 && C > 0 && S > 0, op, "x is empty");
  const index_t k = group_channels<T>(rows, S);
  parallel_for(C, cost, [&](index_t c0, index_t c1) {
    double sg[kMaxGroupChannels], sgx[kMaxGroupChannels], acc_g[kTileCols], acc_gx[kTileCols];
    T mean_c[kMaxGroupChannels], a_c[kMaxGroupChannels], b_c[kMaxGroupChannels], d_c[kMaxGroupChannels];
    T col_m[kTileCols], col_a[kTileCols], col_b[kTileCols], col_d[kTileCols];
    for_each_group(c0, c1, k, [&](index_t ca, index_t cb) {
      const index_t kc = cb - ca;
      group_start(ca, cb);
      std::fill(sg, sg + kc, 0.0);
      std::fill(sgx, sgx + kc, 0.0);
      for (index_t c = 0; c < kc; ++c) mean_c[c] = save_mean[ca + c];
      for_each_tile(ca, cb, S, [&](index_t j0, index_t L) {
        expand_columns(mean_c, j0, L, S, ca, col_m);
        sums_tile(j0, L, col_m, acc_g, acc_gx);
        fold_columns(acc_g, j0, L, S, ca, sg);
        fold_columns(acc_gx, j0, L, S, ca, sgx);
      });
      for (index_t c = 0; c < kc; ++c) {
        const index_t cg = ca + c;
        grad_coefficients(sg[c], sgx[c], gamma ? gamma[cg] : T(1), save_invstd[cg], training, n, dgamma[cg],
                          dbeta[cg], a_c[c], b_c[c], d_c[c]);
      }
      for_each_tile(ca, cb, S, [&](index_t j0, index_t L) {
        expand_columns(mean_c, j0, L, S, ca, col_m);
        expand_columns(a_c, j0, L, S, ca, col_a);
        expand_columns(b_c, j0, L, S, ca, col_b);
        expand_columns(d_c, j0, L, S, ca, col_d);
        input_tile(j0, L, col_m, col_a, col_b, col_d);
      });
    });
  });
}
template <class T, class SumsTile, class InputTile>
void backward_groups(index_t N, index_t C, index_t S, const T* gamma, const T* save_mean, const T* save_invstd,
                     bool training, T* dgamma, T* dbeta, index_t rows, index_t cost, const char* op,
                     SumsTile&& sums_tile, InputTile&& input_tile) {
  backward_groups(N, C, S, gamma, save_mean, save_invstd, training, dgamma, dbeta, rows, cost, op, sums_tile,
                  input_tile, [](index_t, index_t) {});
}

}  // namespace bn_detail

// Backward of batch_norm_forward_train / _eval for upstream gradient g (same layout as x), per
// channel with x_hat = (x - mean) * invstd:
//   dbeta = sum g,  dgamma = sum g x_hat,
//   training: dx = gamma invstd / n * (n g - dbeta - x_hat dgamma)   (mean and var depend on x)
//   eval:     dx = gamma invstd g                                   (running statistics are constants)
// gamma may be null (1); dgamma and dbeta are always written. dx must not alias g or x.
// Two passes per channel group: the sums (g and x read once), then dx (re-read from L2).
template <class T>
void batch_norm_backward(const T* g, const T* x, index_t N, index_t C, index_t S, const T* gamma,
                         const T* save_mean, const T* save_invstd, bool training, T* dx, T* dgamma, T* dbeta) {
  using namespace bn_detail;
  const index_t ld = C * S;
  backward_groups(
      N, C, S, gamma, save_mean, save_invstd, training, dgamma, dbeta, 2 * N, 5 * N * S, "batch_norm_backward",
      [&](index_t j0, index_t L, const T* m, double* acc_g, double* acc_gx) {
        column_grad_sums(g + j0, x + j0, ld, N, L, m, acc_g, acc_gx);
      },
      [&](index_t j0, index_t L, const T* m, const T* a, const T* b, const T* d) {
        column_grad_input(g + j0, x + j0, dx + j0, ld, N, L, m, a, b, d);
      });
}

}  // namespace fastnn
