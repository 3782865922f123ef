// Explicit SIMD for the optimizer update loops (adam.h, rmsprop.h, adagrad.h): one pass that reads
// every input once and writes every output once, in packets of Eigen's native width for the ISA the
// module is compiled for (16 floats with AVX-512, 8 with AVX2, 4 with SSE2, 1 without SIMD).
//
// Same bits wherever an element sits: the last, partial packet of a run goes through the same
// packet code on a zero-padded copy (no scalar tail, no peeled head; loads are unaligned), so
// results do not depend on buffer alignment, block or segment boundaries, or the thread count.
// The build is ISO C++ without -ffast-math (gcc: -ffp-contract=off), so the compiler neither
// contracts nor reassociates: the fused multiply-adds are exactly the pmadd / pnmadd written here.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cstddef>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "fastnn/common.h"
#include "fastnn/optim/exact_sqrt.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace fastnn::simd {

template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T>
constexpr index_t kWidth = Eigen::internal::unpacket_traits<Packet<T>>::size;

using Eigen::internal::padd;
using Eigen::internal::pdiv;
using Eigen::internal::pmadd;  // a*b + c: one rounding where the ISA has FMA
using Eigen::internal::pmul;
using Eigen::internal::pset1;
using Eigen::internal::psub;

template <class P, class T>
P load(const T* x) {
  return Eigen::internal::ploadu<P>(x);
}
template <class T, class P>
void store(T* x, const P& a) {
  Eigen::internal::pstoreu(x, a);
}

// max(a, b), NaN if either is NaN (torch.maximum).
template <class P>
P pmax_nan(const P& a, const P& b) {
  return Eigen::internal::pmax<Eigen::PropagateNaN>(a, b);
}

// c - a*b (one rounding with FMA, like pmadd).
template <class P>
P pnmadd(const P& a, const P& b, const P& c) {
  return psub(c, pmul(a, b));
}
#if defined(__AVX512F__)
inline __m512 pnmadd(const __m512& a, const __m512& b, const __m512& c) { return _mm512_fnmadd_ps(a, b, c); }
inline __m512d pnmadd(const __m512d& a, const __m512d& b, const __m512d& c) { return _mm512_fnmadd_pd(a, b, c); }
#endif
#if defined(__FMA__)
inline __m256 pnmadd(const __m256& a, const __m256& b, const __m256& c) { return _mm256_fnmadd_ps(a, b, c); }
inline __m256d pnmadd(const __m256d& a, const __m256d& b, const __m256d& c) { return _mm256_fnmadd_pd(a, b, c); }
inline __m128 pnmadd(const __m128& a, const __m128& b, const __m128& c) { return _mm_fnmadd_ps(a, b, c); }
inline __m128d pnmadd(const __m128d& a, const __m128d& b, const __m128d& c) { return _mm_fnmadd_pd(a, b, c); }
#endif

// num / (sqrt(v) + eps) for v >= 0, eps >= 0: the denominator of Adam, RMSprop and Adagrad.
// Generic (double everywhere, float without AVX2): IEEE sqrt and division, as NumPy and PyTorch.
template <class P>
P div_sqrt_plus(const P& num, const P& v, const P& eps) {
  return pdiv(num, padd(fastnn::detail::exact_psqrt(v), eps));
}

