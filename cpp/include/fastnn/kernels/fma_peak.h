// The cores' measured FMA peak: GEMM speed is reported as a fraction of it (python -m fastnn info).
// A register-only loop of independent multiply-adds in the widest packet of the module's ISA
// (zmm FMA for AVX-512, ymm FMA for AVX2, SSE2 mul + add for the baseline), so no memory traffic
// and no dependency stall limits it. There is no NumPy reference for this one: its result is a
// rate, and the value it computes only exists to keep the compiler from dropping the loop.
#pragma once

#include <algorithm>
#include <chrono>

#include <Eigen/Core>

#include "fastnn/common.h"

namespace fastnn {

namespace detail {

// Enough independent chains to keep every FMA port busy for the whole latency (2 ports x 4 cycles
// on Zen 4/5, Skylake-X and later = 8 in flight) with margin, while the chains, the two constants
// and a spill-free loop still fit in the register file (32 vector registers with AVX-512, 16 below).
constexpr int kFmaChains = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 12;

template <class T>
using FmaPacket = typename Eigen::internal::packet_traits<T>::type;

template <class T>
constexpr int fma_lanes() {
  return Eigen::internal::packet_traits<T>::size;
}

// kFmaChains chains of acc = acc * a + b, `iters` steps each; returns their sum. Without
// -ffast-math the compiler may neither reassociate nor fold the chains, and `seed` comes from
// the caller at run time. With a = 1 - 2^-10 every chain converges to b / (1 - a): no overflow,
// no subnormals (which would be slow). Checked with objdump (GCC 12, both dtypes): the loop body
// is 16 vfmadd132ps/pd on zmm registers (native, x86-64-v4), 12 on ymm (x86-64-v3), 12 mulps/pd +
// 12 addps/pd on xmm (baseline), plus the counter; no loads or stores.
template <class T>
EIGEN_DONT_INLINE T fma_chains(index_t iters, T seed) {
  using namespace Eigen::internal;
  using P = FmaPacket<T>;
  const P a = pset1<P>(T(1) - T(1) / T(1024));
  const P b = pset1<P>(seed);
  P acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = pset1<P>(seed * T(j + 1));
  for (index_t i = 0; i < iters; ++i) {
    EIGEN_UNROLL_LOOP
    for (int j = 0; j < kFmaChains; ++j) acc[j] = pmadd(acc[j], a, b);
  }
  P sum = acc[0];
  for (int j = 1; j < kFmaChains; ++j) sum = padd(sum, acc[j]);
  return predux(sum);
}

}  // namespace detail

// GFLOP/s of `threads` threads running the chains at once (an FMA counts 2 FLOP). The step count
// doubles until one run takes kCalibrate, then the best of kRuns runs counts: about 0.1 s a call.
// `seed` is any positive runtime value; `checksum` receives the chains' sum.
template <class T>
double fma_peak_gflops(int threads, T seed, T* checksum) {
  using clock = std::chrono::steady_clock;
  constexpr double kCalibrate = 0.015;  // seconds
  constexpr int kRuns = 3;
  index_t iters = 1 << 10;
  int timed = 0;
  double best = 0;
  bool done = false;
  clock::time_point t0;
  T total = 0;
  // Every thread runs the same steps; one thread times each run between two barriers and decides
  // (inside `single`, whose implicit barrier publishes the decision) whether to go on.
  auto run = [&](T& local) {
    for (;;) {
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
      t0 = clock::now();
      local += detail::fma_chains<T>(iters, seed);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
      {
        const double s = std::chrono::duration<double>(clock::now() - t0).count();
        if (timed == 0 && s < kCalibrate) {
          iters *= 2;
        } else {
          const double flop = 2.0 * detail::kFmaChains * detail::fma_lanes<T>() * double(iters) * threads;
          best = std::max(best, flop / s * 1e-9);
          done = ++timed == kRuns;
        }
      }
      if (done) return;
    }
  };
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
#pragma omp single
    threads = omp_get_num_threads();  // what the runtime granted
    T local = 0;
    run(local);
#pragma omp atomic
    total += local;
  }
#else
  threads = 1;  // a build without OpenMP has one thread
  run(total);
#endif
  *checksum = total;
  return best;
}

}  // namespace fastnn
