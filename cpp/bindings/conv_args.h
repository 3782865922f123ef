// Argument checks shared by the bindings of the windowed kernels (im2col, conv2d, pooling):
// int-or-pair geometry, groups and NCHW shapes, with the reference's messages
// (reference/im2col.py, reference/conv.py) so that both raise the same errors.
#pragma once

#include <array>
#include <string>

#include "bindings/arrays.h"
#include "fastnn/kernels/im2col.h"

namespace fastnn::bind {

inline std::string repr_str(const py::handle& h) { return py::repr(h).cast<std::string>(); }

// A Python or NumPy integer (not a bool) as int64; false if h is not one or does not fit.
inline bool integer_value(const py::handle& h, index_t* out) {
  if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr())) return false;
  const std::string type = py::str(py::type::of(h).attr("__name__")).cast<std::string>();
  if (type == "bool_" || type == "bool") return false;
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!i) {
    PyErr_Clear();
    return false;
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow) return false;
  *out = static_cast<index_t>(v);
  return true;
}

// kernel_size / stride / padding / dilation: an int or a pair of ints (tuple or list), each >= minimum, as (h, w).
inline std::array<index_t, 2> pair_arg(const py::handle& h, const char* op, const char* name, index_t minimum) {
  std::array<index_t, 2> v{};
  bool ok = integer_value(h, &v[0]);
  if (ok) {
    v[1] = v[0];
  } else if (py::isinstance<py::tuple>(h) || py::isinstance<py::list>(h)) {
    const auto seq = py::reinterpret_borrow<py::sequence>(h);
    ok = seq.size() == 2 && integer_value(seq[0], &v[0]) && integer_value(seq[1], &v[1]);
  }
  if (!ok) type_error(op, std::string(name) + " must be an int or a pair of ints, got " + repr_str(h));
  if (std::min(v[0], v[1]) < minimum)
    value_error(op, std::string(name) + " must be >= " + std::to_string(minimum) + ", got " + repr_str(h));
  return v;
}

// The window of an im2col / conv2d call for an (N, C, H, W) input; ValueError if it does not fit.
inline ConvGeometry geometry_arg(const std::array<index_t, 4>& nchw, const std::array<index_t, 2>& k,
                                 const py::handle& stride, const py::handle& padding, const py::handle& dilation,
                                 const char* op) {
  const auto s = pair_arg(stride, op, "stride", 1), p = pair_arg(padding, op, "padding", 0),
             d = pair_arg(dilation, op, "dilation", 1);
  return ConvGeometry::make(nchw[0], nchw[1], nchw[2], nchw[3], k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], op);
}

// groups: a positive int (ValueError otherwise, as the reference).
inline index_t groups_arg(const py::handle& h, const char* op) {
  index_t g = 0;
  if (!integer_value(h, &g) || g < 1) value_error(op, "groups must be a positive int, got " + repr_str(h));
  return g;
}

// An ndarray argument that must be 4-D: "[op] x must be (N, C, H, W), got (4, 5, 5)".
inline py::array nchw_arg(const py::handle& h, const char* op, const char* name, const char* what = "(N, C, H, W)") {
  py::array a = as_ndarray(h, op, name);
  if (a.ndim() != 4) value_error(op, std::string(name) + " must be " + what + ", got " + shape_str(a));
  return a;
}

// input_shape: a tuple or list of 4 positive ints.
inline std::array<index_t, 4> input_shape_arg(const py::handle& h, const char* op) {
  std::array<index_t, 4> v{};
  bool ok = py::isinstance<py::tuple>(h) || py::isinstance<py::list>(h);
  if (ok) {
    const auto seq = py::reinterpret_borrow<py::sequence>(h);
    ok = seq.size() == 4;
    for (size_t i = 0; ok && i < 4; ++i) ok = integer_value(seq[i], &v[i]) && v[i] >= 1;
  }
  if (!ok) value_error(op, "input_shape must be (N, C, H, W) of positive ints, got " + repr_str(h));
  return v;
}

inline std::array<index_t, 4> shape4(const py::array& a) {
  return {index_t(a.shape(0)), index_t(a.shape(1)), index_t(a.shape(2)), index_t(a.shape(3))};
}

}  // namespace fastnn::bind
