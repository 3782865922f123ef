// The augmentation pipeline argument shared by bind_augment.cpp and bind_train.cpp (fit's
// augment=): a list of (kind, {field: value}) pairs, as fastnn.augment.Compose._spec() builds.
// Unknown kinds or fields are errors, so a misspelt option cannot be silently ignored.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "fastnn/kernels/augment.h"

namespace fastnn::bind {

namespace augment_args_detail {

inline double real_field(const py::handle& v, const char* op, const std::string& name) {
  if (PyBool_Check(v.ptr())) return v.ptr() == Py_True ? 1.0 : 0.0;
  const double d = PyFloat_AsDouble(v.ptr());
  if (d == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    type_error(op, "augmentation field " + name + " must be a real number, got " +
                       py::str(py::type::of(v).attr("__name__")).cast<std::string>());
  }
  if (std::isnan(d)) value_error(op, "augmentation field " + name + " must not be NaN");
  return d;
}

inline index_t int_field(const py::handle& v, const char* op, const std::string& name) {
  const double d = real_field(v, op, name);
  if (d != std::floor(d) || std::fabs(d) > 1e15) value_error(op, "augmentation field " + name + " must be an integer");
  return static_cast<index_t>(d);
}

inline AugmentKind kind_arg(const std::string& kind, const char* op) {
  if (kind == "hflip") return AugmentKind::hflip;
  if (kind == "vflip") return AugmentKind::vflip;
  if (kind == "shift") return AugmentKind::shift;
  if (kind == "affine") return AugmentKind::affine;
  if (kind == "crop") return AugmentKind::crop;
  if (kind == "noise") return AugmentKind::noise;
  if (kind == "erase") return AugmentKind::erase;
  if (kind == "jitter") return AugmentKind::jitter;
  value_error(op, "unknown augmentation kind '" + kind + "'");
}

inline AugmentOp op_arg(const py::handle& item, const char* op) {
  if (!py::isinstance<py::tuple>(item) || py::len(item) != 2)
    type_error(op, "each augmentation must be a (kind, fields) pair");
  const auto pair = py::reinterpret_borrow<py::tuple>(item);
  if (!py::isinstance<py::str>(pair[0]) || !py::isinstance<py::dict>(pair[1]))
    type_error(op, "each augmentation must be a (str, dict) pair");
  AugmentOp o;
  o.kind = kind_arg(pair[0].cast<std::string>(), op);
  for (const auto& kv : pair[1].cast<py::dict>()) {
    const std::string k = py::str(kv.first).cast<std::string>();
    const py::handle v = kv.second;
    auto real = [&] { return real_field(v, op, k); };
    auto integer = [&] { return int_field(v, op, k); };
    if (k == "p") o.p = real();
    else if (k == "max_dy") o.max_dy = integer();
    else if (k == "max_dx") o.max_dx = integer();
    else if (k == "degrees_lo") o.degrees_lo = real();
    else if (k == "degrees_hi") o.degrees_hi = real();
    else if (k == "translate_x") o.translate_x = real();
    else if (k == "translate_y") o.translate_y = real();
    else if (k == "scale_lo") o.scale_lo = real();
    else if (k == "scale_hi") o.scale_hi = real();
    else if (k == "shear_x_lo") o.shear_x_lo = real();
    else if (k == "shear_x_hi") o.shear_x_hi = real();
    else if (k == "shear_y_lo") o.shear_y_lo = real();
    else if (k == "shear_y_hi") o.shear_y_hi = real();
    else if (k == "nearest") o.nearest = real() != 0;
    else if (k == "out_h") o.out_h = integer();
    else if (k == "out_w") o.out_w = integer();
    else if (k == "pad_top") o.pad_top = integer();
    else if (k == "pad_left") o.pad_left = integer();
    else if (k == "pad_bottom") o.pad_bottom = integer();
    else if (k == "pad_right") o.pad_right = integer();
    else if (k == "edge") o.border = real() != 0 ? AugmentBorder::edge : AugmentBorder::constant;
    else if (k == "fill") o.fill = real();
    else if (k == "mean") o.mean = real();
    else if (k == "sigma") o.sigma = real();
    else if (k == "clip") o.clip = real() != 0;
    else if (k == "area_lo") o.area_lo = real();
    else if (k == "area_hi") o.area_hi = real();
    else if (k == "log_ratio_lo") o.log_ratio_lo = real();
    else if (k == "log_ratio_hi") o.log_ratio_hi = real();
    else if (k == "random_value") o.random_value = real() != 0;
    else if (k == "value") o.value = real();
    else if (k == "brightness_lo") o.brightness_lo = real();
    else if (k == "brightness_hi") o.brightness_hi = real();
    else if (k == "contrast_lo") o.contrast_lo = real();
    else if (k == "contrast_hi") o.contrast_hi = real();
    else if (k == "clamp") o.clamp = real() != 0;
    else if (k == "clamp_lo") o.clamp_lo = real();
    else if (k == "clamp_hi") o.clamp_hi = real();
    else value_error(op, "unknown field '" + k + "' of augmentation '" + pair[0].cast<std::string>() + "'");
  }
  return o;
}

}  // namespace augment_args_detail

inline std::vector<AugmentOp> augment_ops_arg(const py::handle& ops, const char* op) {
  if (!py::isinstance<py::list>(ops) && !py::isinstance<py::tuple>(ops))
    type_error(op, "ops must be a list of (kind, fields) pairs");
  std::vector<AugmentOp> out;
  for (const auto& item : ops) out.push_back(augment_args_detail::op_arg(item, op));
  return out;
}

// (C, H, W) from a sequence of 3 positive integers.
inline ImageShape image_shape_arg(const py::handle& shape, const char* op) {
  if ((!py::isinstance<py::list>(shape) && !py::isinstance<py::tuple>(shape)) || py::len(shape) != 3)
    value_error(op, "image shape must be (C, H, W)");
  auto seq = py::reinterpret_borrow<py::sequence>(shape);
  ImageShape s{augment_args_detail::int_field(seq[0], op, "C"), augment_args_detail::int_field(seq[1], op, "H"),
               augment_args_detail::int_field(seq[2], op, "W")};
  if (s.c < 1 || s.h < 1 || s.w < 1) value_error(op, "image shape (C, H, W) must be positive");
  return s;
}

}  // namespace fastnn::bind
