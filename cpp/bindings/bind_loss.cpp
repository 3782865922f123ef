// Losses: cross_entropy_*, binary_cross_entropy_with_logits_*, mse_*, each as _forward (float),
// _backward (gradient array) and _forward_backward ((float, gradient array)).
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
  value_error(op, "reduction must be 'mean' or 'sum', got '" + s + "'");
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

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// Packs the results a call asked for; `grad` is only read when the gradient was computed.
py::object result(Want want, double loss, py::array grad) {
  if (want == Want::loss) return py::float_(loss);
  if (want == Want::grad) return std::move(grad);
  return py::make_tuple(loss, std::move(grad));
}

// Runs kernel(grad_ptr_or_null) -> loss without the GIL, with the gradient output allocated first.
template <class T, class K>
py::object run(Want want, std::vector<py::ssize_t> shape, K&& kernel) {
  CArray<T> grad = want == Want::loss ? CArray<T>(std::vector<py::ssize_t>{0}) : new_array<T>(shape);
  T* gp = want == Want::loss ? nullptr : grad.mutable_data();
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = kernel(gp);
  }
  return result(want, loss, std::move(grad));
}

// ---- cross-entropy ------------------------------------------------------------------------------

// Calls the C++ kernel that `want` names on a validated target (ClassLabels or ClassProbs).
template <class T, class Target>
py::object ce_run(const CArray<T>& z, const Target& target, double g, Reduction r, Want want) {
  const index_t n = z.shape(0), c = z.shape(1);
  const T* zp = z.data();
  return run<T>(want, shape_of(z), [&](T* gp) {
    if (want == Want::loss) return cross_entropy_forward(zp, target, n, c, r);
    if (want == Want::both) return cross_entropy_forward_backward(zp, target, gp, n, c, r);
    cross_entropy_backward(zp, target, gp, n, c, g, r);
    return 0.0;
  });
}

template <class T, class L>
py::object ce_labels(const char* op, const CArray<T>& z, const py::array& t_arr, double g, Reduction r, Want want) {
  const index_t n = z.shape(0), c = z.shape(1);
  auto t = c_array<L>(t_arr, op, "target");
  const L* labels = t.data();
  const index_t bad = find_bad_label(labels, n, c);
  if (bad >= 0)
    value_error(op, "target[" + std::to_string(bad) + "] = " + std::to_string(labels[bad]) +
                        " is not a class index in [0, " + std::to_string(c) + ")");
  return ce_run(z, ClassLabels<L>{labels}, g, r, want);
}

template <class T>
py::object ce_probs(const char* op, const CArray<T>& z, const py::array& t_arr, double g, Reduction r, Want want) {
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
  return ce_run(z, ClassProbs<T>{tp}, g, r, want);
}

template <class T>
py::object cross_entropy(const char* op, const py::handle& z_in, const py::handle& t_in, double g, Reduction r,
                         Want want) {
  CArray<T> z = in<T>(z_in, op, "logits");
  check_ndim(z, op, "logits", {2}, "2-D (N, C)");
  const py::ssize_t n = z.shape(0), c = z.shape(1);
  py::array t = as_ndarray(t_in, op, "target");
  if (t.ndim() == 1) {
    if (t.dtype().equal(py::dtype::of<std::int64_t>()) || t.dtype().equal(py::dtype::of<std::int32_t>())) {
      check_shape(t, op, "target", {n});
      return t.dtype().itemsize() == 8 ? ce_labels<T, std::int64_t>(op, z, t, g, r, want)
                                       : ce_labels<T, std::int32_t>(op, z, t, g, r, want);
    }
    type_error(op, "target of shape " + shape_str(t) + " holds class labels and must be int64 or int32, got " +
                       dtype_str(t));
  }
  if (t.ndim() == 2) {
    if (!t.dtype().equal(py::dtype::of<T>()))
      type_error(op, "target of shape " + shape_str(t) + " holds class probabilities and must be " + dtype_name<T>() +
                         " like logits, got " + dtype_str(t));
    check_shape(t, op, "target", {n, c});
    return ce_probs<T>(op, z, t, g, r, want);
  }
  value_error(op, "target must be (N,) class labels or (N, C) class probabilities, got shape " + shape_str(t));
}

// ---- elementwise losses: target of the input's shape and dtype ----------------------------------

