// Argument checks shared by the bindings that take dropout's p, seed and step
// (bind_dropout.cpp, and bind_batchnorm.cpp for the fused batch norm + ReLU + dropout).
#pragma once

#include <cstdint>
#include <string>

#include "bindings/arrays.h"

namespace fastnn::bind {

// p: a real number in [0, 1) (p = 1 would divide by 1 - p = 0).
inline double p_arg(const py::handle& h, const char* op) {
  const double p = PyBool_Check(h.ptr()) ? -1.0 : PyFloat_AsDouble(h.ptr());
  if (PyBool_Check(h.ptr()) || (p == -1.0 && PyErr_Occurred())) {
    PyErr_Clear();
    type_error(op, "p must be a real number, got " + py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  }
  check_finite(p, op, "p");
  if (!(p >= 0.0 && p < 1.0)) value_error(op, "p must be in [0, 1), got " + py::str(py::float_(p)).cast<std::string>());
  return p;
}

// A Python int (or NumPy integer) in [0, 2**64), as uint64.
inline std::uint64_t u64_arg(const py::handle& h, const char* op, const char* name) {
  if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
    type_error(op, std::string(name) + " must be an integer, got " +
                       py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  auto v = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!v) throw py::error_already_set();
  const unsigned long long u = PyLong_AsUnsignedLongLong(v.ptr());  // OverflowError if < 0 or >= 2**64
  if (PyErr_Occurred()) {
    PyErr_Clear();
    value_error(op, std::string(name) + " must be a non-negative integer < 2**64, got " +
                        py::str(v).cast<std::string>());
  }
  return static_cast<std::uint64_t>(u);
}

}  // namespace fastnn::bind
