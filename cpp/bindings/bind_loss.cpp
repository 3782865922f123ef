// Losses: cross_entropy_*, nll_*, binary_cross_entropy_with_logits_*, mse_*, l1_*, smooth_l1_*,
// huber_*, each as _forward (float, or the losses for reduction "none"), _backward (gradient array)
// and _forward_backward ((loss, gradient array)), with PyTorch's options as keyword arguments.
#include <cmath>
#include <cstdint>

#include "bindings/arrays.h"
#include "fastnn/kernels/loss.h"

namespace fastnn::bind {
namespace {

// Which results a call returns: the loss, the gradient, or both (computed in one pass).
enum class Want { loss, grad, both };

std::string type_name(const py::handle& h) { return py::str(py::type::of(h).attr("__name__")).cast<std::string>(); }

Reduction reduction_arg(const py::handle& h, const char* op) {
  if (!PyUnicode_Check(h.ptr())) type_error(op, "reduction must be a str, got " + type_name(h));
  const std::string s = h.cast<std::string>();
  if (s == "mean") return Reduction::mean;
  if (s == "sum") return Reduction::sum;
  if (s == "none") return Reduction::none;
  value_error(op, "reduction must be 'mean', 'sum' or 'none', got '" + s + "'");
}

// The upstream gradient: a finite real number.
double grad_arg(const py::handle& h, const char* op) {
  const double g = PyBool_Check(h.ptr()) ? -1.0 : PyFloat_AsDouble(h.ptr());
  if (PyBool_Check(h.ptr()) || (g == -1.0 && PyErr_Occurred())) {
    PyErr_Clear();
    type_error(op, "grad must be a real number, got " + type_name(h));
  }
  check_finite(g, op, "grad");
  return g;
}

// Packs the results a call asked for; `grad` is only read when the gradient was computed.
py::object loss_result(Want want, double loss, py::array grad) {
  if (want == Want::loss) return py::float_(loss);
  if (want == Want::grad) return std::move(grad);
  return py::make_tuple(loss, std::move(grad));
}

// Runs kernel(grad_ptr_or_null) -> loss without the GIL, with the gradient output allocated first.
template <class T, class K>
py::object loss_run(Want want, std::vector<py::ssize_t> shape, K&& kernel) {
  CArray<T> grad = want == Want::loss ? CArray<T>(std::vector<py::ssize_t>{0}) : new_array<T>(shape);
  T* gp = want == Want::loss ? nullptr : grad.mutable_data();
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = kernel(gp);
  }
  return loss_result(want, loss, std::move(grad));
}

// ---- options (PyTorch's): weight, pos_weight, label_smoothing, ignore_index, beta, delta ---------

// The keyword options of one call, checked against the ones its loss takes.
struct LossArgs {
  py::object weight = py::none(), pos_weight = py::none();
  double label_smoothing = 0;
  std::int64_t ignore_index = -100;
  double param = 1;
  bool given = false;  // an option other than ignore_index was given: the general kernel runs
};

LossArgs loss_args_from(const py::kwargs& kw, const char* op, const std::vector<const char*>& allowed) {
  LossArgs a;
  for (auto item : kw) {
    const std::string key = item.first.cast<std::string>();
    bool ok = false;
    for (const char* k : allowed) ok = ok || key == k;
    if (!ok) {
      std::string names;
      for (const char* k : allowed) names += (names.empty() ? "" : ", ") + std::string(k);
      type_error(op, "unexpected option '" + key + "'" + (names.empty() ? "" : " (options: " + names + ")"));
    }
    const py::handle v = item.second;
    if (key == "weight") a.weight = py::reinterpret_borrow<py::object>(v);
    else if (key == "pos_weight") a.pos_weight = py::reinterpret_borrow<py::object>(v);
    else if (key == "ignore_index") {
      if (PyBool_Check(v.ptr()) || !PyLong_Check(v.ptr())) type_error(op, "ignore_index must be an int, got " + type_name(v));
      a.ignore_index = v.cast<std::int64_t>();
      continue;
    } else {
      const double x = grad_arg(v, op);  // a finite real
      if (key == "label_smoothing") {
        if (x < 0 || x > 1) value_error(op, "label_smoothing must be in [0, 1], got " + std::to_string(x));
        a.label_smoothing = x;
        a.given = a.given || x != 0;
        continue;
      }
      if (x < 0 || (key == "delta" && x == 0)) value_error(op, key + " must be " + (key == "delta" ? "> 0" : ">= 0") + ", got " + std::to_string(x));
      a.param = x;  // beta or delta
      continue;
    }
    a.given = a.given || !v.is_none();
  }
  return a;
}

// A float64 copy of a weight option, broadcast to `shape` (numpy's rules), finite; empty for None.
std::vector<double> weight_values(const py::object& w, const char* op, const char* name,
                                  const std::vector<py::ssize_t>& shape) {
  if (w.is_none()) return {};
  if (!py::isinstance<py::array>(w) && !PyFloat_Check(w.ptr()) && !PyLong_Check(w.ptr()))
    type_error(op, std::string(name) + " must be a numpy.ndarray, got " + type_name(w));
  py::array a = py::array::ensure(w);
  if (!a || a.dtype().kind() != 'f' && a.dtype().kind() != 'i' && a.dtype().kind() != 'u')
    type_error(op, std::string(name) + " must be a real array");
  py::tuple dims(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) dims[i] = py::int_(shape[i]);
  py::object b;
  try {
    b = py::module_::import("numpy").attr("broadcast_to")(a, dims);
  } catch (py::error_already_set&) {
    value_error(op, std::string(name) + " of shape " + shape_str(a) + " does not broadcast to " +
                        fastnn::shape_str(Shape(shape.begin(), shape.end())));
  }
  auto d = c_array<double, py::array::c_style | py::array::forcecast>(b, op, name);
  std::vector<double> v(d.data(), d.data() + d.size());
  for (double x : v) check_finite(x, op, name);
  return v;
}

// The upstream gradient: a finite real (the gradient of the reduced loss), or for reduction "none"
// also an array of the per-row / per-element losses' shape (the gradients of each loss). Returns the
// scalar, and fills `each` for an array.
double upstream_arg(const py::handle& g, const char* op, Reduction r, const std::vector<py::ssize_t>& loss_shape,
                    std::vector<double>* each) {
  if (py::isinstance<py::array>(g) && py::reinterpret_borrow<py::array>(g).ndim() > 0) {
    if (r != Reduction::none) type_error(op, "grad must be a real number for reduction 'mean' or 'sum'");
    auto a = py::reinterpret_borrow<py::array>(g);
    std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
    if (got != loss_shape)
      value_error(op, "grad must have the shape of the losses " + fastnn::shape_str(Shape(loss_shape.begin(), loss_shape.end())) +
                          ", got " + shape_str(a));
    *each = weight_values(py::reinterpret_borrow<py::object>(g), op, "grad", loss_shape);
    return 1.0;
  }
  return grad_arg(g, op);
}

// Packs a general kernel's results: the reduced loss, or for "none" the per-row/per-element losses.
template <class T>
py::object general_result(Want want, Reduction r, double loss, std::vector<py::ssize_t> loss_shape, CArray<double>* per,
                          CArray<T>* grad) {
  py::object l = r == Reduction::none ? py::object(*per) : py::object(py::float_(loss));
  if (want == Want::loss) return l;
  if (want == Want::grad) return std::move(*grad);
  return py::make_tuple(l, std::move(*grad));
}

// Runs kernel(grad_or_null, per_or_null) -> loss without the GIL (general kernels).
template <class T, class K>
py::object run_general(Want want, Reduction r, const std::vector<py::ssize_t>& shape,
                       const std::vector<py::ssize_t>& loss_shape, K&& kernel) {
  CArray<T> grad = want == Want::loss ? CArray<T>(std::vector<py::ssize_t>{0}) : new_array<T>(shape);
  CArray<double> per = r == Reduction::none && want != Want::grad ? new_array<double>(loss_shape)
                                                                  : CArray<double>(std::vector<py::ssize_t>{0});
  T* gp = want == Want::loss ? nullptr : grad.mutable_data();
  double* pp = r == Reduction::none && want != Want::grad ? per.mutable_data() : nullptr;
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = kernel(gp, pp);
  }
  return general_result<T>(want, r, loss, loss_shape, &per, &grad);
}

