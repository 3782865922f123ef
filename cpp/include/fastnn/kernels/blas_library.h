// An established BLAS (OpenBLAS from the scipy-openblas32 wheel) loaded at run time, behind
// fastnn's GEMM entry point (gemm.h). OpenBLAS picks its micro-kernel per CPU when it loads
// (DYNAMIC_ARCH), which a build-time choice of ours cannot do; fastnn keeps the threading: the
// library runs one thread, and fastnn's OpenMP threads call it on blocks of the result.
// dlopen, not linking: the extension builds and imports without the wheel (Eigen's kernel then
// serves, gemm.h), and a source build needs no BLAS headers or libraries.
#pragma once

#include <string>

namespace fastnn::blas {

// The CBLAS interface of scipy-openblas32: 32-bit integers, row-major storage, symbols prefixed.
enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
template <class T>
using GemmFunction = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, T alpha, const T* a, int lda,
                              const T* b, int ldb, T beta, T* c, int ldc);

struct Library {
  GemmFunction<float> sgemm = nullptr;
  GemmFunction<double> dgemm = nullptr;
  int (*get_threads)() = nullptr;
  void (*set_threads)(int) = nullptr;
  std::string path, core, config;  // the CPU kernel OpenBLAS chose ("SkylakeX", "Zen", "Haswell"...)

  // Back to one thread if someone raised the library's count (threadpoolctl's threadpool_limits
  // reaches every OpenBLAS in the process, ours included): a pool under each of fastnn's threads
  // oversubscribes the cores (measured: conv2d backward 20x slower). One call, reading a global.
  void keep_one_thread() const {
    if (get_threads() != 1) set_threads(1);
  }

  template <class T> GemmFunction<T> gemm() const;
};
template <> inline GemmFunction<float> Library::gemm<float>() const { return sgemm; }
template <> inline GemmFunction<double> Library::gemm<double>() const { return dgemm; }

// The library GEMM calls go to, or null for Eigen's kernel (no library loaded, or Eigen chosen).
const Library* active();

// Loads the library at `path` (once; a second load of the same path is a no-op) and makes it the
// active backend. Returns "" or what went wrong (dlopen's message, a missing symbol).
std::string load(const std::string& path);

// Chooses the backend: true for the loaded library (false if none is loaded), false for Eigen.
bool use_library(bool on);

// The loaded library, active or not (null if none).
const Library* loaded();

}  // namespace fastnn::blas
