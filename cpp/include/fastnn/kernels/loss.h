// Losses and their gradients: softmax cross-entropy (class labels or class probabilities),
// binary cross-entropy with logits, mean squared error. Each has _forward (loss), _backward
// (gradient times an upstream scalar) and _forward_backward (both in one pass, what a training
// step needs). Losses are accumulated in double; per-element work is vectorized in T with Eigen.
// Results depend on the data only, not on the thread count or on where the buffers sit in memory:
// sums run in orders fixed by the sizes (blocks of the data, not of the threads), and exp/log1p
// are evaluated into an aligned stack buffer, because Eigen peels unaligned heads with scalar
// code (std::exp, another summation order) whose last bits differ from its packet code.
// reference/loss.py holds the formulas.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "fastnn/common.h"

namespace fastnn {

// none: one loss per row (cross-entropy, NLL) or per element (the elementwise losses).
enum class Reduction { mean, sum, none };

namespace detail {

// At most this many partial sums per reduction: a fixed, data-determined split (a stack array, no
// allocation) that parallel_for then shares among the threads.
constexpr index_t kMaxSumBlocks = 64;

// sum over blocks b of block_sum(begin_b, end_b), where [0, n) is cut into at most kMaxSumBlocks
// blocks of at least min_block items. The blocks depend on n only, so the result is bit-identical
// for any thread count. block_sum(begin, end) -> double must not throw; cost = work per item.
template <class F>
double blocked_sum(index_t n, index_t min_block, index_t cost, F&& block_sum) {
  const index_t blocks = std::max<index_t>(1, std::min(kMaxSumBlocks, n / std::max<index_t>(min_block, 1)));
  double partial[kMaxSumBlocks];
  parallel_for(blocks, (n / blocks) * cost, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) partial[b] = block_sum(b * n / blocks, (b + 1) * n / blocks);
  });
  double total = 0.0;
  for (index_t b = 0; b < blocks; ++b) total += partial[b];
  return total;
}

// Scale of the gradient and of the loss: 1/count for a mean, 1 for a sum.
inline double reduction_scale(Reduction r, index_t count) { return r == Reduction::mean ? 1.0 / double(count) : 1.0; }

// Elements per inner chunk: the size of the aligned stack buffer into which exp and log1p are
// evaluated (see the top of this file).
constexpr index_t kLossChunk = 256;

template <class T> using AlignedArrMap = Eigen::Map<Arr<T>, Eigen::Aligned64>;
template <class T> constexpr index_t kPacket = Eigen::internal::packet_traits<T>::size;

// buf[0, len) = exp(z[0, len) - m) for len <= kLossChunk, over whole packets (the tail padded with
// zeros): Eigen evaluates a partial packet with scalar std::exp, ~10x slower per element, and 10
// classes are all tail. buf holds kLossChunk values, 64-byte aligned.
template <class T>
inline void exp_shifted_chunk(const T* z, T m, index_t len, T* buf) {
  const index_t padded = (len + kPacket<T> - 1) / kPacket<T> * kPacket<T>;
  ArrMap<T>(buf, len) = CArrMap<T>(z, len) - m;
  std::fill(buf + len, buf + padded, T(0));
  AlignedArrMap<T>(buf, padded) = AlignedArrMap<T>(buf, padded).exp();
}

// sum of term(k) for k in [0, n) in double, in an order fixed by n: 16 interleaved partial sums
// (gcc vectorizes the lanes; Eigen's cast<double>().sum() runs as one serial chain of adds).
template <class Term>
double sum_in_double(index_t n, Term&& term) {
  constexpr index_t kLanes = 16;
  double lane[kLanes] = {};
  index_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (index_t j = 0; j < kLanes; ++j) lane[j] += static_cast<double>(term(k + j));
  for (index_t j = 0; k + j < n; ++j) lane[j] += static_cast<double>(term(k + j));
  for (index_t width = kLanes / 2; width > 0; width /= 2)
    for (index_t j = 0; j < width; ++j) lane[j] += lane[j + width];
  return lane[0];
}

}  // namespace detail