// ---- cross-entropy and NLL ------------------------------------------------------------------------

// The general kernel (options, ignored labels, reduction "none") on a validated target.
template <class T, class Target>
py::object ce_general_run(const CArray<T>& z, const Target& target, const py::handle& g_in, Reduction r, Want want,
                          const LossArgs& la, const char* op, bool nll) {
  const index_t n = z.shape(0), c = z.shape(1);
  std::vector<double> cw = weight_values(la.weight, op, "weight", {c});
  if (!la.weight.is_none() && py::array::ensure(la.weight).ndim() != 1)
    value_error(op, "weight must be 1-D with one entry per class (" + std::to_string(c) + ")");
  std::vector<double> each;
  const double g = want == Want::grad ? upstream_arg(g_in, op, r, {n}, &each) : 1.0;
  LossOptions o;
  o.class_weight = cw.empty() ? nullptr : cw.data();
  o.row_weight = each.empty() ? nullptr : each.data();
  o.label_smoothing = la.label_smoothing;
  o.ignore_index = la.ignore_index;
  const T* zp = z.data();
  // "none" with a gradient: the gradient of the (row-weighted) sum.
  const Reduction kr = r == Reduction::none && want != Want::loss ? Reduction::sum : r;
  return run_general<T>(want, r, shape_of(z), {n}, [&](T* gp, double* pp) {
    double loss;
    if constexpr (detail::is_class_labels<Target>::value)
      loss = nll ? nll_general(zp, target, gp, pp, n, c, o, g, kr) : cross_entropy_general(zp, target, gp, pp, n, c, o, g, kr);
    else
      loss = cross_entropy_general(zp, target, gp, pp, n, c, o, g, kr);
    return loss;
  });
}