// Checks target against the input, then runs kernel(x, target, grad_or_null, n) -> loss.
template <class T, class K>
py::object elementwise(const char* op, const char* input_name, const py::handle& x_in, const py::handle& t_in,
                       Want want, K&& kernel) {
  CArray<T> x = in<T>(x_in, op, input_name);
  py::array t_arr = as_ndarray(t_in, op, "target");
  if (!t_arr.dtype().equal(py::dtype::of<T>()))
    type_error(op, std::string("target must be ") + dtype_name<T>() + " like " + input_name + ", got " +
                       dtype_str(t_arr));
  if (shape_of(t_arr) != shape_of(x))
    value_error(op, std::string("target must have the shape of ") + input_name + " " + shape_str(x) + ", got " +
                        shape_str(t_arr));
  CArray<T> t = c_array<T>(t_arr, op, "target");
  const T *xp = x.data(), *tp = t.data();
  const index_t n = x.size();
  return run<T>(want, shape_of(x), [&](T* gp) { return kernel(xp, tp, gp, n); });
}

template <class T>
py::object bce(const char* op, const py::handle& z, const py::handle& t, double g, Reduction r, Want want) {
  return elementwise<T>(op, "logits", z, t, want, [&](const T* zp, const T* tp, T* gp, index_t n) {
    if (want == Want::loss) return binary_cross_entropy_with_logits_forward(zp, tp, n, r);
    if (want == Want::both) return binary_cross_entropy_with_logits_forward_backward(zp, tp, gp, n, r);
    binary_cross_entropy_with_logits_backward(zp, tp, gp, n, g, r);
    return 0.0;
  });
}

template <class T>
py::object mse(const char* op, const py::handle& x, const py::handle& t, double g, Reduction r, Want want) {
  return elementwise<T>(op, "input", x, t, want, [&](const T* xp, const T* tp, T* gp, index_t n) {
    if (want == Want::loss) return mse_forward(xp, tp, n, r);
    if (want == Want::both) return mse_forward_backward(xp, tp, gp, n, r);
    mse_backward(xp, tp, gp, n, g, r);
    return 0.0;
  });
}

// Binds the _forward, _backward and _forward_backward functions of one loss (string literals:
// they are also the op names of the error messages); `first` names the first argument.
template <template <class> class Loss>
void bind_three(py::module_& m, const char* fwd, const char* bwd, const char* both, const char* first) {
  auto dispatch = [first](const char* op, const py::handle& a, const py::handle& t, double g, Reduction r, Want w) {
    return dispatch_float(a, op, first, [&](auto tag) { return Loss<decltype(tag)>::call(op, a, t, g, r, w); });
  };
  m.def(
      fwd,
      [=](const py::handle& a, const py::handle& t, const py::handle& reduction) {
        return dispatch(fwd, a, t, 1.0, reduction_arg(reduction, fwd), Want::loss);
      },
      py::arg(first), py::arg("target"), py::arg("reduction") = "mean");
  m.def(
      bwd,
      [=](const py::handle& a, const py::handle& t, const py::handle& grad, const py::handle& reduction) {
        return dispatch(bwd, a, t, grad_arg(grad, bwd), reduction_arg(reduction, bwd), Want::grad);
      },
      py::arg(first), py::arg("target"), py::arg("grad") = 1.0, py::arg("reduction") = "mean");
  m.def(
      both,
      [=](const py::handle& a, const py::handle& t, const py::handle& reduction) {
        return dispatch(both, a, t, 1.0, reduction_arg(reduction, both), Want::both);
      },
      py::arg(first), py::arg("target"), py::arg("reduction") = "mean");
}

template <class T> struct CrossEntropy {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, double g, Reduction r, Want w) {
    return cross_entropy<T>(op, a, t, g, r, w);
  }
};
template <class T> struct BinaryCrossEntropyWithLogits {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, double g, Reduction r, Want w) {
    return bce<T>(op, a, t, g, r, w);
  }
};
template <class T> struct MeanSquaredError {
  static py::object call(const char* op, const py::handle& a, const py::handle& t, double g, Reduction r, Want w) {
    return mse<T>(op, a, t, g, r, w);
  }
};

}  // namespace

void bind_loss(py::module_& m) {
  bind_three<CrossEntropy>(m, "cross_entropy_forward", "cross_entropy_backward", "cross_entropy_forward_backward",
                           "logits");
  bind_three<BinaryCrossEntropyWithLogits>(m, "binary_cross_entropy_with_logits_forward",
                                           "binary_cross_entropy_with_logits_backward",
                                           "binary_cross_entropy_with_logits_forward_backward", "logits");
  bind_three<MeanSquaredError>(m, "mse_forward", "mse_backward", "mse_forward_backward", "input");
}

}  // namespace fastnn::bind
