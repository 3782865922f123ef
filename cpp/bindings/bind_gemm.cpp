// matmul (2-D, strided and transposed views mapped without copies), bmm (3-D batched), and the
// choice of the GEMM backend (blas_library.h).
#include "bindings/arrays.h"
#include "bindings/matrix_arg.h"
#include "fastnn/kernels/blas_library.h"
#include "fastnn/kernels/gemm.h"
#include "fastnn/kernels/gemm_narrow.h"

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

// matmul's out=: C-contiguous, or rows of unit stride further apart than their length (a column
// slice of a wider array, which gemm writes in place); returns its row stride in elements.
template <class T>
index_t matmul_out_rows(const py::array& o, const char* op) {
  const py::ssize_t sz = sizeof(T);
  if (o.ndim() == 2 && o.shape(0) > 1 && o.shape(1) > 0 && (o.shape(1) == 1 || o.strides(1) == sz) &&
      o.strides(0) > 0 && o.strides(0) % sz == 0 && o.strides(0) / sz >= o.shape(1))
    return o.strides(0) / sz;
  if (!o.attr("flags").attr("c_contiguous").cast<bool>())
    value_error(op, "out is updated in place and must be C-contiguous or rows of unit stride (a column slice)");
  return o.ndim() == 2 ? o.shape(1) : 0;
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
  py::array c;
  index_t ldc = bb.shape(1);
  if (out.is_none()) {
    c = new_array<T>({a.shape(0), bb.shape(1)});
  } else {
    c = as_ndarray(out, op, "out");
    if (!c.dtype().equal(py::dtype::of<T>()))
      type_error(op, std::string("out must be ") + dtype_name<T>() + ", got " + dtype_str(c));
    check_shape(c, op, "out", {a.shape(0), bb.shape(1)});
    ldc = matmul_out_rows<T>(c, op);
    if (!c.writeable()) value_error(op, "out is updated in place and must be writeable");
    if (overlaps(c, a) || overlaps(c, bb)) value_error(op, "out must not share memory with an input");
  }
  T* cp = static_cast<T*>(c.mutable_data());
  {
    py::gil_scoped_release nogil;
    MatMap<T> cm(cp, a.shape(0), bb.shape(1), Eigen::OuterStride<>(ldc));
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
      "_narrow_gemm_limits",
      []() {
        py::dict d;
        auto one = [](auto tag) {
          using T = decltype(tag);
          constexpr NarrowGemmLimits l = narrow_gemm_limits<T>();
          py::dict e;
          e["min_n"] = l.min_n;
          e["max_n"] = l.max_n;
          e["min_k"] = l.min_k;
          e["min_m"] = l.min_m;
          e["max_packed_bytes"] = l.max_packed_bytes;
          e["deep_n_from"] = l.deep_n_from;
          e["deep_n_to"] = l.deep_n_to;
          e["deep_min_k"] = l.deep_min_k;
          e["packet"] = narrow_detail::kP<T>;
          return e;
        };
        d["float32"] = one(float{});
        d["float64"] = one(double{});
        return d;
      },
      "The shapes gemm gives to its narrow kernel (gemm_narrow.h) in this build, per dtype: n in "
      "[min_n, max_n], k >= min_k, m >= min_m, k * (n rounded up to whole packets) * itemsize <= "
      "max_packed_bytes, k >= deep_min_k where deep_n_from <= n <= deep_n_to, and a row-major a.");
  m.def(
      "_narrow_gemm_fits",
      [](index_t m, index_t k, index_t n, const std::string& dtype) {
        if (dtype == "float32") return narrow_gemm_fits<float>(m, k, n);
        if (dtype == "float64") return narrow_gemm_fits<double>(m, k, n);
        type_error("_narrow_gemm_fits", "dtype must be 'float32' or 'float64', got '" + dtype + "'");
      },
      py::arg("m"), py::arg("k"), py::arg("n"), py::arg("dtype"),
      "Whether an (m, k) @ (k, n) product of a row-major a runs gemm's narrow kernel in this build.");
  m.def(
      "_gemm_tuning",
      [](const py::object& narrow, const py::object& tile_macs) {
        auto& t = gemm_detail::tuning;
        py::dict before;
        before["narrow"] = t.narrow.load();
        before["tile_macs"] = t.tile_macs.load();
        if (!narrow.is_none()) t.narrow = flag_arg(narrow, "_gemm_tuning", "narrow");
        if (!tile_macs.is_none()) {
          const index_t v = tile_macs.cast<index_t>();
          if (v < 1) value_error("_gemm_tuning", "tile_macs must be >= 1, got " + std::to_string(v));
          t.tile_macs = v;
        }
        return before;
      },
      py::arg("narrow") = py::none(), py::arg("tile_macs") = py::none(),
      "For paired benchmarks: turns gemm's narrow kernel on or off and sets the multiply-adds per tile "
      "(None: unchanged); returns the settings before. Process-wide.");
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
