// The arguments the C++ loops share (fit's epoch loop, evaluate, predict, fastnn.hvp, the
// full-batch objective of the second-order optimizers): the loss, the data set and the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "fastnn/kernels/finite.h"
#include "fastnn/layers/layer.h"
#include "fastnn/net/dataset.h"
#include "fastnn/net/objective.h"

namespace fastnn::bind {

// A float64 vector option of the loss (class_weight, pos_weight), finite.
inline std::vector<double> weights_option(const py::dict& opts, const char* key) {
  if (!opts.contains(key) || opts[key].is_none()) return {};
  auto a = c_array<double, py::array::c_style | py::array::forcecast>(opts[key], "train", key);
  if (a.ndim() != 1) value_error("train", std::string(key) + " must be 1-D, got shape " + shape_str(a));
  std::vector<double> v(a.data(), a.data() + a.size());
  for (double w : v) check_finite(w, "train", key);
  return v;
}

// The loss (fastnn.train passes the kernel name of its loss object, its reduction and its options:
// class_weight, pos_weight, label_smoothing, ignore_index, param; and the metrics' top_k).
inline Objective objective_arg(const std::string& loss, const std::string& reduction, const py::object& options) {
  Objective o;
  if (loss == "cross_entropy") o.kind = LossKind::CrossEntropy;
  else if (loss == "bce_with_logits") o.kind = LossKind::BCEWithLogits;
  else if (loss == "mse") o.kind = LossKind::MSE;
  else if (loss == "nll") o.kind = LossKind::NLL;
  else if (loss == "l1") o.kind = LossKind::L1;
  else if (loss == "smooth_l1") o.kind = LossKind::SmoothL1;
  else if (loss == "huber") o.kind = LossKind::Huber;
  else
    throw py::value_error("[train] loss must be 'cross_entropy', 'bce_with_logits', 'mse', 'nll', 'l1', 'smooth_l1' "
                          "or 'huber', got '" + loss + "'");
  if (reduction == "mean") o.reduction = Reduction::mean;
  else if (reduction == "sum") o.reduction = Reduction::sum;
  else throw py::value_error("[train] reduction must be 'mean' or 'sum', got '" + reduction + "'");
  if (options.is_none()) return o;
  const py::dict opts = options.cast<py::dict>();
  o.class_weight = weights_option(opts, "class_weight");
  o.pos_weight = weights_option(opts, "pos_weight");
  if (opts.contains("label_smoothing")) o.label_smoothing = opts["label_smoothing"].cast<double>();
  if (opts.contains("ignore_index")) o.ignore_index = opts["ignore_index"].cast<std::int64_t>();
  if (opts.contains("param")) o.param = opts["param"].cast<double>();
  if (opts.contains("top_k")) o.top_k = opts["top_k"].cast<index_t>();
  if (o.label_smoothing < 0 || o.label_smoothing > 1) value_error("train", "label_smoothing must be in [0, 1]");
  return o;
}

// One of the three losses whose curvature (kernels/loss_hessian.h) and plain full-batch value the
// second-order code handles, without options.
inline Objective plain_objective_arg(const std::string& loss, const std::string& reduction, const char* op) {
  if (loss != "cross_entropy" && loss != "bce_with_logits" && loss != "mse")
    value_error(op, "loss must be 'cross_entropy', 'bce_with_logits' or 'mse', got '" + loss + "'");
  if (reduction != "mean" && reduction != "sum")
    value_error(op, "reduction must be 'mean' or 'sum', got '" + reduction + "'");
  return objective_arg(loss, reduction, py::none());
}

// X and y (None: no targets) as a Dataset view; the arrays stay referenced by `keep`.
template <class T>
Dataset<T> dataset_arg(const py::handle& X, const py::handle& y, const char* op, std::vector<py::object>& keep) {
  CArray<T> x = in<T>(X, op, "X");
  if (x.ndim() < 2) value_error(op, "X must have a batch dimension and features, got shape " + shape_str(x));
  keep.push_back(x);
  Dataset<T> d;
  d.x = x.data();
  d.n = x.shape(0);
  d.sample_shape.assign(x.shape() + 1, x.shape() + x.ndim());
  if (y.is_none()) return d;
  py::array ya = as_ndarray(y, op, "y");
  if (ya.ndim() < 1 || ya.shape(0) != d.n)
    value_error(op, "y must have one entry per sample of X (" + std::to_string(d.n) + "), got shape " + shape_str(ya));
  if (ya.dtype().kind() == 'i' || ya.dtype().kind() == 'u') {
    if (ya.ndim() != 1) value_error(op, "integer labels y must be 1-D, got shape " + shape_str(ya));
    auto labels = c_array<std::int64_t, py::array::c_style | py::array::forcecast>(ya, op, "y");
    keep.push_back(labels);
    d.y.labels = labels.data();
  } else {
    CArray<T> v = in<T>(ya, op, "y");
    keep.push_back(v);
    d.y.values = v.data();
    d.y.width = v.size() / d.n;
  }
  return d;
}

// The C++ layer of a model of dtype T.
template <class T>
Layer<T>& layer_arg(const py::handle& model, const char* op) {
  try {
    return model.cast<Layer<T>&>();
  } catch (const py::cast_error&) {
    type_error(op, std::string("the model's layers are not ") + dtype_name<T>() + " like X");
  }
}

}  // namespace fastnn::bind
