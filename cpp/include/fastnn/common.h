// Shared vocabulary of the C++ core: matrix aliases, checks, and the thread-count-aware parallel_for.
// Nothing below cpp/include knows about Python.
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastnn {

using index_t = std::int64_t;

// Row-major everywhere: NumPy's default layout, so arrays map without copies.
template <class T> using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T> using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T> using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T> using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T> using MatMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T> using CMatMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T> using ArrMap = Eigen::Map<Arr<T>>;
template <class T> using CArrMap = Eigen::Map<const Arr<T>>;

// Thrown for bad arguments; pybind11 turns std::invalid_argument into ValueError. Messages start with "[op] ".
struct invalid_argument : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

#define FASTNN_CHECK(cond, op, msg)                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::ostringstream fastnn_check_os_;                                   \
      fastnn_check_os_ << "[" << (op) << "] " << msg;                        \
      throw ::fastnn::invalid_argument(fastnn_check_os_.str());              \
    }                                                                        \
  } while (0)

// fastnn's own thread count. The OpenMP ICV is per calling thread and PyTorch overwrites it, so
// every parallel region passes num_threads(num_threads()) explicitly (BUILD-NOTES.md section 3).
int num_threads();
void set_num_threads(int n);

// Below this many scalar operations per thread a loop stays serial: waking a second thread costs
// a few microseconds, which is what makes small layers slower on more threads (pytorch#144633).
constexpr index_t kMinWorkPerThread = 1 << 15;

// Threads worth using for `work` scalar operations.
inline int threads_for(index_t work) {
  const int nt = num_threads();
  if (nt <= 1 || work < 2 * kMinWorkPerThread) return 1;
  return static_cast<int>(std::min<index_t>(nt, work / kMinWorkPerThread));
}

// Calls f(begin, end) on contiguous slices of [0, n); `cost` is the work of one item.
// f must not throw: validate before calling.
template <class F>
void parallel_for(index_t n, index_t cost, F&& f) {
  if (n <= 0) return;
  const int nt = static_cast<int>(std::min<index_t>(threads_for(n * std::max<index_t>(cost, 1)), n));
  if (nt <= 1) {
    f(index_t(0), n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), nth = omp_get_num_threads();
    const index_t chunk = n / nth, rem = n % nth;
    const index_t begin = t * chunk + std::min(t, rem);
    const index_t end = begin + chunk + (t < rem ? 1 : 0);
    if (begin < end) f(begin, end);
  }
#else
  f(index_t(0), n);
#endif
}

}  // namespace fastnn
