// A correctly rounded, vectorized elementwise sqrt for Eigen array expressions.
//
// Under EIGEN_FAST_MATH (Eigen's default) the packet sqrt on AVX/AVX-512 is an rsqrt estimate
// plus a Newton step (1-2 ulp off), while the scalar sqrt used for the elements Eigen peels
// before the first aligned address is exact: results would then depend on where the buffer
// happens to be allocated. exact_sqrt(e) is IEEE sqrt (what NumPy and PyTorch compute) in both
// paths. (gcc does not vectorize std::sqrt loops without -fno-math-errno, hence the intrinsics.)
#pragma once

#include <cmath>

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

struct exact_sqrt_op {
  template <class T>
  T operator()(const T& x) const {
    return std::sqrt(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    return exact_psqrt(x);
  }
};

}  // namespace detail

// sqrt of every coefficient of the array expression e, correctly rounded.
template <class Derived>
auto exact_sqrt(const Eigen::ArrayBase<Derived>& e) {
  return e.unaryExpr(detail::exact_sqrt_op());
}

}  // namespace fastnn

namespace Eigen::internal {
template <>
struct functor_traits<fastnn::detail::exact_sqrt_op> {
  enum { Cost = 5 * NumTraits<float>::MulCost, PacketAccess = 1 };
};
}  // namespace Eigen::internal
