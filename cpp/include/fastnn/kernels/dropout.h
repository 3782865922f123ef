// Inverted dropout (Srivastava et al. 2014, scaled at train time): y = x * mask / (1 - p), so
// E[y] = x and eval mode is the identity. The mask is counter-based (rng.h): element i is kept iff
// rng::keep(rng::bits(stream_key(seed, step), i), keep_threshold(p)), a pure function of
// (seed, step, i), so any thread count and any chunking give the same bits.
// reference/dropout.py builds the same mask with NumPy.
#pragma once

#include <cstdint>
#include <cstring>

#include "fastnn/common.h"
#include "fastnn/kernels/rng.h"

namespace fastnn {

namespace detail {

// Work per element in parallel_for's units: the fused loop takes ~0.4 ns per element on one
// thread, so inputs below ~16k elements (a few microseconds) stay on one thread.
constexpr index_t kDropoutCost = 4;

// 512-bit vectors for the hash loop: AVX-512DQ multiplies 8 uint64 lanes at once, and gcc's
// default on these CPUs (prefer 256-bit) leaves a third of the speed on the table (measured).
// The attribute only takes effect on an out-of-line function, hence noinline.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512DQ__)
#define FASTNN_DROPOUT_512 __attribute__((target("prefer-vector-width=512"), noinline))
#else
#define FASTNN_DROPOUT_512
#endif

// Elements [begin, end) of the forward. The counter key + (i + 1) * kGamma of rng::bits is
// advanced by addition (the same value mod 2^64), saving one multiply per element. Mask and
// output in one loop, vectorized in 64-bit lanes for the hash and T lanes for the data: the mask
// is never re-read (measured 1.6x faster than a mask pass followed by a scaling pass).
template <class T>
FASTNN_DROPOUT_512 void dropout_forward_range(const T* __restrict x, T* __restrict y, std::uint8_t* __restrict mask,
                                              index_t begin, index_t end, std::uint64_t key, std::uint64_t threshold,
                                              T scale) {
  std::uint64_t counter = key + (static_cast<std::uint64_t>(begin) + 1) * rng::kGamma;
  for (index_t i = begin; i < end; ++i) {
    const bool kept = rng::keep(rng::mix64(counter), threshold);
    counter += rng::kGamma;
    mask[i] = kept;
    // x * 0 rather than a select of 0: a dropped inf/NaN gives NaN, as x * mask / (1 - p) does.
    y[i] = x[i] * (kept ? scale : T(0));
  }
}

}  // namespace detail

// Training-mode forward in one pass: mask[i] = keep(i) (0/1) and y[i] = x[i] * mask[i] / (1 - p).
// x, y, mask: n contiguous elements, y must not overlap x; p in [0, 1). p == 0 copies x and sets
// every mask byte (keep_threshold(0) = 0 keeps every element: the same result, only faster).
template <class T>
void dropout_forward(const T* x, T* y, std::uint8_t* mask, index_t n, double p, std::uint64_t seed,
                     std::uint64_t step) {
  if (p == 0.0) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(T));
    std::memset(mask, 1, static_cast<size_t>(n));
    return;
  }
  const std::uint64_t key = rng::stream_key(seed, step), threshold = rng::keep_threshold(p);
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  parallel_for(n, detail::kDropoutCost, [&](index_t b, index_t e) {
    detail::dropout_forward_range(x, y, mask, b, e, key, threshold, scale);
  });
}

// grad_in[i] = grad_out[i] * mask[i] / (1 - p); grad_in may alias grad_out.
template <class T>
void dropout_backward(const T* grad_out, const std::uint8_t* mask, T* grad_in, index_t n, double p) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  parallel_for(n, 2, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) grad_in[i] = grad_out[i] * (static_cast<T>(mask[i]) * scale);
  });
}

}  // namespace fastnn
