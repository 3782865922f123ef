// matmul (2-D, strided and transposed views mapped without copies), bmm (3-D batched), and the
// choice of the GEMM backend (blas_library.h).
#include "bindings/arrays.h"
#include "bindings/matrix_arg.h"
#include "fastnn/kernels/blas_library.h"
#include "fastnn/kernels/gemm.h"

namespace fastnn::bind {
namespace {

// Checks `out` (shape, dtype, layout, aliasing) or allocates it.
template <class T>
CArray<T> output(const py::object& out, const char* op, std::vector<py::ssize_t> shape,
                 std::initializer_list<const py::array*> inputs) {
  if (out.is_none()) return new_array<T>(shape);
  CArray<T> o = inout<T>(out, op, "out");
  check_shape(o, op, "out", shape);
  for (const py::array* x : inputs)
    if (overlaps(o, *x)) value_error(op, "out must not share memory with an input");
  return o;
}

template <class T>
py::array matmul_impl(const py::array& a, const py::array& b, const py::object& out, bool accumulate) {
  const char* op = "matmul";
  py::array bb = as_ndarray(b, op, "b");
  if (!bb.dtype().equal(py::dtype::of<T>()))
    type_error(op, std::string("b must be ") + dtype_name<T>() + " like a, got " + dtype_str(bb));
  check_ndim(bb, op, "b", {2});
  check_nonempty(a, op, "a");
  check_nonempty(bb, op, "b");
  if (a.shape(1) != bb.shape(0))
    value_error(op, "inner dimensions differ: a is " + shape_str(a) + ", b is " + shape_str(bb));
  if (accumulate && out.is_none()) value_error(op, "accumulate=True adds into out: out must be given");
  const MatrixArg<T> am(a, op, "a"), bm(bb, op, "b");  // copies (if any) first: a failed one names its input
  CArray<T> c = output<T>(out, op, {a.shape(0), bb.shape(1)}, {&a, &bb});
  T* cp = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    MatMap<T> cm(cp, a.shape(0), bb.shape(1), Eigen::OuterStride<>(bb.shape(1)));
    am.visit([&](const auto& av) { bm.visit([&](const auto& bv) { gemm(av, bv, cm, accumulate); }); });
  }
  return std::move(c);
}

template <class T>
py::array bmm_impl(const py::handle& a_in, const py::handle& b_in, const py::object& out) {
  const char* op = "bmm";
  CArray<T> a = in<T>(a_in, op, "a"), b = in<T>(b_in, op, "b");
  check_ndim(a, op, "a", {3});
  check_ndim(b, op, "b", {3});
  if (a.shape(0) != b.shape(0) || a.shape(2) != b.shape(1))
    value_error(op, "a (B, M, K) and b (B, K, N) do not match: a is " + shape_str(a) + ", b is " + shape_str(b));
  const index_t B = a.shape(0), M = a.shape(1), K = a.shape(2), N = b.shape(2);
  CArray<T> c = output<T>(out, op, {B, M, N}, {&a, &b});
  const T *ap = a.data(), *bp = b.data();
  T* cp = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    bmm(ap, bp, cp, B, M, K, N);
  }
  return std::move(c);
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def(
      "matmul",
      [](const py::handle& a_in, const py::handle& b, const py::object& out, bool accumulate) -> py::array {
        return dispatch_float(a_in, "matmul", "a", [&](auto tag) {
          using T = decltype(tag);
          py::array a = as_ndarray(a_in, "matmul", "a");
          check_ndim(a, "matmul", "a", {2});
          return matmul_impl<T>(a, as_ndarray(b, "matmul", "b"), out, accumulate);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("accumulate") = false);
  m.def(
      "bmm",
      [](const py::handle& a, const py::handle& b, const py::object& out) -> py::array {
        return dispatch_float(a, "bmm", "a", [&](auto tag) { return bmm_impl<decltype(tag)>(a, b, out); });
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none());

  m.def(
      "_load_blas",
      [](const std::string& path) {
        py::gil_scoped_release nogil;  // the library's constructor probes the CPU
        return blas::load(path);
      },
      py::arg("path"), "Loads OpenBLAS (scipy-openblas32) from path for the GEMMs; returns '' or the error.");
  m.def(
      "_use_gemm_backend",
      [](const std::string& name) {
        if (name != "openblas" && name != "eigen")
          value_error("_use_gemm_backend", "name must be 'openblas' or 'eigen', got '" + name + "'");
        if (!blas::use_library(name == "openblas"))
          value_error("_use_gemm_backend", "no OpenBLAS is loaded (install scipy-openblas32)");
      },
      py::arg("name"));
  m.def("_gemm_backend", []() {
    py::dict d;
    const blas::Library* lib = blas::active();
    d["name"] = lib ? "openblas" : "eigen";
    d["core"] = lib ? lib->core : std::string(Eigen::SimdInstructionSetsInUse());
    d["config"] = lib ? lib->config : std::string("Eigen ") + std::to_string(EIGEN_WORLD_VERSION) + "." +
                                          std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION);
    d["path"] = lib ? lib->path : std::string();
    d["threads"] = lib ? lib->get_threads() : 1;  // the library's own count: fastnn keeps it at 1
    const blas::Library* any = blas::loaded();
    d["loaded"] = any ? any->path : std::string();
    return d;
  });
}

}  // namespace fastnn::bind
