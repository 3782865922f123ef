// Activations: pointwise (kernels/activations.h), softmax / log_softmax (kernels/softmax.h) and
// maxout (kernels/maxout.h). Outputs have the shape and dtype of x.
#include <Python.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "fastnn/kernels/activations.h"
#include "fastnn/kernels/maxout.h"
#include "fastnn/kernels/softmax.h"

namespace fastnn::bind {
namespace {

std::string show(const py::handle& h) { return py::repr(h).cast<std::string>(); }

// A real Python / NumPy number (not bool), as a finite double.
double finite_arg(const py::handle& h, const char* op, const char* name) {
  if (PyBool_Check(h.ptr()) || !PyNumber_Check(h.ptr()))
    type_error(op, std::string(name) + " must be a real number, got " + show(h));
  const double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    type_error(op, std::string(name) + " must be a real number, got " + show(h));
  }
  if (!std::isfinite(v)) value_error(op, std::string(name) + " must be finite, got " + show(h));
  return v;
}

// A Python / NumPy integer (not bool), at least `lo`.
long long int_arg(const py::handle& h, const char* op, const char* name, long long lo) {
  if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
    type_error(op, std::string(name) + " must be an integer, got " + show(h));
  int overflow = 0;
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!i) throw py::error_already_set();
  const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow > 0) value_error(op, std::string(name) + " is too large, got " + show(h));
  if (overflow < 0 || v < lo)
    value_error(op, std::string(name) + " must be >= " + std::to_string(lo) + ", got " + show(h));
  return v;
}

// An integer in [0, 2**64) (seed, step).
std::uint64_t uint64_arg(const py::handle& h, const char* op, const char* name) {
  if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
    type_error(op, std::string(name) + " must be an integer, got " + show(h));
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!i) throw py::error_already_set();
  const unsigned long long v = PyLong_AsUnsignedLongLong(i.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    value_error(op, std::string(name) + " must be an integer in [0, 2**64), got " + show(h));
  }
  return v;
}

bool bool_arg(const py::handle& h, const char* op, const char* name) {
  if (PyBool_Check(h.ptr())) return h.ptr() == Py_True;
  if (py::isinstance(h, py::module_::import("numpy").attr("bool_"))) return h.cast<bool>();
  type_error(op, std::string(name) + " must be a bool, got " + show(h));
}

// y = kernel(x, y, n) for a pointwise forward; any shape, dtype of x.
template <class T, class K>
py::array pointwise_forward(const py::handle& x_in, const char* op, K&& kernel) {
  CArray<T> x = in<T>(x_in, op, "x");
  CArray<T> y = new_array<T>(shape_of(x));
  const T* xp = x.data();
  T* yp = y.mutable_data();
  const index_t n = x.size();
  {
    py::gil_scoped_release nogil;
    kernel(xp, yp, n);
  }
  return std::move(y);
}

// grad_in = kernel(grad_out, saved, grad_in, n); `saved` (y, x or noise) has grad_out's shape and dtype.
template <class T, class K>
py::array pointwise_backward(const py::handle& g_in, const py::handle& s_in, const char* op, const char* saved,
                             K&& kernel) {
  CArray<T> g = in<T>(g_in, op, "grad_out");
  CArray<T> s = in<T>(s_in, op, saved);
  check_shape(s, op, saved, shape_of(g));
  CArray<T> gi = new_array<T>(shape_of(g));
  const T *gp = g.data(), *sp = s.data();
  T* gip = gi.mutable_data();
  const index_t n = g.size();
  {
    py::gil_scoped_release nogil;
    kernel(gp, sp, gip, n);
  }
  return std::move(gi);
}

// def name(x) for a pointwise forward without parameters; `kernel` is generic over T.
template <class K>
void def_forward(py::module_& m, const char* op, K kernel) {
  m.def(
      op,
      [op, kernel](const py::handle& x) -> py::array {
        return dispatch_float(x, op, "x", [&](auto tag) { return pointwise_forward<decltype(tag)>(x, op, kernel); });
      },
      py::arg("x"));
}

template <class K>
void def_backward(py::module_& m, const char* op, const char* saved, K kernel) {
  m.def(
      op,
      [op, saved, kernel](const py::handle& g, const py::handle& s) -> py::array {
        return dispatch_float(g, op, "grad_out",
                              [&](auto tag) { return pointwise_backward<decltype(tag)>(g, s, op, saved, kernel); });
      },
      py::arg("grad_out"), py::arg(saved));
}

// prelu: x viewed as (outer, channels, inner); weight (1,) shares one slope, (C,) has one per x.shape[1].
struct PreluShape {
  index_t outer, channels, inner;
};

