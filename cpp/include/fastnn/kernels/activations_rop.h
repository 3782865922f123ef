// The R-operator of pointwise activations y = f(x), for exact Hessian-vector products:
//   forward:  R{y} = f'(x) rx
//   backward: dx = f'(x) g,  R{dx} = f'(x) rg + f''(x) g rx
// (rx == nullptr: R{x} = 0, the last term vanishes and R{y} is 0). f' and f'' come from what the
// layer kept, as the backward kernels of activations.h read them: the output y for sigmoid, tanh
// and relu, the input x for leaky_relu, elu and selu, the per-element slope for rrelu.
// reference/activations_rop.py holds the same formulas.
#pragma once

#include <cmath>
#include <type_traits>

#include "fastnn/common.h"
#include "fastnn/kernels/activations.h"
#include "fastnn/kernels/blockwise.h"

namespace fastnn {

// The activations, with their first two derivatives at one element.
enum class RopActivation { identity, sigmoid, tanh, relu, leaky_relu, elu, selu, slope };

template <class T>
struct Derivatives {
  T d1, d2;
};

// f'(x), f''(x) from x (the input), y (the output) and the activation's parameter (leaky_relu's
// slope, elu's alpha); `slope` reads the slope from x (rrelu's noise array passed as x).
template <class T>
inline Derivatives<T> derivatives(RopActivation a, T x, T y, T param) {
  switch (a) {
    case RopActivation::identity: return {T(1), T(0)};
    case RopActivation::sigmoid: {
      const T d = y * (T(1) - y);
      return {d, d * (T(1) - T(2) * y)};
    }
    case RopActivation::tanh: {
      const T d = (T(1) - y) * (T(1) + y);
      return {d, T(-2) * y * d};
    }
    case RopActivation::relu: return {y > T(0) ? T(1) : T(0), T(0)};
    case RopActivation::leaky_relu: return {x > T(0) ? T(1) : param, T(0)};
    case RopActivation::elu: {
      if (x > T(0)) return {T(1), T(0)};
      const T e = param * std::exp(x);
      return {e, e};
    }
    case RopActivation::selu: {
      if (x > T(0)) return {T(kSeluScale), T(0)};
      const T e = T(kSeluScale * kSeluAlpha) * std::exp(x);
      return {e, e};
    }
    case RopActivation::slope: return {x, T(0)};
  }
  return {T(1), T(0)};
}

namespace rop_detail {

// Which of x (the input) and y (the output) the derivatives of `a` read.
constexpr bool reads_x(RopActivation a) {
  return a == RopActivation::leaky_relu || a == RopActivation::elu || a == RopActivation::selu ||
         a == RopActivation::slope;
}
constexpr bool reads_y(RopActivation a) {
  return a == RopActivation::sigmoid || a == RopActivation::tanh || a == RopActivation::relu;
}

// f(std::integral_constant<RopActivation, a>): the loops below are compiled once per activation,
// so the switch of derivatives() folds away and they vectorize (one switch and branch per element
// made the ReLU R-ops a sixth of an MLP's H·v).
template <class F>
void with_activation(RopActivation a, F&& f) {
  switch (a) {
    case RopActivation::identity: return f(std::integral_constant<RopActivation, RopActivation::identity>{});
    case RopActivation::sigmoid: return f(std::integral_constant<RopActivation, RopActivation::sigmoid>{});
    case RopActivation::tanh: return f(std::integral_constant<RopActivation, RopActivation::tanh>{});
    case RopActivation::relu: return f(std::integral_constant<RopActivation, RopActivation::relu>{});
    case RopActivation::leaky_relu: return f(std::integral_constant<RopActivation, RopActivation::leaky_relu>{});
    case RopActivation::elu: return f(std::integral_constant<RopActivation, RopActivation::elu>{});
    case RopActivation::selu: return f(std::integral_constant<RopActivation, RopActivation::selu>{});
    case RopActivation::slope: return f(std::integral_constant<RopActivation, RopActivation::slope>{});
  }
}

}  // namespace rop_detail

// ry = f'(x) rx over n elements; x or y may be null where the activation does not read it.
template <class T>
void activation_rop_forward(RopActivation a, const T* x, const T* y, const T* rx, T* ry, index_t n, T param) {
  rop_detail::with_activation(a, [&](auto kind) {
    constexpr RopActivation A = decltype(kind)::value;
    parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) {
      const T* __restrict xs = x;
      const T* __restrict ys = y;
      const T* __restrict r = rx;
      T* __restrict out = ry;
      for (index_t i = b; i < e; ++i) {
        const T xi = rop_detail::reads_x(A) ? xs[i] : T(0), yi = rop_detail::reads_y(A) ? ys[i] : T(0);
        out[i] = derivatives<T>(A, xi, yi, param).d1 * r[i];
      }
    });
  });
}