// Calls the C++ kernel that `want` names on a validated target (ClassLabels or ClassProbs).
template <class T, class Target>
py::object ce_run(const CArray<T>& z, const Target& target, const py::handle& g_in, Reduction r, Want want,
                  const LossArgs& la, const char* op, bool general) {
  if (general || la.given || r == Reduction::none) return ce_general_run(z, target, g_in, r, want, la, op, false);
  const double g = want == Want::grad ? grad_arg(g_in, op) : 1.0;
  const index_t n = z.shape(0), c = z.shape(1);
  const T* zp = z.data();
  return loss_run<T>(want, shape_of(z), [&](T* gp) {
    if (want == Want::loss) return cross_entropy_forward(zp, target, n, c, r);
    if (want == Want::both) return cross_entropy_forward_backward(zp, target, gp, n, c, r);
    cross_entropy_backward(zp, target, gp, n, c, g, r);
    return 0.0;
  });
}

template <class T, class L>
py::object ce_labels(const char* op, const CArray<T>& z, const py::array& t_arr, const py::handle& g, Reduction r,
                     Want want, const LossArgs& la, bool nll) {
  const index_t n = z.shape(0), c = z.shape(1);
  auto t = c_array<L>(t_arr, op, "target");
  const L* labels = t.data();
  const index_t bad = find_bad_label(labels, n, c, la.ignore_index);
  if (bad >= 0)
    value_error(op, "target[" + std::to_string(bad) + "] = " + std::to_string(labels[bad]) +
                        " is not a class index in [0, " + std::to_string(c) + ")" +
                        " (nor ignore_index " + std::to_string(la.ignore_index) + ")");
  const bool ignored = has_ignored_label(labels, n, la.ignore_index);
  if (nll) return ce_general_run(z, ClassLabels<L>{labels}, g, r, want, la, op, true);
  return ce_run(z, ClassLabels<L>{labels}, g, r, want, la, op, ignored);
}