// ---- softmax cross-entropy ----------------------------------------------------------------------
// loss_i = -sum_c t_ic log softmax(z_i)_c = lse(z_i) sum_c t_ic - sum_c t_ic z_ic, with
// lse(z) = max(z) + log sum_c exp(z_c - max(z)) (no overflow for large logits).
// d loss_i / d z_i = softmax(z_i) sum_c t_ic - t_i.

// Target of class labels: row i is one-hot(labels[i]), labels[i] in [0, c) (see find_bad_label).
template <class L>
struct ClassLabels {
  static_assert(std::is_integral_v<L>, "class labels are integers");
  const L* labels;
};

// Target of class probabilities (or one-hot rows): a C-contiguous (n, c) array.
template <class T>
struct ClassProbs {
  const T* probs;
};

// Index of the first label outside [0, c), or -1 when all are valid. Call before the kernels.
template <class L>
index_t find_bad_label(const L* labels, index_t n, index_t c) {
  for (index_t i = 0; i < n; ++i)
    if (labels[i] < 0 || static_cast<index_t>(labels[i]) >= c) return i;
  return -1;
}

namespace detail {

// Loss of row i given lse = log sum exp(z_i); g, when not null, holds exp(z_i - max z_i) with sum
// s and becomes (softmax * sum t - t) * scale.
template <class T, class L>
double ce_row(const ClassLabels<L>& t, index_t i, const T* z, T* g, index_t c, T s, double lse, T scale) {
  const index_t y = static_cast<index_t>(t.labels[i]);
  if (g) {
    ArrMap<T>(g, c) *= scale / s;
    g[y] -= scale;
  }
  return lse - double(z[y]);
}
template <class T>
double ce_row(const ClassProbs<T>& t, index_t i, const T* z, T* g, index_t c, T s, double lse, T scale) {
  const T* ti = t.probs + i * c;
  const double t_sum = sum_in_double(c, [&](index_t k) { return ti[k]; });
  const double tz_sum = sum_in_double(c, [&](index_t k) { return ti[k] * z[k]; });
  if (g) {
    ArrMap<T> gi(g, c);
    gi = gi * (scale * static_cast<T>(t_sum) / s) - scale * CArrMap<T>(ti, c);
  }
  return lse * t_sum - tz_sum;
}

template <class X> struct is_class_labels : std::false_type {};
template <class L> struct is_class_labels<ClassLabels<L>> : std::true_type {};

// At most this many classes go through ce_rows_lanes.
constexpr index_t kLaneClasses = 32;

// ce_rows for class labels and few classes, one SIMD lane per row: a block of rows is transposed
// into c packets, so max, exp, sum and log run once per packet of rows. Row by row, 10 classes
// fill 10 of 16 lanes of one exp and need a scalar log each: this is ~6x faster.
template <class T, class L>
double ce_rows_lanes(const T* logits, const ClassLabels<L>& t, T* grad, index_t r0, index_t r1, index_t c, T scale) {
  using namespace Eigen::internal;
  using P = typename packet_traits<T>::type;
  constexpr index_t S = unpacket_traits<P>::size;
  alignas(64) T zt[kLaneClasses * S];  // zt[k * S + lane] = logit k of row r + lane
  alignas(64) T lse[S];
  double loss = 0.0;
  for (index_t r = r0; r < r1; r += S) {
    const index_t rows = std::min(S, r1 - r);
    for (index_t k = 0; k < c; ++k) {
      for (index_t lane = 0; lane < rows; ++lane) zt[k * S + lane] = logits[(r + lane) * c + k];
      for (index_t lane = rows; lane < S; ++lane) zt[k * S + lane] = T(0);
    }
    P m = pload<P>(zt);
    for (index_t k = 1; k < c; ++k) m = pmax(m, pload<P>(zt + k * S));
    P s = pset1<P>(T(0));
    for (index_t k = 0; k < c; ++k) {
      const P e = pexp(psub(pload<P>(zt + k * S), m));
      pstore(zt + k * S, e);
      s = padd(s, e);
    }
    pstore(lse, padd(m, plog(s)));
    if (grad) {
      const P f = pdiv(pset1<P>(scale), s);
      for (index_t k = 0; k < c; ++k) pstore(zt + k * S, pmul(pload<P>(zt + k * S), f));
    }
    for (index_t lane = 0; lane < rows; ++lane) {
      const index_t i = r + lane, y = static_cast<index_t>(t.labels[i]);
      loss += double(lse[lane]) - double(logits[i * c + y]);
      if (!grad) continue;
      T* g = grad + i * c;
      for (index_t k = 0; k < c; ++k) g[k] = zt[k * S + lane];
      g[y] -= scale;
    }
  }
  return loss;
}

// Sum over rows [r0, r1) of the loss; with grad != nullptr also writes grad rows scaled by `scale`.
template <class T, class Target>
double ce_rows(const T* logits, const Target& target, T* grad, index_t r0, index_t r1, index_t c, T scale) {
  if constexpr (is_class_labels<Target>::value)
    if (c <= kLaneClasses) return ce_rows_lanes(logits, target, grad, r0, r1, c, scale);
  alignas(64) T buf[kLossChunk];
  double loss = 0.0;
  for (index_t i = r0; i < r1; ++i) {
    const T* z = logits + i * c;
    T* g = grad ? grad + i * c : nullptr;
    const T m = CArrMap<T>(z, c).maxCoeff();
    T s = 0;
    for (index_t k = 0; k < c; k += kLossChunk) {
      const index_t len = std::min(kLossChunk, c - k);
      exp_shifted_chunk(z + k, m, len, buf);
      AlignedArrMap<T> e(buf, len);
      s += e.sum();
      if (g) ArrMap<T>(g + k, len) = e;
    }
    loss += ce_row(target, i, z, g, c, s, double(m) + std::log(double(s)), scale);
  }
  return loss;
}

template <class T, class Target>
double cross_entropy(const T* logits, const Target& target, T* grad, index_t n, index_t c, double grad_scale,
                     Reduction r) {
  const double scale = reduction_scale(r, n);
  const T gscale = static_cast<T>(grad_scale * scale);
  const index_t min_rows = std::max<index_t>(1, 2048 / c);
  return scale * blocked_sum(n, min_rows, 16 * c, [&](index_t r0, index_t r1) {
           return ce_rows(logits, target, grad, r0, r1, c, gscale);
         });
}

}  // namespace detail

