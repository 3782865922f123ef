// Elementwise work on fixed-size blocks (map, sum, dot, expm1): the same SIMD code for every
// element whatever the address of the data, so results do not depend on how it is sliced between
// threads or where a buffer lies (the reductions add their lanes in a fixed order).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

#include "fastnn/common.h"

namespace fastnn {

namespace blockwise {

// Transcendental math (exp, tanh, expm1) runs on fixed-size, aligned blocks, so Eigen evaluates every
// element with the same SIMD code. (On unaligned maps Eigen computes the unaligned head and the tail
// with scalar code that can differ from the SIMD code in the last bit; results would then depend on
// where a thread's slice starts.) 256 bytes = whole registers at any SIMD width; a short last block is
// zero-padded.
template <class T> constexpr index_t kBlock = 256 / sizeof(T);
template <class T> using Block = Eigen::Array<T, kBlock<T>, 1>;

template <class T>
inline void load(const T* p, index_t len, Block<T>& b) {
  if (len == kBlock<T>) {
    b = Eigen::Map<const Block<T>>(p);
  } else {
    b.setZero();
    std::copy_n(p, len, b.data());
  }
}

template <class T>
inline void store(const Block<T>& b, index_t len, T* p) {
  if (len == kBlock<T>) {
    Eigen::Map<Block<T>> dst(p);
    dst = b;
  } else {
    std::copy_n(b.data(), len, p);
  }
}

// out[i] = f(in_1, ..., in_k)[i] block by block; f takes k Blocks and returns a Block. out may be
// one of the inputs.
template <class T, class F, class... In>
inline void map(T* out, index_t n, F&& f, const In*... in) {
  std::array<Block<T>, sizeof...(In)> b;
  for (index_t i = 0; i < n; i += kBlock<T>) {
    const index_t len = std::min(kBlock<T>, n - i);
    std::size_t k = 0;
    (load(in + i, len, b[k++]), ...);
    const Block<T> r = std::apply([&](const auto&... bs) -> Block<T> { return f(bs...); }, b);
    store(r, len, out + i);
  }
}

// r[j] = f(a[j], b[j], ...) for the scalar function f: a fixed-length loop that gcc vectorizes
// (Eigen 3.4's select() is not vectorized, so piecewise formulas are written as scalar ternaries).
template <class F, class B, class... Bs>
inline B cwise(F&& f, const B& a, const Bs&... bs) {
  B r;
  for (index_t j = 0; j < B::SizeAtCompileTime; ++j) r[j] = f(a[j], bs[j]...);
  return r;
}

// out[i] = f(in_1[i], ...) as a plain loop (gcc vectorizes it, with a scalar remainder), for f made
// only of +, -, *, comparisons and selects: those round identically in SIMD and scalar code, so the
// block copies are not needed (they cost ~4% on memory-bound arrays). f must avoid a * b + c forms,
// which gcc may fuse into an FMA (-ffp-contract=fast).
template <class T, class F, class... In>
inline void map_plain(T* out, index_t n, F&& f, const In*... in) {
  for (index_t i = 0; i < n; ++i) out[i] = f(in[i]...);
}

// sum_i a[i] and sum_i a[i] b[i], accumulated per lane of a Block: the order of the additions depends
// on i only (Eigen's own sum() on a map depends on the address's alignment, so a copy of the data
// could sum differently).
template <class T>
inline T sum(const T* a, index_t n) {
  Block<T> acc = Block<T>::Zero(), v;
  for (index_t i = 0; i < n; i += kBlock<T>) {
    load(a + i, std::min(kBlock<T>, n - i), v);  // zero padding adds nothing
    acc += v;
  }
  return acc.sum();
}

template <class T>
inline T dot(const T* a, const T* b, index_t n) {
  Block<T> acc = Block<T>::Zero(), u, v;
  for (index_t i = 0; i < n; i += kBlock<T>) {
    const index_t len = std::min(kBlock<T>, n - i);
    load(a + i, len, u);
    load(b + i, len, v);
    acc += u * v;
  }
  return acc.sum();
}

// exp(x) - 1 without cancellation near 0: the Taylor polynomial where |x| < 1/2 (truncation error
// below half an ulp: 0.5^9/9! for float, 0.5^15/15! for double), exp(x) - 1 elsewhere, where the
// subtraction is exact for exp(x) in [1/2, 2] (Sterbenz). About twice as fast as Eigen's expm1 (which
// needs exp, log and a division) and within ~2 ulp; Eigen 3.4 has no vectorized expm1 for double.
template <class T>
inline Block<T> expm1(const Block<T>& x) {
  constexpr int kDegree = sizeof(T) == 4 ? 8 : 14;
  T inv_factorial[kDegree + 1] = {T(1)};
  for (int k = 1; k <= kDegree; ++k) inv_factorial[k] = inv_factorial[k - 1] / T(k);
  Block<T> p = Block<T>::Constant(inv_factorial[kDegree]);
  for (int k = kDegree - 1; k >= 1; --k) p = p * x + inv_factorial[k];  // Horner
  p *= x;
  const Block<T> e = x.exp() - T(1);
  return cwise([](T xi, T pi, T ei) { return std::abs(xi) < T(0.5) ? pi : ei; }, x, p, e);
}

// Work of one element, for parallel_for's threshold.
constexpr index_t kCostCheap = 1;
constexpr index_t kCostExp = 4;

}  // namespace blockwise

}  // namespace fastnn