template <class T>
py::object ce_probs(const char* op, const CArray<T>& z, const py::array& t_arr, const py::handle& g, Reduction r,
                    Want want, const LossArgs& la) {
  const index_t n = z.shape(0), c = z.shape(1);
  CArray<T> t = c_array<T>(t_arr, op, "target");
  const T* tp = t.data();
  // x * 0 is NaN exactly for NaN and +-inf, so one vectorized sum finds any non-finite entry.
  if (std::isnan((CArrMap<T>(tp, n * c) * T(0)).sum())) {
    index_t k = 0;
    while (std::isfinite(tp[k])) ++k;
    value_error(op, "target (class probabilities) must be finite, got " + std::to_string(tp[k]) + " at [" +
                        std::to_string(k / c) + ", " + std::to_string(k % c) + "]");
  }
  return ce_run(z, ClassProbs<T>{tp}, g, r, want, la, op, false);
}

template <class T>
py::object cross_entropy(const char* op, const py::handle& z_in, const py::handle& t_in, const py::handle& g,
                         Reduction r, Want want, const LossArgs& la, bool nll = false) {
  CArray<T> z = in<T>(z_in, op, nll ? "input" : "logits");
  check_ndim(z, op, nll ? "input" : "logits", {2}, "2-D (N, C)");
  const py::ssize_t n = z.shape(0), c = z.shape(1);
  py::array t = as_ndarray(t_in, op, "target");
  if (t.ndim() == 1) {
    if (t.dtype().equal(py::dtype::of<std::int64_t>()) || t.dtype().equal(py::dtype::of<std::int32_t>())) {
      check_shape(t, op, "target", {n});
      return t.dtype().itemsize() == 8 ? ce_labels<T, std::int64_t>(op, z, t, g, r, want, la, nll)
                                       : ce_labels<T, std::int32_t>(op, z, t, g, r, want, la, nll);
    }
    type_error(op, "target of shape " + shape_str(t) + " holds class labels and must be int64 or int32, got " +
                       dtype_str(t));
  }
  if (nll) value_error(op, "target must be (N,) class labels, got shape " + shape_str(t));
  if (t.ndim() == 2) {
    if (!t.dtype().equal(py::dtype::of<T>()))
      type_error(op, "target of shape " + shape_str(t) + " holds class probabilities and must be " + dtype_name<T>() +
                         " like logits, got " + dtype_str(t));
    check_shape(t, op, "target", {n, c});
    return ce_probs<T>(op, z, t, g, r, want, la);
  }
  value_error(op, "target must be (N,) class labels or (N, C) class probabilities, got shape " + shape_str(t));
}

// ---- elementwise losses: target of the input's shape and dtype ----------------------------------

// The target of an elementwise loss: the input's dtype and shape.
template <class T>
CArray<T> target_like(const py::handle& t_in, const CArray<T>& x, const char* op, const char* input_name) {
  py::array t_arr = as_ndarray(t_in, op, "target");
  if (!t_arr.dtype().equal(py::dtype::of<T>()))
    type_error(op, std::string("target must be ") + dtype_name<T>() + " like " + input_name + ", got " +
                       dtype_str(t_arr));
  if (shape_of(t_arr) != shape_of(x))
    value_error(op, std::string("target must have the shape of ") + input_name + " " + shape_str(x) + ", got " +
                        shape_str(t_arr));
  return c_array<T>(t_arr, op, "target");
}

// Checks target against the input, then runs kernel(x, target, grad_or_null, n) -> loss.
template <class T, class K>
py::object elementwise(const char* op, const char* input_name, const py::handle& x_in, const py::handle& t_in,
                       Want want, K&& kernel) {
  CArray<T> x = in<T>(x_in, op, input_name);
  CArray<T> t = target_like<T>(t_in, x, op, input_name);
  const T *xp = x.data(), *tp = t.data();
  const index_t n = x.size();
  return loss_run<T>(want, shape_of(x), [&](T* gp) { return kernel(xp, tp, gp, n); });
}