// float with AVX-512 / AVX2+FMA: sqrt and division (vsqrtps + vdivps, ~22 cycles per 16 floats,
// which bounded these loops) replaced by the hardware estimates refined by one Newton-Raphson step:
//   r = rsqrt~(v) (of FLT_MIN for v = 0);  s0 = v*r;  s = s0 + s0*(1/2 - s0*r/2)        (~ sqrt v)
//   d = s + eps;  y = rcp~(d);  q0 = num*y;  q = q0 + y*(num - d*q0)                         (~ num/d)
// Error: an estimate with relative error e leaves (3/2)e^2 after the sqrt step and e^2 after the
// quotient step, plus the step's own roundings. rsqrt14/rcp14 (AVX-512) have e < 2^-14: q is
// within 2.7 ulp of the true num/(sqrt(v) + eps), and within 4 ulp (3.0e-7 relative) of the
// exact float path's correctly rounded sqrt, add and division (which is itself up to 1.5 ulp
// off); AVX2's rsqrt/rcp (e <= 1.5*2^-12): 3.9 ulp and 4 ulp (3.3e-7). (Measured on 4M random
// (num, v, eps) over the float range.) The step is lr-sized, so this moves a parameter by
// ~3e-7 * lr per step: below float32 resolution for parameters larger than the learning rate.
// Special values, as torch: v = 0 (zero or underflowing gradients) gives s = 0 exactly, so
// num / eps; v = inf (g*g overflowed) gives num * 0 (0, NaN for num = inf); v < 0 (rounding in
// centered RMSprop) and NaN give NaN; denormal v is as accurate as normal v (AVX-512's estimates
// take denormals; AVX2's flush them to zero, so it divides those lanes exactly).
// Differences: num / 0 (eps = 0 and v = 0) and num = inf with finite v (only if m itself
// overflowed) give NaN instead of inf.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
inline __m512 div_sqrt_plus(const __m512& num, const __m512& v, const __m512& eps) {
  const __m512 half = _mm512_set1_ps(0.5f);
  // rsqrt of v, of FLT_MIN for v = +-0 (fixupimm by the class of v: zero -> the first operand,
  // everything else -> v), so that s0 = 0 * r = 0 rather than 0 * inf
  const __m512 vc = _mm512_fixupimm_ps(_mm512_set1_ps(FLT_MIN), v, _mm512_set1_epi32(0x11111011), 0);
  const __m512 r = _mm512_rsqrt14_ps(vc);
  const __m512 s0 = _mm512_mul_ps(v, r);
  const __m512 s = _mm512_fmadd_ps(s0, _mm512_fnmadd_ps(s0, _mm512_mul_ps(half, r), half), s0);
  const __m512 d = _mm512_add_ps(s, eps);
  const __m512 y = _mm512_rcp14_ps(d);
  const __m512 q0 = _mm512_mul_ps(num, y);
  const __m512 q = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, q0, num), y, q0);
  const __mmask16 v_inf = _mm512_fpclass_ps_mask(v, 0x08);  // +inf: the steps above made NaN of inf * 0
  return _mm512_mask_mul_ps(q, v_inf, num, _mm512_setzero_ps());
}
#elif defined(__AVX2__) && defined(__FMA__)
// (On Golden Cove cores, whose divider does a 256-bit sqrt + division in ~7 cycles per 8 floats,
// this is 10% slower than the exact path; on Skylake (11 cycles), Haswell (28) and AMD Zen 2/3
// it is faster.)
inline __m256 div_sqrt_plus(const __m256& num, const __m256& v, const __m256& eps) {
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 r = _mm256_rsqrt_ps(_mm256_max_ps(_mm256_set1_ps(FLT_MIN), v));  // finite for v = 0
  const __m256 s0 = _mm256_mul_ps(v, r);
  const __m256 s = _mm256_fmadd_ps(s0, _mm256_fnmadd_ps(s0, _mm256_mul_ps(half, r), half), s0);
  const __m256 d = _mm256_add_ps(s, eps);
  const __m256 y = _mm256_rcp_ps(d);
  const __m256 q0 = _mm256_mul_ps(num, y);
  const __m256 q = _mm256_fmadd_ps(_mm256_fnmadd_ps(d, q0, num), y, q0);
  // Lanes with v outside {+0} and [FLT_MIN, inf) (denormal, negative, inf, NaN: rare) are divided
  // exactly, lane by lane (so the same bits in any packet). Tested on the bits: 0x00800000 is
  // FLT_MIN, 0x7F800000 +inf; negative v and -0 have the sign bit, so are negative integers.
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i normal = _mm256_and_si256(_mm256_cmpgt_epi32(bits, _mm256_set1_epi32(0x007FFFFF)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(0x7F800000), bits));
  const __m256i fast = _mm256_or_si256(normal, _mm256_cmpeq_epi32(bits, _mm256_setzero_si256()));
  if (_mm256_movemask_epi8(fast) == -1) return q;
  const __m256 exact = _mm256_div_ps(num, _mm256_add_ps(_mm256_sqrt_ps(v), eps));
  return _mm256_blendv_ps(exact, q, _mm256_castsi256_ps(fast));
}
#endif

// x if the loop body uses the array, else nullptr (std::nullptr_t, so skipped at compile time).
template <bool kUsed, class T>
auto array_if(T* x) {
  if constexpr (kUsed)
    return x;
  else
    return nullptr;
}

namespace detail {

template <class T>
T* advance(T* x, index_t i) {
  return x + i;
}
inline std::nullptr_t advance(std::nullptr_t, index_t) { return nullptr; }

template <class T>
T* padded(T* x, T* pad, index_t n) {
  std::copy(x, x + n, pad);
  return pad;
}
template <class T>
const T* padded(const T* x, T* pad, index_t n) {
  std::copy(x, x + n, pad);
  return pad;
}
template <class T>
std::nullptr_t padded(std::nullptr_t, T*, index_t) {
  return nullptr;
}

template <class T>
void copy_back(const T* pad, T* x, index_t n) {
  std::copy(pad, pad + n, x);
}
template <class T>
void copy_back(const T*, const T*, index_t) {}  // inputs are not written back
template <class T>
void copy_back(const T*, std::nullptr_t, index_t) {}

template <class T, class Body, class... Ptr, std::size_t... I>
void padded_packet(index_t n, Body& body, std::index_sequence<I...>, Ptr... x) {
  alignas(64) T pad[sizeof...(Ptr)][kWidth<T>] = {};
  body(padded<T>(x, pad[I], n)...);
  (copy_back<T>(pad[I], x, n), ...);
}

}  // namespace detail

// body(x0 + i, x1 + i, ...) for i = 0, W, 2W, ... < n (W = kWidth<T>): body loads and stores one
// packet at each pointer (const T*: inputs, T*: updated in place; nullptr, for arrays the body
// does not use: array_if). The last n % W elements go through the same body on zero-padded
// copies of the arrays, copied back into the T* ones. body is taken by value: captured by value
// too, its constants stay in registers.
template <class T, class Body, class... Ptr>
void for_each_packet(index_t n, Body body, Ptr... x) {
  constexpr index_t W = kWidth<T>;
  index_t i = 0;
  for (; i + W <= n; i += W) body(detail::advance(x, i)...);
  if (i < n) detail::padded_packet<T>(n - i, body, std::index_sequence_for<Ptr...>(), detail::advance(x, i)...);
}

// f(std::bool_constant<b>()): turns a per-call flag into a template parameter of the loop.
template <class F>
void with_bool(bool b, F&& f) {
  if (b)
    f(std::true_type());
  else
    f(std::false_type());
}

}  // namespace fastnn::simd