// Cross-entropy of logits (n, c) against `target` (ClassLabels or ClassProbs), mean over rows or sum.
template <class T, class Target>
double cross_entropy_forward(const T* logits, const Target& target, index_t n, index_t c,
                             Reduction r = Reduction::mean) {
  return detail::cross_entropy(logits, target, static_cast<T*>(nullptr), n, c, 1.0, r);
}

// grad_logits (n, c) = d(grad * loss)/d logits = (softmax(z) sum t - t) * grad / n (mean) or * grad (sum).
template <class T, class Target>
void cross_entropy_backward(const T* logits, const Target& target, T* grad_logits, index_t n, index_t c,
                            double grad = 1.0, Reduction r = Reduction::mean) {
  detail::cross_entropy(logits, target, grad_logits, n, c, grad, r);
}

// Loss and grad_logits (upstream gradient 1) in one pass over the logits.
template <class T, class Target>
double cross_entropy_forward_backward(const T* logits, const Target& target, T* grad_logits, index_t n, index_t c,
                                      Reduction r = Reduction::mean) {
  return detail::cross_entropy(logits, target, grad_logits, n, c, 1.0, r);
}

// ---- binary cross-entropy with logits -----------------------------------------------------------
// loss_i = max(z, 0) - z t + log(1 + exp(-|z|))   (= -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)))
// d loss_i / d z = sigmoid(z) - t, sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) else, e = exp(-|z|).