// The general elementwise kernel: weight (BCE; broadcast to the input), pos_weight (BCE; one per
// value of the last dimension), reduction "none", per-element upstream gradients.
template <ElementLoss K, class T>
py::object element_general(const char* op, const char* input_name, const py::handle& x_in, const py::handle& t_in,
                           const py::handle& g_in, Reduction r, Want want, const LossArgs& la) {
  CArray<T> x = in<T>(x_in, op, input_name);
  CArray<T> t = target_like<T>(t_in, x, op, input_name);
  const std::vector<py::ssize_t> shape = shape_of(x);
  const index_t n = x.size(), cols = x.ndim() ? x.shape(x.ndim() - 1) : 1;
  std::vector<double> w = weight_values(la.weight, op, "weight", shape);
  std::vector<double> pw = weight_values(la.pos_weight, op, "pos_weight", {cols});
  std::vector<double> each;
  const double g = want == Want::grad ? upstream_arg(g_in, op, r, shape, &each) : 1.0;
  if (!each.empty()) {
    if (w.empty()) w.swap(each);
    else for (index_t k = 0; k < n; ++k) w[k] *= each[k];
  }
  LossOptions o;
  o.weight = w.empty() ? nullptr : w.data();
  o.pos_weight = pw.empty() ? nullptr : pw.data();
  o.cols = cols;
  o.param = la.param;
  const Reduction kr = r == Reduction::none && want != Want::loss ? Reduction::sum : r;
  const T *xp = x.data(), *tp = t.data();
  return run_general<T>(want, r, shape, shape,
                        [&](T* gp, double* pp) { return elementwise_loss<K>(xp, tp, gp, pp, n, o, g, kr); });
}

template <class T>
py::object bce(const char* op, const py::handle& z, const py::handle& t, const py::handle& g_in, Reduction r,
               Want want, const LossArgs& la) {
  if (la.given || r == Reduction::none)
    return element_general<ElementLoss::bce_with_logits, T>(op, "logits", z, t, g_in, r, want, la);
  const double g = want == Want::grad ? grad_arg(g_in, op) : 1.0;
  return elementwise<T>(op, "logits", z, t, want, [&](const T* zp, const T* tp, T* gp, index_t n) {
    if (want == Want::loss) return binary_cross_entropy_with_logits_forward(zp, tp, n, r);
    if (want == Want::both) return binary_cross_entropy_with_logits_forward_backward(zp, tp, gp, n, r);
    binary_cross_entropy_with_logits_backward(zp, tp, gp, n, g, r);
    return 0.0;
  });
}

template <class T>
py::object mse(const char* op, const py::handle& x, const py::handle& t, const py::handle& g_in, Reduction r,
               Want want, const LossArgs& la) {
  if (r == Reduction::none) return element_general<ElementLoss::mse, T>(op, "input", x, t, g_in, r, want, la);
  const double g = want == Want::grad ? grad_arg(g_in, op) : 1.0;
  return elementwise<T>(op, "input", x, t, want, [&](const T* xp, const T* tp, T* gp, index_t n) {
    if (want == Want::loss) return mse_forward(xp, tp, n, r);
    if (want == Want::both) return mse_forward_backward(xp, tp, gp, n, r);
    mse_backward(xp, tp, gp, n, g, r);
    return 0.0;
  });
}

