// Pointwise activations and their derivatives: sigmoid, tanh, relu, leaky_relu, elu, selu, prelu, rrelu.
//
// Every op comes twice:
//   fastnn::serial::<op>_forward / _backward  -- one thread, any slice of the data; the Linear and
//       conv kernels call these on the row block they have just produced (bias + activation fused
//       while the block is in cache).
//   fastnn::<op>_forward / _backward          -- the same on the whole array, split over threads
//       with parallel_for (small arrays stay on one thread).
// All of them accept in-place calls (y == x, grad_in == grad_out): an element is read before it is
// written and never read again. Results do not depend on how the data is sliced (see namespace blockwise),
// so they are the same with any number of threads.
// Backward formulas take what PyTorch saves: the output y for sigmoid/tanh/relu, the input x for
// leaky_relu/elu/selu/prelu, and the noise (per-element slope) for rrelu.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "fastnn/common.h"
#include "fastnn/kernels/blockwise.h"
#include "fastnn/kernels/rng.h"

namespace fastnn {

// PyTorch's SELU constants (Klambauer et al. 2017).
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

namespace serial {

// sigmoid(x) = 1 / (1 + exp(-x)); exp(-x) = inf for very negative x gives 0, not NaN.
template <class T>
void sigmoid_forward(const T* x, T* y, index_t n) {
  using B = blockwise::Block<T>;
  blockwise::map(y, n, [](const B& v) -> B { return (T(1) + (-v).exp()).inverse(); }, x);
}

// d sigmoid = y (1 - y).
template <class T>
void sigmoid_backward(const T* grad_out, const T* y, T* grad_in, index_t n) {
  blockwise::map_plain(grad_in, n, [](T g, T s) { return g * s * (T(1) - s); }, grad_out, y);
}

// float: Eigen's vectorized rational approximation (~2 ulp). double: Eigen 3.4 only has scalar
// std::tanh (~40 ns an element), so tanh|x| = e / (e + 2) with e = expm1(2|x|), |x| capped at 20
// where tanh is 1 in double.
template <class T>
void tanh_forward(const T* x, T* y, index_t n) {
  using B = blockwise::Block<T>;
  if constexpr (sizeof(T) == 4) {
    blockwise::map(y, n, [](const B& v) -> B { return v.tanh(); }, x);
  } else {
    blockwise::map(
        y, n,
        [](const B& v) -> B {
          const B e = blockwise::expm1(B(T(2) * v.abs().min(T(20))));
          const B t = e / (e + T(2));
          return blockwise::cwise([](T xi, T ti) { return xi < T(0) ? -ti : ti; }, v, t);
        },
        x);
  }
}

// d tanh = 1 - y^2, as (1 - y)(1 + y): accurate near |y| = 1 and no a * b + c to fuse.
template <class T>
void tanh_backward(const T* grad_out, const T* y, T* grad_in, index_t n) {
  blockwise::map_plain(grad_in, n, [](T g, T t) { return g * ((T(1) - t) * (T(1) + t)); }, grad_out, y);
}

// relu(x) = max(x, 0); NaN stays NaN, as in PyTorch.
template <class T>
void relu_forward(const T* x, T* y, index_t n) {
  blockwise::map_plain(y, n, [](T a) { return a < T(0) ? T(0) : a; }, x);
}

// The gradient passes where the output is positive.
template <class T>
void relu_backward(const T* grad_out, const T* y, T* grad_in, index_t n) {
  blockwise::map_plain(grad_in, n, [](T g, T r) { return r > T(0) ? g : T(0); }, grad_out, y);
}

// leaky_relu(x) = x if x > 0 else slope * x.
template <class T>
void leaky_relu_forward(const T* x, T* y, index_t n, T negative_slope) {
  blockwise::map_plain(y, n, [=](T a) { return a > T(0) ? a : negative_slope * a; }, x);
}

template <class T>
void leaky_relu_backward(const T* grad_out, const T* x, T* grad_in, index_t n, T negative_slope) {
  blockwise::map_plain(grad_in, n, [=](T g, T a) { return a > T(0) ? g : negative_slope * g; }, grad_out, x);
}

// elu(x) = x if x > 0 else alpha (exp(x) - 1), with expm1 for accuracy near 0.
template <class T>
void elu_forward(const T* x, T* y, index_t n, T alpha) {
  using B = blockwise::Block<T>;
  blockwise::map(
      y, n,
      [=](const B& v) -> B {
        const B em1 = blockwise::expm1(v);  // may overflow to inf where x > 0, which is not selected
        return blockwise::cwise([=](T a, T e) { return a > T(0) ? a : alpha * e; }, v, em1);
      },
      x);
}

// d elu = 1 if x > 0 else alpha exp(x).
template <class T>
void elu_backward(const T* grad_out, const T* x, T* grad_in, index_t n, T alpha) {
  using B = blockwise::Block<T>;
  blockwise::map(
      grad_in, n,
      [=](const B& g, const B& v) -> B {
        const B e = v.exp();
        return blockwise::cwise([=](T gi, T a, T ea) { return a > T(0) ? gi : gi * (alpha * ea); }, g, v, e);
      },
      grad_out, x);
}

// selu(x) = scale * elu(x, alpha) with PyTorch's constants.
template <class T>
void selu_forward(const T* x, T* y, index_t n) {
  using B = blockwise::Block<T>;
  const T scale = T(kSeluScale), scale_alpha = T(kSeluScale * kSeluAlpha);
  blockwise::map(
      y, n,
      [=](const B& v) -> B {
        const B em1 = blockwise::expm1(v);
        return blockwise::cwise([=](T a, T e) { return a > T(0) ? scale * a : scale_alpha * e; }, v, em1);
      },
      x);
}

// d selu = scale if x > 0 else scale alpha exp(x).
template <class T>
void selu_backward(const T* grad_out, const T* x, T* grad_in, index_t n) {
  using B = blockwise::Block<T>;
  const T scale = T(kSeluScale), scale_alpha = T(kSeluScale * kSeluAlpha);
  blockwise::map(
      grad_in, n,
      [=](const B& g, const B& v) -> B {
        const B e = v.exp();
        return blockwise::cwise([=](T gi, T a, T ea) { return a > T(0) ? gi * scale : gi * (scale_alpha * ea); }, g, v,
                                e);
      },
      grad_out, x);
}

// rrelu: y = x if x > 0 else a x, and noise = 1 if x > 0 else a (PyTorch's rrelu_with_noise: at
// x = 0 the gradient is a, like leaky_relu's negative_slope there).
// Training draws a = lower + (upper - lower) u per element, u = rng::uniform of element
// first + i of the stream `key`; eval (training = false) uses a = (lower + upper) / 2.
template <class T>
void rrelu_forward(const T* x, T* y, T* noise, index_t n, double lower, double upper, bool training,
                   std::uint64_t key, index_t first) {
  using B = blockwise::Block<T>;
  constexpr index_t W = blockwise::kBlock<T>;
  const T lo = T(lower), span = T(upper - lower);
  B v, a;
  if (!training) a.setConstant(T((lower + upper) / 2));
  for (index_t i = 0; i < n; i += W) {
    const index_t len = std::min(W, n - i);
    blockwise::load(x + i, len, v);
    if (training) {
      for (index_t j = 0; j < W; ++j) a[j] = rng::uniform<T>(rng::bits(key, static_cast<std::uint64_t>(first + i + j)));
      a = lo + span * a;
    }
    const B slope = blockwise::cwise([](T xi, T ai) { return xi > T(0) ? T(1) : ai; }, v, a);
    blockwise::store(slope, len, noise + i);
    blockwise::store(B(v * slope), len, y + i);
  }
}

template <class T>
void rrelu_backward(const T* grad_out, const T* noise, T* grad_in, index_t n) {
  using B = blockwise::Block<T>;
  blockwise::map_plain(grad_in, n, [](T g, T a) { return g * a; }, grad_out, noise);
}

// prelu on one sample (C, S): y = x if x > 0 else w[c] x, channel c owning S contiguous values.
template <class T>
void prelu_forward(const T* x, const T* weight, T* y, index_t channels, index_t inner) {
  if (inner == 1) {  // (N, C) input: the slope changes every element
    for (index_t c = 0; c < channels; ++c) y[c] = x[c] > T(0) ? x[c] : weight[c] * x[c];
    return;
  }
  for (index_t c = 0; c < channels; ++c) leaky_relu_forward(x + c * inner, y + c * inner, inner, weight[c]);
}

// sum over x < 0 of grad_out * x (the PReLU weight gradient of one slice), accumulated in double
// per lane, in an order fixed by the data. min(x, 0) (not a branch) keeps the loop vectorized.
template <class T>
double negative_part_dot(const T* grad_out, const T* x, index_t n) {
  using B = blockwise::Block<T>;
  constexpr index_t W = blockwise::kBlock<T>;
  std::array<double, W> lane{};
  B g, v;
  for (index_t i = 0; i < n; i += W) {
    const index_t len = std::min(W, n - i);
    blockwise::load(grad_out + i, len, g);  // zero padding adds nothing
    blockwise::load(x + i, len, v);
    const B prod = g * v.min(T(0));
    for (index_t j = 0; j < W; ++j) lane[j] += double(prod[j]);
  }
  double s = 0;
  for (double l : lane) s += l;
  return s;
}

}  // namespace serial

// ---- whole arrays, over threads -----------------------------------------------------------------

template <class T>
void sigmoid_forward(const T* x, T* y, index_t n) {
  parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) { serial::sigmoid_forward(x + b, y + b, e - b); });
}

