// fastnn._cpu (portable installs only): which instruction sets this CPU runs, asked by the loader
// before it imports the one core variant to use. Importing a second core into the same process
// would fail: pybind11 refuses to register the same C++ classes twice. Built with baseline flags.
#include <string>

#include <pybind11/pybind11.h>

PYBIND11_MODULE(_cpu, m) {
  m.def("supports", [](const std::string& isa) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (isa == "avx2") return bool(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
    if (isa == "avx512") return bool(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"));
#endif
    (void)isa;
    return false;
  }, pybind11::arg("isa"), "Whether this CPU runs the _C_<isa> core (avx2: x86-64-v3, avx512: x86-64-v4).");
}