PreluShape prelu_shape(const py::array& x, const py::array& w, const char* op) {
  check_ndim(w, op, "weight", {1});
  const index_t c = w.shape(0);
  if (c == 1) return {1, 1, static_cast<index_t>(x.size())};
  if (x.ndim() < 2)
    value_error(op, "x must have a channel dimension (ndim >= 2) for a weight of shape " + shape_str(w) + ", got x " +
                        shape_str(x));
  if (x.shape(1) != c)
    value_error(op, "weight must have shape (1,) or (C,) with C = x.shape[1] = " + std::to_string(x.shape(1)) +
                        ", got " + shape_str(w));
  const index_t outer = x.shape(0);
  return {outer, c, static_cast<index_t>(x.size()) / (outer * c)};
}

template <class T>
py::array prelu_forward_impl(const py::handle& x_in, const py::handle& w_in) {
  const char* op = "prelu_forward";
  CArray<T> x = in<T>(x_in, op, "x"), w = in<T>(w_in, op, "weight");
  const PreluShape s = prelu_shape(x, w, op);
  CArray<T> y = new_array<T>(shape_of(x));
  const T *xp = x.data(), *wp = w.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    prelu_forward(xp, wp, yp, s.outer, s.channels, s.inner);
  }
  return std::move(y);
}

template <class T>
py::tuple prelu_backward_impl(const py::handle& g_in, const py::handle& x_in, const py::handle& w_in) {
  const char* op = "prelu_backward";
  CArray<T> g = in<T>(g_in, op, "grad_out"), x = in<T>(x_in, op, "x"), w = in<T>(w_in, op, "weight");
  check_shape(x, op, "x", shape_of(g));
  const PreluShape s = prelu_shape(x, w, op);
  CArray<T> gi = new_array<T>(shape_of(x)), gw = new_array<T>(shape_of(w));
  const T *gp = g.data(), *xp = x.data(), *wp = w.data();
  T *gip = gi.mutable_data(), *gwp = gw.mutable_data();
  {
    py::gil_scoped_release nogil;
    prelu_backward(gp, xp, wp, gip, gwp, s.outer, s.channels, s.inner);
  }
  return py::make_tuple(gi, gw);
}

template <class T>
py::tuple rrelu_forward_impl(const py::handle& x_in, double lower, double upper, bool training, std::uint64_t seed,
                             std::uint64_t step) {
  CArray<T> x = in<T>(x_in, "rrelu_forward", "x");
  CArray<T> y = new_array<T>(shape_of(x)), noise = new_array<T>(shape_of(x));
  const T* xp = x.data();
  T *yp = y.mutable_data(), *np = noise.mutable_data();
  const index_t n = x.size();
  {
    py::gil_scoped_release nogil;
    rrelu_forward(xp, yp, np, n, lower, upper, training, seed, step);
  }
  return py::make_tuple(y, noise);
}

// Row-wise ops over the last axis: x viewed as (size / cols, cols).
template <class T, class K>
py::array rowwise_forward(const py::handle& x_in, const char* op, K&& kernel) {
  CArray<T> x = in<T>(x_in, op, "x");
  if (x.ndim() < 1) value_error(op, "x must have at least 1 dimension, got shape " + shape_str(x));
  const index_t cols = x.shape(x.ndim() - 1), rows = x.size() / cols;
  CArray<T> y = new_array<T>(shape_of(x));
  const T* xp = x.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernel(xp, yp, rows, cols);
  }
  return std::move(y);
}

template <class T, class K>
py::array rowwise_backward(const py::handle& g_in, const py::handle& y_in, const char* op, K&& kernel) {
  CArray<T> g = in<T>(g_in, op, "grad_out"), y = in<T>(y_in, op, "y");
  if (g.ndim() < 1) value_error(op, "grad_out must have at least 1 dimension, got shape " + shape_str(g));
  check_shape(y, op, "y", shape_of(g));
  const index_t cols = g.shape(g.ndim() - 1), rows = g.size() / cols;
  CArray<T> gi = new_array<T>(shape_of(g));
  const T *gp = g.data(), *yp = y.data();
  T* gip = gi.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernel(gp, yp, gip, rows, cols);
  }
  return std::move(gi);
}

template <class K>
void def_rowwise_forward(py::module_& m, const char* op, K kernel) {
  m.def(
      op,
      [op, kernel](const py::handle& x) -> py::array {
        return dispatch_float(x, op, "x", [&](auto tag) { return rowwise_forward<decltype(tag)>(x, op, kernel); });
      },
      py::arg("x"));
}

template <class K>
void def_rowwise_backward(py::module_& m, const char* op, K kernel) {
  m.def(
      op,
      [op, kernel](const py::handle& g, const py::handle& y) -> py::array {
        return dispatch_float(g, op, "grad_out",
                              [&](auto tag) { return rowwise_backward<decltype(tag)>(g, y, op, kernel); });
      },
      py::arg("grad_out"), py::arg("y"));
}