// dx = f' g and rdx = f' rg + f'' g rx (rx may be null: R{x} = 0).
template <class T>
void activation_rop_backward(RopActivation a, const T* x, const T* y, const T* g, const T* rg, const T* rx, T* dx,
                             T* rdx, index_t n, T param) {
  rop_detail::with_activation(a, [&](auto kind) {
    constexpr RopActivation A = decltype(kind)::value;
    auto run = [=](auto with_rx) {
      parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) {
        const T* __restrict xs = x;
        const T* __restrict ys = y;
        const T* __restrict gs = g;
        const T* __restrict rgs = rg;
        const T* __restrict rxs = rx;
        T* __restrict d = dx;
        T* __restrict rd = rdx;
        for (index_t i = b; i < e; ++i) {
          const T xi = rop_detail::reads_x(A) ? xs[i] : T(0), yi = rop_detail::reads_y(A) ? ys[i] : T(0);
          const Derivatives<T> dv = derivatives<T>(A, xi, yi, param);
          d[i] = dv.d1 * gs[i];
          rd[i] = decltype(with_rx)::value ? dv.d1 * rgs[i] + dv.d2 * gs[i] * rxs[i] : dv.d1 * rgs[i];
        }
      });
    };
    if (rx) run(std::true_type{});
    else run(std::false_type{});
  });
}

// Softmax over rows of `cols` values, y = softmax(x) (log: y = log_softmax(x)), per row in double:
//   softmax:  R{y} = y (rx - y·rx);  dx = y (g - g·y);  R{dx} = R{y} (g - g·y) + y (rg - rg·y - g·R{y})
//   log:      R{y} = rx - p·rx;  dx = g - p sum(g);  R{dx} = rg - p sum(rg) - p R{y} sum(g),  p = exp(y)
template <class T>
void softmax_rop_forward(bool log, const T* y, const T* rx, T* ry, index_t rows, index_t cols) {
  parallel_for(rows, 4 * cols, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const T *yi = y + i * cols, *ri = rx + i * cols;
      T* o = ry + i * cols;
      double dot = 0;
      for (index_t j = 0; j < cols; ++j) dot += (log ? std::exp(double(yi[j])) : double(yi[j])) * ri[j];
      for (index_t j = 0; j < cols; ++j) o[j] = log ? T(ri[j] - dot) : T(yi[j] * (ri[j] - dot));
    }
  });
}

template <class T>
void softmax_rop_backward(bool log, const T* y, const T* ry, const T* g, const T* rg, T* dx, T* rdx, index_t rows,
                          index_t cols) {
  parallel_for(rows, 8 * cols, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const T *yi = y + i * cols, *ryi = ry ? ry + i * cols : nullptr, *gi = g + i * cols, *rgi = rg + i * cols;
      T *d = dx + i * cols, *rd = rdx + i * cols;
      if (log) {
        double sg = 0, srg = 0;
        for (index_t j = 0; j < cols; ++j) sg += gi[j], srg += rgi[j];
        for (index_t j = 0; j < cols; ++j) {
          const double p = std::exp(double(yi[j]));
          d[j] = T(gi[j] - p * sg);
          rd[j] = T(rgi[j] - p * srg - (ryi ? p * ryi[j] * sg : 0.0));
        }
        continue;
      }
      double gy = 0, rgy = 0, gry = 0;
      for (index_t j = 0; j < cols; ++j) {
        gy += double(gi[j]) * yi[j], rgy += double(rgi[j]) * yi[j];
        if (ryi) gry += double(gi[j]) * ryi[j];
      }
      for (index_t j = 0; j < cols; ++j) {
        d[j] = T(yi[j] * (gi[j] - gy));
        rd[j] = T((ryi ? ryi[j] * (gi[j] - gy) : 0.0) + yi[j] * (rgi[j] - rgy - gry));
      }
    }
  });
}

// PReLU y = x if x > 0 else a[c] x on (outer, channels, inner) (channels 1: one shared slope).
//   R{y} = rx if x > 0 else a rx + va x;  R{dx} = rg if x > 0 else a rg + va g;
//   R{da_c} = sum over x <= 0 of (rg x + g rx)  (written =, in double, per channel in a fixed order)
// rx may be null (0); va may be null (a constant slope).
template <class T>
void prelu_rop_forward(const T* x, const T* a, const T* va, const T* rx, T* ry, index_t outer, index_t channels,
                       index_t inner) {
  const index_t n = outer * channels * inner;
  parallel_for(n, 2, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const index_t c = channels == 1 ? 0 : (i / inner) % channels;
      const T r = rx ? rx[i] : T(0);
      ry[i] = x[i] > T(0) ? r : a[c] * r + (va ? va[c] * x[i] : T(0));
    }
  });
}

template <class T>
void prelu_rop_backward(const T* x, const T* a, const T* va, const T* rx, const T* g, const T* rg, T* rdx,
                        T* r_da, index_t outer, index_t channels, index_t inner) {
  const index_t n = outer * channels * inner;
  parallel_for(n, 2, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const index_t c = channels == 1 ? 0 : (i / inner) % channels;
      rdx[i] = x[i] > T(0) ? rg[i] : a[c] * rg[i] + (va ? va[c] * g[i] : T(0));
    }
  });
  if (!r_da) return;
  parallel_for(channels, outer * inner * 2, [=](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      double s = 0;
      for (index_t o = 0; o < outer; ++o)
        for (index_t k = 0; k < inner; ++k) {
          const index_t i = (o * channels + c) * inner + k;
          if (!(x[i] > T(0))) s += double(rg[i]) * x[i] + (rx ? double(g[i]) * rx[i] : 0.0);
        }
      r_da[c] = T(s);
    }
  });
}

}  // namespace fastnn