namespace detail {

template <class T>
double bce_chunk(const T* z, const T* t, T* grad, index_t n, T scale) {
  alignas(64) T buf[kLossChunk];
  AlignedArrMap<T> e(buf, n);
  CArrMap<T> zi(z, n), ti(t, n);
  e = (-zi.abs()).exp();
  if (grad) {
    ArrMap<T> g(grad, n);
    g = T(1) / (T(1) + e);  // sigmoid(|z|); sigmoid(-|z|) = e sigmoid(|z|): one division
    g = ((zi >= T(0)).select(g, e * g) - ti) * scale;
  }
  e = zi.max(T(0)) - zi * ti + e.log1p();
  return sum_in_double(n, [&](index_t k) { return buf[k]; });
}

template <class T>
double bce(const T* logits, const T* target, T* grad, index_t n, double grad_scale, Reduction r) {
  const double scale = reduction_scale(r, n);
  const T gscale = static_cast<T>(grad_scale * scale);
  return scale * blocked_sum(n, 4 * kLossChunk, 24, [&](index_t b, index_t e) {
           double loss = 0.0;
           for (index_t i = b; i < e; i += kLossChunk)
             loss += bce_chunk(logits + i, target + i, grad ? grad + i : nullptr, std::min(kLossChunk, e - i), gscale);
           return loss;
         });
}

}  // namespace detail

// Binary cross-entropy with logits over n elements (any shape), mean or sum.
template <class T>
double binary_cross_entropy_with_logits_forward(const T* logits, const T* target, index_t n,
                                                Reduction r = Reduction::mean) {
  return detail::bce(logits, target, static_cast<T*>(nullptr), n, 1.0, r);
}

// grad_logits = (sigmoid(z) - t) * grad / n (mean) or * grad (sum).
template <class T>
void binary_cross_entropy_with_logits_backward(const T* logits, const T* target, T* grad_logits, index_t n,
                                               double grad = 1.0, Reduction r = Reduction::mean) {
  detail::bce(logits, target, grad_logits, n, grad, r);
}

template <class T>
double binary_cross_entropy_with_logits_forward_backward(const T* logits, const T* target, T* grad_logits, index_t n,
                                                         Reduction r = Reduction::mean) {
  return detail::bce(logits, target, grad_logits, n, 1.0, r);
}

// ---- mean squared error -------------------------------------------------------------------------
// loss = sum (x - t)^2 / n (mean) or sum (x - t)^2; d loss / d x = 2 (x - t) / n.

namespace detail {

template <class T>
double mse_chunk(const T* x, const T* t, T* grad, index_t n, T scale) {
  if (grad) ArrMap<T>(grad, n) = (CArrMap<T>(x, n) - CArrMap<T>(t, n)) * (T(2) * scale);
  return sum_in_double(n, [&](index_t k) { return (x[k] - t[k]) * (x[k] - t[k]); });
}

template <class T>
double mse(const T* input, const T* target, T* grad, index_t n, double grad_scale, Reduction r) {
  const double scale = reduction_scale(r, n);
  const T gscale = static_cast<T>(grad_scale * scale);
  return scale * blocked_sum(n, 4 * kLossChunk, 4, [&](index_t b, index_t e) {
           double loss = 0.0;
           for (index_t i = b; i < e; i += kLossChunk)
             loss += mse_chunk(input + i, target + i, grad ? grad + i : nullptr, std::min(kLossChunk, e - i), gscale);
           return loss;
         });
}

}  // namespace detail

template <class T>
double mse_forward(const T* input, const T* target, index_t n, Reduction r = Reduction::mean) {
  return detail::mse(input, target, static_cast<T*>(nullptr), n, 1.0, r);
}

// grad_input = 2 (input - target) * grad / n (mean) or * grad (sum).
template <class T>
void mse_backward(const T* input, const T* target, T* grad_input, index_t n, double grad = 1.0,
                  Reduction r = Reduction::mean) {
  detail::mse(input, target, grad_input, n, grad, r);
}

