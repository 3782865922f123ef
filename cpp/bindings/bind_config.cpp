// Thread count and build configuration.
#include <atomic>
#include <string>

#include "bindings/arrays.h"

namespace fastnn::bind {

void bind_config(py::module_& m) {
  // Eigen's own count defaults to the calling thread's OpenMP ICV; pin it to ours from the start.
  fastnn::set_num_threads(fastnn::num_threads());

  m.def("set_num_threads", &fastnn::set_num_threads, py::arg("n"),
        "Set the number of threads every fastnn kernel uses (all Python threads, not changed by "
        "torch.set_num_threads or OMP_NUM_THREADS after import).");
  m.def("get_num_threads", &fastnn::num_threads, "Number of threads fastnn kernels use.");
  // For tests: how many threads a parallel_for over `work` scalar operations really runs on.
  m.def("_parallel_threads_used", [](index_t work) {
    py::gil_scoped_release nogil;
    std::atomic<int> used{0};
    parallel_for(work, 1, [&](index_t, index_t) { used.fetch_add(1); });
    return used.load();
  });
  m.def("empty_cache", []() { return BufferPool::instance().release(); },
        "Returns the recycled output buffers to the system; the number of bytes released.");
  m.def("_build_info", []() {
    py::dict d;
    d["version"] = FASTNN_VERSION;
    d["isa"] = FASTNN_ISA;
    d["compiler"] = FASTNN_COMPILER;
    d["build_type"] = FASTNN_BUILD_TYPE;
    d["cxx_flags"] = FASTNN_CXX_FLAGS;
    d["simd"] = std::string(Eigen::SimdInstructionSetsInUse());
    d["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                 std::to_string(EIGEN_MINOR_VERSION);
#ifdef _OPENMP
    d["openmp"] = std::to_string(_OPENMP);
#else
    d["openmp"] = py::none();
#endif
#if defined(__AVX512F__)
    d["vector_bits"] = 512;
#elif defined(__AVX__)
    d["vector_bits"] = 256;
#else
    d["vector_bits"] = 128;
#endif
    return d;
  });
}

}  // namespace fastnn::bind
