// The R-operator of pointwise activations y = f(x), for exact Hessian-vector products:
//   forward:  R{y} = f'(x) rx
//   backward: dx = f'(x) g,  R{dx} = f'(x) rg + f''(x) g rx
// (rx == nullptr: R{x} = 0, the last term vanishes and R{y} is 0). f' and f'' come from what the
// layer kept, as the backward kernels of activations.h read them: the output y for sigmoid, tanh
// and relu, the input x for leaky_relu, elu and selu, the per-element slope for rrelu.
// reference/activations_rop.py holds the same formulas.
#pragma once

#include <cmath>

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

// ry = f'(x) rx over n elements; x or y may be null where the activation does not read it.
template <class T>
void activation_rop_forward(RopActivation a, const T* x, const T* y, const T* rx, T* ry, index_t n, T param) {
  parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) ry[i] = derivatives<T>(a, x ? x[i] : T(0), y ? y[i] : T(0), param).d1 * rx[i];
  });
}

// dx = f' g and rdx = f' rg + f'' g rx (rx may be null: R{x} = 0).
template <class T>
void activation_rop_backward(RopActivation a, const T* x, const T* y, const T* g, const T* rg, const T* rx, T* dx,
                             T* rdx, index_t n, T param) {
  parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const Derivatives<T> d = derivatives<T>(a, x ? x[i] : T(0), y ? y[i] : T(0), param);
      dx[i] = d.d1 * g[i];
      rdx[i] = d.d1 * rg[i] + (rx ? d.d2 * g[i] * rx[i] : T(0));
    }
  });
}

}  // namespace fastnn
