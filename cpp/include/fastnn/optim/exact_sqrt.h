// A correctly rounded packet sqrt (exact_psqrt), for the optimizers' SIMD loops (simd.h).
//
// Under EIGEN_FAST_MATH (Eigen's default) Eigen's packet sqrt on AVX/AVX-512 is an rsqrt estimate
// plus a Newton step (1-2 ulp off); exact_psqrt is IEEE sqrt (what NumPy and PyTorch compute).
#pragma once

#include <Eigen/Core>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace fastnn {
namespace detail {

#if defined(__AVX512F__)
inline __m512 exact_psqrt(const __m512& x) { return _mm512_sqrt_ps(x); }
inline __m512d exact_psqrt(const __m512d& x) { return _mm512_sqrt_pd(x); }
#endif
#if defined(__AVX__)
inline __m256 exact_psqrt(const __m256& x) { return _mm256_sqrt_ps(x); }
inline __m256d exact_psqrt(const __m256d& x) { return _mm256_sqrt_pd(x); }
#endif
#if defined(__SSE2__)
inline __m128 exact_psqrt(const __m128& x) { return _mm_sqrt_ps(x); }
inline __m128d exact_psqrt(const __m128d& x) { return _mm_sqrt_pd(x); }
#endif
// Other ISAs: Eigen's own packet sqrt.
template <class Packet>
Packet exact_psqrt(const Packet& x) {
  return Eigen::internal::psqrt(x);
}

}  // namespace detail
}  // namespace fastnn
