// fastnn's thread count, independent of the per-thread OpenMP ICV (see common.h).
#include <atomic>

#include "fastnn/common.h"

namespace fastnn {
namespace {
int initial_threads() {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());  // honours OMP_NUM_THREADS at import
#else
  return 1;
#endif
}
std::atomic<int> g_threads{initial_threads()};
}  // namespace

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  FASTNN_CHECK(n >= 1, "set_num_threads", "n must be >= 1, got " << n);
  g_threads.store(n, std::memory_order_relaxed);
  Eigen::setNbThreads(n);
}

}  // namespace fastnn