template <class T>
py::tuple maxout_forward_impl(const py::handle& x_in, const py::handle& pieces_in) {
  const char* op = "maxout_forward";
  CArray<T> x = in<T>(x_in, op, "x");
  check_ndim(x, op, "x", {2}, "2-D (N, C * pieces)");
  const index_t pieces = int_arg(pieces_in, op, "pieces", 1);
  if (x.shape(1) % pieces != 0)
    value_error(op, "x.shape[1] = " + std::to_string(x.shape(1)) + " is not divisible by pieces = " +
                        std::to_string(pieces));
  const index_t channels = x.shape(1) / pieces, groups = x.shape(0) * channels;
  CArray<T> y = new_array<T>(std::vector<py::ssize_t>{x.shape(0), channels});
  py::array_t<std::int64_t> argmax({x.shape(0), channels});
  const T* xp = x.data();
  T* yp = y.mutable_data();
  std::int64_t* ap = argmax.mutable_data();
  {
    py::gil_scoped_release nogil;
    maxout_forward(xp, yp, ap, groups, pieces);
  }
  return py::make_tuple(y, argmax);
}

template <class T>
py::array maxout_backward_impl(const py::handle& g_in, const py::handle& a_in, const py::handle& pieces_in) {
  const char* op = "maxout_backward";
  CArray<T> g = in<T>(g_in, op, "grad_out");
  check_ndim(g, op, "grad_out", {2}, "2-D (N, C)");
  py::array a_arr = as_ndarray(a_in, op, "argmax");
  if (!a_arr.dtype().equal(py::dtype::of<std::int64_t>()))
    type_error(op, "argmax must be int64, got " + dtype_str(a_arr));
  check_shape(a_arr, op, "argmax", shape_of(g));
  const index_t pieces = int_arg(pieces_in, op, "pieces", 1);
  if (pieces > std::numeric_limits<py::ssize_t>::max() / g.shape(1))  // the size of grad_in
    value_error(op, "pieces = " + std::to_string(pieces) + " is too large for grad_out of shape " + shape_str(g));
  auto a = c_array<std::int64_t>(a_arr, op, "argmax");
  const std::int64_t* ap = a.data();
  const index_t groups = g.size();
  for (index_t i = 0; i < groups; ++i)
    if (ap[i] < 0 || ap[i] >= pieces)
      value_error(op, "argmax must lie in [0, pieces = " + std::to_string(pieces) + "), got " + std::to_string(ap[i]) +
                          " at flat index " + std::to_string(i));
  CArray<T> gi = new_array<T>(std::vector<py::ssize_t>{g.shape(0), g.shape(1) * static_cast<py::ssize_t>(pieces)});
  const T* gp = g.data();
  T* gip = gi.mutable_data();
  {
    py::gil_scoped_release nogil;
    maxout_backward(gp, ap, gip, groups, pieces);
  }
  return std::move(gi);
}

}  // namespace