template <class T>
double mse_forward_backward(const T* input, const T* target, T* grad_input, index_t n, Reduction r = Reduction::mean) {
  return detail::mse(input, target, grad_input, n, 1.0, r);
}

// ---- PyTorch's loss options: the general kernels ----------------------------------------------
// class weights, label smoothing and ignore_index (cross-entropy, NLL), element weights and
// pos_weight (BCE), per-row weights (fit's sample_weight / class_weight: they scale each row's
// loss, not the mean's divisor, as Keras does), reduction "none", and the robust regression losses.
// The fast kernels above are these with no option set; these run in the same fixed summation order.

struct LossOptions {
  const double* class_weight = nullptr;  // (c,) torch's weight= of cross-entropy / NLL
  const double* weight = nullptr;        // (n,) torch's weight= of the elementwise losses (broadcast by the caller)
  const double* pos_weight = nullptr;    // (cols,) BCE: weight of the positive term per column
  const double* row_weight = nullptr;    // (rows,) multiplies each row's loss (sample weights)
  index_t cols = 1;                      // elementwise: values per row (row_weight and pos_weight index)
  double label_smoothing = 0;            // cross-entropy: target (1 - eps) t + eps / c
  std::int64_t ignore_index = -100;      // class labels equal to it contribute 0 and leave the mean's divisor
  double param = 1;                      // smooth_l1: beta; huber: delta

  bool plain() const { return !class_weight && !weight && !pos_weight && !row_weight && label_smoothing == 0; }
};

// Index of the first label outside [0, c) that is not ignore_index, or -1.
template <class L>
index_t find_bad_label(const L* labels, index_t n, index_t c, std::int64_t ignore_index) {
  for (index_t i = 0; i < n; ++i)
    if (static_cast<std::int64_t>(labels[i]) != ignore_index && (labels[i] < 0 || static_cast<index_t>(labels[i]) >= c))
      return i;
  return -1;
}

// Whether some label equals ignore_index (then the general kernel runs: the fast one counts every row).
template <class L>
bool has_ignored_label(const L* labels, index_t n, std::int64_t ignore_index) {
  for (index_t i = 0; i < n; ++i)
    if (static_cast<std::int64_t>(labels[i]) == ignore_index) return true;
  return false;
}