// Binds the _forward, _backward and _forward_backward functions of one loss (string literals:
// they are also the op names of the error messages); `first` names the first argument, `options`
// the keyword options it takes.
template <template <class> class Loss>
void bind_three(py::module_& m, const char* fwd, const char* bwd, const char* both, const char* first,
                std::initializer_list<const char*> options) {
  const std::vector<const char*> opts(options);
  auto dispatch = [first, opts](const char* op, const py::handle& a, const py::handle& t, const py::handle& g,
                                const py::handle& reduction, Want w, const py::kwargs& kw) {
    const Reduction r = reduction_arg(reduction, op);
    const LossArgs la = loss_args_from(kw, op, opts);
    return dispatch_float(a, op, first, [&](auto tag) { return Loss<decltype(tag)>::call(op, a, t, g, r, w, la); });
  };
  const py::float_ one(1.0);
  m.def(
      fwd,
      [=](const py::handle& a, const py::handle& t, const py::handle& reduction, const py::kwargs& kw) {
        return dispatch(fwd, a, t, one, reduction, Want::loss, kw);
      },
      py::arg(first), py::arg("target"), py::arg("reduction") = "mean");
  m.def(
      bwd,
      [=](const py::handle& a, const py::handle& t, const py::handle& grad, const py::handle& reduction,
          const py::kwargs& kw) { return dispatch(bwd, a, t, grad, reduction, Want::grad, kw); },
      py::arg(first), py::arg("target"), py::arg("grad") = 1.0, py::arg("reduction") = "mean");
  m.def(
      both,
      [=](const py::handle& a, const py::handle& t, const py::handle& reduction, const py::kwargs& kw) {
        return dispatch(both, a, t, one, reduction, Want::both, kw);
      },
      py::arg(first), py::arg("target"), py::arg("reduction") = "mean");
}

template <class T> struct CrossEntropy {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, const py::handle& g, Reduction r,
                         Want w, const LossArgs& la) {
    return cross_entropy<T>(op, a, t, g, r, w, la);
  }
};
template <class T> struct NegativeLogLikelihood {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, const py::handle& g, Reduction r,
                         Want w, const LossArgs& la) {
    return cross_entropy<T>(op, a, t, g, r, w, la, true);
  }
};
template <class T> struct BinaryCrossEntropyWithLogits {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, const py::handle& g, Reduction r,
                         Want w, const LossArgs& la) {
    return bce<T>(op, a, t, g, r, w, la);
  }
};
template <class T> struct MeanSquaredError {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, const py::handle& g, Reduction r,
                         Want w, const LossArgs& la) {
    return mse<T>(op, a, t, g, r, w, la);
  }
};
template <ElementLoss K> struct General {
  template <class T> struct Of {
    static py::object call(const char* op, const py::handle& a, const py::handle& t, const py::handle& g,
                           Reduction r, Want w, const LossArgs& la) {
      return element_general<K, T>(op, "input", a, t, g, r, w, la);
    }
  };
};

}  // namespace

void bind_loss(py::module_& m) {
  bind_three<CrossEntropy>(m, "cross_entropy_forward", "cross_entropy_backward", "cross_entropy_forward_backward",
                           "logits", {"weight", "label_smoothing", "ignore_index"});
  bind_three<NegativeLogLikelihood>(m, "nll_forward", "nll_backward", "nll_forward_backward", "input",
                                    {"weight", "ignore_index"});
  bind_three<BinaryCrossEntropyWithLogits>(m, "binary_cross_entropy_with_logits_forward",
                                           "binary_cross_entropy_with_logits_backward",
                                           "binary_cross_entropy_with_logits_forward_backward", "logits",
                                           {"weight", "pos_weight"});
  bind_three<MeanSquaredError>(m, "mse_forward", "mse_backward", "mse_forward_backward", "input", {});
  bind_three<General<ElementLoss::l1>::Of>(m, "l1_forward", "l1_backward", "l1_forward_backward", "input", {});
  bind_three<General<ElementLoss::smooth_l1>::Of>(m, "smooth_l1_forward", "smooth_l1_backward",
                                                  "smooth_l1_forward_backward", "input", {"beta"});
  bind_three<General<ElementLoss::huber>::Of>(m, "huber_forward", "huber_backward", "huber_forward_backward", "input",
                                              {"delta"});
}

}  // namespace fastnn::bind