void bind_activations(py::module_& m) {
  // ---- parameter-free pointwise ops
  def_forward(m, "sigmoid_forward", [](auto... a) { sigmoid_forward(a...); });
  def_backward(m, "sigmoid_backward", "y", [](auto... a) { sigmoid_backward(a...); });
  def_forward(m, "tanh_forward", [](auto... a) { tanh_forward(a...); });
  def_backward(m, "tanh_backward", "y", [](auto... a) { tanh_backward(a...); });
  def_forward(m, "relu_forward", [](auto... a) { relu_forward(a...); });
  def_backward(m, "relu_backward", "y", [](auto... a) { relu_backward(a...); });
  def_forward(m, "selu_forward", [](auto... a) { selu_forward(a...); });
  def_backward(m, "selu_backward", "x", [](auto... a) { selu_backward(a...); });
  def_backward(m, "rrelu_backward", "noise", [](auto... a) { rrelu_backward(a...); });

  // ---- pointwise ops with a scalar parameter
  m.def(
      "leaky_relu_forward",
      [](const py::handle& x, const py::handle& slope_in) -> py::array {
        const char* op = "leaky_relu_forward";
        return dispatch_float(x, op, "x", [&](auto tag) {
          using T = decltype(tag);
          const T slope = T(finite_arg(slope_in, op, "negative_slope"));
          return pointwise_forward<T>(x, op,
                                      [slope](const T* xp, T* yp, index_t n) { leaky_relu_forward(xp, yp, n, slope); });
        });
      },
      py::arg("x"), py::arg("negative_slope") = 0.01);
  m.def(
      "leaky_relu_backward",
      [](const py::handle& g, const py::handle& x, const py::handle& slope_in) -> py::array {
        const char* op = "leaky_relu_backward";
        return dispatch_float(g, op, "grad_out", [&](auto tag) {
          using T = decltype(tag);
          const T slope = T(finite_arg(slope_in, op, "negative_slope"));
          return pointwise_backward<T>(g, x, op, "x", [slope](const T* gp, const T* xp, T* gip, index_t n) {
            leaky_relu_backward(gp, xp, gip, n, slope);
          });
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("negative_slope") = 0.01);
  m.def(
      "elu_forward",
      [](const py::handle& x, const py::handle& alpha_in) -> py::array {
        const char* op = "elu_forward";
        return dispatch_float(x, op, "x", [&](auto tag) {
          using T = decltype(tag);
          const T alpha = T(finite_arg(alpha_in, op, "alpha"));
          return pointwise_forward<T>(x, op, [alpha](const T* xp, T* yp, index_t n) { elu_forward(xp, yp, n, alpha); });
        });
      },
      py::arg("x"), py::arg("alpha") = 1.0);
  m.def(
      "elu_backward",
      [](const py::handle& g, const py::handle& x, const py::handle& alpha_in) -> py::array {
        const char* op = "elu_backward";
        return dispatch_float(g, op, "grad_out", [&](auto tag) {
          using T = decltype(tag);
          const T alpha = T(finite_arg(alpha_in, op, "alpha"));
          return pointwise_backward<T>(g, x, op, "x", [alpha](const T* gp, const T* xp, T* gip, index_t n) {
            elu_backward(gp, xp, gip, n, alpha);
          });
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("alpha") = 1.0);

  // ---- prelu, rrelu
  m.def(
      "prelu_forward",
      [](const py::handle& x, const py::handle& w) -> py::array {
        return dispatch_float(x, "prelu_forward", "x",
                              [&](auto tag) { return prelu_forward_impl<decltype(tag)>(x, w); });
      },
      py::arg("x"), py::arg("weight"));
  m.def(
      "prelu_backward",
      [](const py::handle& g, const py::handle& x, const py::handle& w) -> py::tuple {
        return dispatch_float(g, "prelu_backward", "grad_out",
                              [&](auto tag) { return prelu_backward_impl<decltype(tag)>(g, x, w); });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"));
  m.def(
      "rrelu_forward",
      [](const py::handle& x, const py::handle& lower_in, const py::handle& upper_in, const py::handle& training_in,
         const py::handle& seed_in, const py::handle& step_in) -> py::tuple {
        const char* op = "rrelu_forward";
        return dispatch_float(x, op, "x", [&](auto tag) {
          const double lower = finite_arg(lower_in, op, "lower"), upper = finite_arg(upper_in, op, "upper");
          if (lower < 0 || lower > upper)
            value_error(op, "need 0 <= lower <= upper, got lower = " + show(lower_in) + ", upper = " + show(upper_in));
          const bool training = bool_arg(training_in, op, "training");
          const std::uint64_t seed = uint64_arg(seed_in, op, "seed"), step = uint64_arg(step_in, op, "step");
          return rrelu_forward_impl<decltype(tag)>(x, lower, upper, training, seed, step);
        });
      },
      py::arg("x"), py::arg("lower") = 1.0 / 8, py::arg("upper") = 1.0 / 3, py::arg("training") = false,
      py::arg("seed") = 0, py::arg("step") = 0);

  // ---- softmax over the last axis
  def_rowwise_forward(m, "softmax_forward", [](auto... a) { softmax_forward(a...); });
  def_rowwise_backward(m, "softmax_backward", [](auto... a) { softmax_backward(a...); });
  def_rowwise_forward(m, "log_softmax_forward", [](auto... a) { log_softmax_forward(a...); });
  def_rowwise_backward(m, "log_softmax_backward", [](auto... a) { log_softmax_backward(a...); });

  // ---- maxout
  m.def(
      "maxout_forward",
      [](const py::handle& x, const py::handle& pieces) -> py::tuple {
        return dispatch_float(x, "maxout_forward", "x",
                              [&](auto tag) { return maxout_forward_impl<decltype(tag)>(x, pieces); });
      },
      py::arg("x"), py::arg("pieces"));
  m.def(
      "maxout_backward",
      [](const py::handle& g, const py::handle& argmax, const py::handle& pieces) -> py::array {
        return dispatch_float(g, "maxout_backward", "grad_out",
                              [&](auto tag) { return maxout_backward_impl<decltype(tag)>(g, argmax, pieces); });
      },
      py::arg("grad_out"), py::arg("argmax"), py::arg("pieces"));
}

}  // namespace fastnn::bind