template <class T>
void sigmoid_backward(const T* grad_out, const T* y, T* grad_in, index_t n) {
  parallel_for(n, blockwise::kCostCheap,
               [=](index_t b, index_t e) { serial::sigmoid_backward(grad_out + b, y + b, grad_in + b, e - b); });
}

template <class T>
void tanh_forward(const T* x, T* y, index_t n) {
  parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) { serial::tanh_forward(x + b, y + b, e - b); });
}

template <class T>
void tanh_backward(const T* grad_out, const T* y, T* grad_in, index_t n) {
  parallel_for(n, blockwise::kCostCheap,
               [=](index_t b, index_t e) { serial::tanh_backward(grad_out + b, y + b, grad_in + b, e - b); });
}

template <class T>
void relu_forward(const T* x, T* y, index_t n) {
  parallel_for(n, blockwise::kCostCheap, [=](index_t b, index_t e) { serial::relu_forward(x + b, y + b, e - b); });
}

template <class T>
void relu_backward(const T* grad_out, const T* y, T* grad_in, index_t n) {
  parallel_for(n, blockwise::kCostCheap,
               [=](index_t b, index_t e) { serial::relu_backward(grad_out + b, y + b, grad_in + b, e - b); });
}

template <class T>
void leaky_relu_forward(const T* x, T* y, index_t n, T negative_slope) {
  parallel_for(n, blockwise::kCostCheap,
               [=](index_t b, index_t e) { serial::leaky_relu_forward(x + b, y + b, e - b, negative_slope); });
}