namespace detail {

inline double class_w(const LossOptions& o, index_t k) { return o.class_weight ? o.class_weight[k] : 1.0; }
inline double row_w(const LossOptions& o, index_t i) { return o.row_weight ? o.row_weight[i] : 1.0; }

// The divisor of reduction "mean" for class labels: the summed class weight of the rows that are
// not ignored (torch's weighted mean; their count without class weights). For probabilities: n.
template <class L>
double label_divisor(const L* labels, index_t n, const LossOptions& o) {
  double d = 0;
  for (index_t i = 0; i < n; ++i)
    if (static_cast<std::int64_t>(labels[i]) != o.ignore_index) d += class_w(o, static_cast<index_t>(labels[i]));
  return d;
}

// Row i of the general cross-entropy. Its effective target q (class weights, smoothing and the row
// weight folded in) gives loss = lse * sum q - sum q z and gradient softmax * sum q - q.
// q_c = r ((1 - eps) w_y [c = y] + eps / c w_c) for a label y; r w_c ((1 - eps) t_c + eps / c) for probabilities.
template <class T, class Target>
double ce_general_row(const T* z, const Target& t, index_t i, T* g, index_t c, const LossOptions& o, double scale) {
  alignas(64) T buf[kLossChunk];
  const double r = row_w(o, i), eps = o.label_smoothing, smooth = eps / double(c);
  double a = 0;  // labels: the weight of the label's one-hot part
  index_t y = -1;
  if constexpr (is_class_labels<Target>::value) {
    if (static_cast<std::int64_t>(t.labels[i]) == o.ignore_index) {
      if (g) std::fill(g, g + c, T(0));
      return 0.0;
    }
    y = static_cast<index_t>(t.labels[i]);
    a = r * (1 - eps) * class_w(o, y);
  }
  auto q = [&](index_t k) -> double {
    if constexpr (is_class_labels<Target>::value) return (k == y ? a : 0.0) + r * smooth * class_w(o, k);
    else return r * class_w(o, k) * ((1 - eps) * double(t.probs[i * c + k]) + smooth);
  };
  const T m = CArrMap<T>(z, c).maxCoeff();
  double s = 0;
  for (index_t k = 0; k < c; k += kLossChunk) {
    const index_t len = std::min(kLossChunk, c - k);
    exp_shifted_chunk(z + k, m, len, buf);
    s += sum_in_double(len, [&](index_t j) { return buf[j]; });
    if (g) std::copy(buf, buf + len, g + k);
  }
  const double lse = double(m) + std::log(s);
  const double q_sum = sum_in_double(c, q), qz_sum = sum_in_double(c, [&](index_t k) { return q(k) * double(z[k]); });
  if (g) {
    const double f = scale * q_sum / s;
    for (index_t k = 0; k < c; ++k) g[k] = static_cast<T>(double(g[k]) * f - scale * q(k));
  }
  return lse * q_sum - qz_sum;
}

// Row i of NLL on log-probabilities x: loss = -r w_y x_y, gradient -r w_y at y.
template <class T, class L>
double nll_row(const T* x, const ClassLabels<L>& t, index_t i, T* g, index_t c, const LossOptions& o, double scale) {
  if (g) std::fill(g, g + c, T(0));
  if (static_cast<std::int64_t>(t.labels[i]) == o.ignore_index) return 0.0;
  const index_t y = static_cast<index_t>(t.labels[i]);
  const double w = row_w(o, i) * class_w(o, y);
  if (g) g[y] = static_cast<T>(-w * scale);
  return -w * double(x[y]);
}

// Sums row(i) over the rows in a data-determined order; with per_row writes each row's loss.
template <class Row>
double rows_sum(index_t n, index_t c, double* per_row, Row&& row) {
  return blocked_sum(n, std::max<index_t>(1, 2048 / c), 16 * c, [&](index_t r0, index_t r1) {
    double loss = 0;
    for (index_t i = r0; i < r1; ++i) {
      const double li = row(i);
      if (per_row) per_row[i] = li;
      loss += li;
    }
    return loss;
  });
}

// 1 / divisor of the reduction; mean_divisor() is evaluated for "mean" only.
template <class F>
double reduction_factor(Reduction r, F&& mean_divisor) {
  return r == Reduction::mean ? 1.0 / mean_divisor() : 1.0;
}

}  // namespace detail

// Cross-entropy of logits (n, c) with the options: returns the reduced loss (0 for "none"), writes
// the per-row losses into per_row (n) when not null and the gradient of grad * loss into grad_logits
// when not null. For "none" the gradient is that of the sum (give row weights for upstream gradients).
template <class T, class Target>
double cross_entropy_general(const T* logits, const Target& target, T* grad_logits, double* per_row, index_t n,
                             index_t c, const LossOptions& o, double grad = 1.0, Reduction r = Reduction::mean) {
  const double f = detail::reduction_factor(r, [&] {
    if constexpr (detail::is_class_labels<Target>::value) return detail::label_divisor(target.labels, n, o);
    else return double(n);
  });
  const double total = detail::rows_sum(n, c, per_row, [&](index_t i) {
    return detail::ce_general_row(logits + i * c, target, i, grad_logits ? grad_logits + i * c : nullptr, c, o,
                                  grad * f);
  });
  return r == Reduction::none ? 0.0 : total * f;
}

// Negative log-likelihood of log-probabilities (n, c) against class labels, as cross_entropy_general.
template <class T, class L>
double nll_general(const T* input, const ClassLabels<L>& target, T* grad_input, double* per_row, index_t n, index_t c,
                   const LossOptions& o, double grad = 1.0, Reduction r = Reduction::mean) {
  const double f = detail::reduction_factor(r, [&] { return detail::label_divisor(target.labels, n, o); });
  const double total = detail::rows_sum(n, c, per_row, [&](index_t i) {
    return detail::nll_row(input + i * c, target, i, grad_input ? grad_input + i * c : nullptr, c, o, grad * f);
  });
  return r == Reduction::none ? 0.0 : total * f;
}

