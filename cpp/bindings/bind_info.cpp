// What python -m fastnn info measures in C++: the cores' FMA peak.
#include <string>

#include "bindings/arrays.h"
#include "fastnn/kernels/fma_peak.h"

namespace fastnn::bind {
namespace {

template <class T>
double peak(int threads) {
  volatile T seed = T(1) / T(1000);  // a value the compiler cannot see, so it cannot fold the loop
  T checksum = 0;
  const double gflops = fma_peak_gflops<T>(threads, T(seed), &checksum);
  volatile T sink = checksum;  // the chains' result is used
  (void)sink;
  return gflops;
}

}  // namespace

void bind_info(py::module_& m) {
  m.def(
      "_fma_peak_gflops",
      [](const std::string& dtype, index_t threads) {
        const char* op = "fma_peak";
        if (dtype != "float32" && dtype != "float64")
          value_error(op, "dtype must be 'float32' or 'float64', got '" + dtype + "'");
        if (threads < 1 || threads > 1024) value_error(op, "threads must be in [1, 1024], got " + std::to_string(threads));
        py::gil_scoped_release nogil;
        return dtype == "float32" ? peak<float>(int(threads)) : peak<double>(int(threads));
      },
      py::arg("dtype"), py::arg("threads"),
      "GFLOP/s of `threads` threads running independent register-only FMA chains in the widest "
      "vectors of this module's ISA (about 0.1 s).");
}

}  // namespace fastnn::bind