template <class T>
void leaky_relu_backward(const T* grad_out, const T* x, T* grad_in, index_t n, T negative_slope) {
  parallel_for(n, blockwise::kCostCheap, [=](index_t b, index_t e) {
    serial::leaky_relu_backward(grad_out + b, x + b, grad_in + b, e - b, negative_slope);
  });
}

template <class T>
void elu_forward(const T* x, T* y, index_t n, T alpha) {
  parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) { serial::elu_forward(x + b, y + b, e - b, alpha); });
}

template <class T>
void elu_backward(const T* grad_out, const T* x, T* grad_in, index_t n, T alpha) {
  parallel_for(n, blockwise::kCostExp,
               [=](index_t b, index_t e) { serial::elu_backward(grad_out + b, x + b, grad_in + b, e - b, alpha); });
}

template <class T>
void selu_forward(const T* x, T* y, index_t n) {
  parallel_for(n, blockwise::kCostExp, [=](index_t b, index_t e) { serial::selu_forward(x + b, y + b, e - b); });
}

template <class T>
void selu_backward(const T* grad_out, const T* x, T* grad_in, index_t n) {
  parallel_for(n, blockwise::kCostExp,
               [=](index_t b, index_t e) { serial::selu_backward(grad_out + b, x + b, grad_in + b, e - b); });
}

// Training draws element i from the stream rng::stream_key(seed, step), whatever the slicing.
template <class T>
void rrelu_forward(const T* x, T* y, T* noise, index_t n, double lower, double upper, bool training,
                   std::uint64_t seed, std::uint64_t step) {
  const std::uint64_t key = rng::stream_key(seed, step);
  parallel_for(n, training ? blockwise::kCostExp : blockwise::kCostCheap, [=](index_t b, index_t e) {
    serial::rrelu_forward(x + b, y + b, noise + b, e - b, lower, upper, training, key, b);
  });
}