// ---- elementwise losses with options -------------------------------------------------------------
// Each kind gives the loss of one element and its derivative d loss / d x (x the input, t the target,
// pw the BCE positive weight, p the parameter).
enum class ElementLoss { bce_with_logits, mse, l1, smooth_l1, huber };

template <ElementLoss K>
struct ElementTerm {
  // BCE: -pw t log s(x) - (1 - t) log(1 - s(x)) as the plain stable form plus the pos_weight term
  // (pw - 1) t (-log s(x)); derivative s(x) - t - (pw - 1) t s(-x) (no 1 - s(x) cancels).
  static double value(double x, double t, double pw, double p, double* d) {
    if constexpr (K == ElementLoss::bce_with_logits) {
      const double e = std::exp(-std::abs(x)), l1p = std::log1p(e);
      const double sig = x >= 0 ? 1 / (1 + e) : e / (1 + e), sig_neg = x >= 0 ? e / (1 + e) : 1 / (1 + e);
      *d = sig - t - (pw - 1) * t * sig_neg;
      return std::max(x, 0.0) - x * t + l1p + (pw - 1) * t * (l1p + std::max(-x, 0.0));
    } else if constexpr (K == ElementLoss::mse) {
      *d = 2 * (x - t);
      return (x - t) * (x - t);
    } else if constexpr (K == ElementLoss::l1) {
      const double u = x - t;
      *d = u > 0 ? 1.0 : (u < 0 ? -1.0 : 0.0);
      return std::abs(u);
    } else if constexpr (K == ElementLoss::smooth_l1) {  // beta = p; beta 0 is L1 (torch)
      const double u = x - t, a = std::abs(u);
      if (a < p) return *d = u / p, 0.5 * u * u / p;
      *d = u > 0 ? 1.0 : (u < 0 ? -1.0 : 0.0);
      return a - 0.5 * p;
    } else {  // huber, delta = p
      const double u = x - t, a = std::abs(u);
      if (a < p) return *d = u, 0.5 * u * u;
      *d = u > 0 ? p : -p;
      return p * (a - 0.5 * p);
    }
  }
};

namespace detail {

template <ElementLoss K, class T>
double elementwise_general(const T* x, const T* t, T* grad, double* per_elem, index_t n, const LossOptions& o,
                           double gscale) {
  const index_t cols = std::max<index_t>(o.cols, 1);
  return blocked_sum(n, 4 * kLossChunk, 24, [&](index_t b, index_t e) {
    return sum_in_double(e - b, [&](index_t j) {
      const index_t k = b + j;
      const double w = (o.weight ? o.weight[k] : 1.0) * (o.row_weight ? o.row_weight[k / cols] : 1.0);
      double d;
      const double v = w * ElementTerm<K>::value(double(x[k]), double(t[k]), o.pos_weight ? o.pos_weight[k % cols] : 1.0,
                                                 o.param, &d);
      if (grad) grad[k] = static_cast<T>(w * d * gscale);
      if (per_elem) per_elem[k] = v;
      return v;
    });
  });
}

}  // namespace detail

// Elementwise loss of kind K over n elements with the options: as cross_entropy_general, mean
// divides by n (torch: also with element weights), per_elem (n) gets the losses when not null.
template <ElementLoss K, class T>
double elementwise_loss(const T* input, const T* target, T* grad_input, double* per_elem, index_t n,
                        const LossOptions& o, double grad = 1.0, Reduction r = Reduction::mean) {
  const double f = detail::reduction_factor(r, [&] { return double(n); });
  const double total = detail::elementwise_general<K>(input, target, grad_input, per_elem, n, o, grad * f);
  return r == Reduction::none ? 0.0 : total * f;
}

}  // namespace fastnn