template <class T>
void rrelu_backward(const T* grad_out, const T* noise, T* grad_in, index_t n) {
  parallel_for(n, blockwise::kCostCheap,
               [=](index_t b, index_t e) { serial::rrelu_backward(grad_out + b, noise + b, grad_in + b, e - b); });
}

// prelu on x viewed as (outer, channels, inner): x (N, C) is (N, C, 1), x (N, C, H, W) is (N, C, H*W),
// and a shared weight (1,) is channels = 1. weight has `channels` entries.
template <class T>
void prelu_forward(const T* x, const T* weight, T* y, index_t outer, index_t channels, index_t inner) {
  if (channels == 1) return leaky_relu_forward(x, y, outer * inner, weight[0]);
  if (inner == 1) {
    parallel_for(outer, channels, [=](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) serial::prelu_forward(x + i * channels, weight, y + i * channels, channels, 1);
    });
    return;
  }
  parallel_for(outer * channels, inner, [=](index_t b, index_t e) {  // rows of `inner` values, one slope each
    for (index_t r = b; r < e; ++r)
      serial::leaky_relu_forward(x + r * inner, y + r * inner, inner, weight[r % channels]);
  });
}

// grad_in = grad_out if x > 0 else w[c] grad_out;  grad_weight[c] = sum over n, s of grad_out x where x < 0.
// Each channel's sum is accumulated in double in an order fixed by the shape (per-channel work is
// split over threads, never one channel's sum), so results do not depend on the thread count.
template <class T>
void prelu_backward(const T* grad_out, const T* x, const T* weight, T* grad_in, T* grad_weight, index_t outer,
                    index_t channels, index_t inner) {
  const index_t sample = channels * inner;
  if (channels == 1) {  // shared slope: one sum over everything, from a fixed number of data chunks
    constexpr index_t kChunks = 64;
    const index_t n = outer * inner, chunk = (n + kChunks - 1) / kChunks;
    std::array<double, kChunks> partial{};
    parallel_for(kChunks, chunk, [&](index_t b, index_t e) {
      for (index_t k = b; k < e; ++k) {
        const index_t lo = std::min(n, k * chunk), len = std::min(n, lo + chunk) - lo;
        partial[k] = serial::negative_part_dot(grad_out + lo, x + lo, len);  // before grad_in: may alias grad_out
        serial::leaky_relu_backward(grad_out + lo, x + lo, grad_in + lo, len, weight[0]);
      }
    });
    double s = 0;
    for (double p : partial) s += p;
    grad_weight[0] = T(s);
    return;
  }
  if (inner == 1) {  // (N, C): tiles of channels, each walking down all rows with one sum per lane
    constexpr index_t W = blockwise::kBlock<T>;
    const index_t tiles = (channels + W - 1) / W;
    parallel_for(tiles, outer * W, [=](index_t b, index_t e) {
      for (index_t t = b; t < e; ++t) {
        const index_t c0 = t * W, width = std::min(W, channels - c0);
        std::array<double, W> acc{};
        for (index_t i = 0; i < outer; ++i) {
          const T *g = grad_out + i * channels + c0, *v = x + i * channels + c0;
          T* gi = grad_in + i * channels + c0;
          for (index_t j = 0; j < width; ++j) {
            gi[j] = v[j] > T(0) ? g[j] : weight[c0 + j] * g[j];
            acc[j] += double(g[j] * std::min(v[j], T(0)));
          }
        }
        for (index_t j = 0; j < width; ++j) grad_weight[c0 + j] = T(acc[j]);
      }
    });
    return;
  }
  parallel_for(channels, outer * inner, [=](index_t b, index_t e) {  // (N, C, S): channels over threads
    for (index_t c = b; c < e; ++c) {
      double acc = 0;
      for (index_t i = 0; i < outer; ++i) {
        const index_t off = i * sample + c * inner;
        acc += serial::negative_part_dot(grad_out + off, x + off, inner);  // before grad_in: may alias grad_out
        serial::leaky_relu_backward(grad_out + off, x + off, grad_in + off, inner, weight[c]);
      }
      grad_weight[c] = T(acc);
    }
  });
}

}  // namespace fastnn
