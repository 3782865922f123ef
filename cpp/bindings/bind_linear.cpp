// linear_forward / linear_backward: x and weight are mapped without copies in C order, Fortran
// order, transposed or column-sliced (MatrixArg); grad_out, y and bias are read C-contiguous.
#include <string>

#include "bindings/arrays.h"
#include "bindings/matrix_arg.h"
#include "fastnn/kernels/linear.h"

namespace fastnn::bind {
namespace {

// A Python real number (int, float, NumPy scalar; not bool or str) as a double.
double real_arg(const py::handle& h, const char* op, const char* name) {
  const bool number = !py::isinstance<py::bool_>(h) && !py::isinstance<py::str>(h) && !py::isinstance<py::bytes>(h) &&
                      PyNumber_Check(h.ptr());
  if (number) {
    const double v = PyFloat_AsDouble(h.ptr());
    if (!(v == -1.0 && PyErr_Occurred())) return v;
    PyErr_Clear();
  }
  type_error(op, std::string(name) + " must be a real number, got " +
                     py::str(py::type::of(h).attr("__name__")).cast<std::string>());
}

Activation activation_arg(const py::handle& h, const char* op) {
  if (!py::isinstance<py::str>(h))
    type_error(op, "activation must be a str, got " + py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  Activation a;
  const std::string name = h.cast<std::string>();
  if (!parse_activation(name, &a))
    value_error(op, "activation must be one of " + std::string(activation_names()) + ", got '" + name + "'");
  return a;
}

// A 2-D, non-empty ndarray of dtype T (TypeError if the dtype differs from x's).
template <class T>
py::array matrix(const py::handle& h, const char* op, const char* name) {
  py::array a = as_ndarray(h, op, name);
  if (!a.dtype().equal(py::dtype::of<T>()))
    type_error(op, std::string(name) + " must be " + dtype_name<T>() + " like x, got " + dtype_str(a));
  check_ndim(a, op, name, {2});
  check_nonempty(a, op, name);
  return a;
}

// Calls f(xv, wv) with the Eigen views of x and weight (four layout combinations); needs no GIL.
template <class T, class F>
void visit2(const MatrixArg<T>& x, const MatrixArg<T>& w, F&& f) {
  x.visit([&](const auto& xv) { w.visit([&](const auto& wv) { f(xv, wv); }); });
}

template <class T>
py::array forward_impl(const py::handle& x_in, const py::handle& w_in, const py::handle& b_in,
                       const py::handle& act_in, const py::handle& slope_in) {
  const char* op = "linear_forward";
  py::array x = matrix<T>(x_in, op, "x"), w = matrix<T>(w_in, op, "weight");
  if (x.shape(1) != w.shape(1))
    value_error(op, "x (N, in) and weight (out, in) do not match: x is " + shape_str(x) + ", weight is " + shape_str(w));
  const index_t n = x.shape(0), out = w.shape(0);
  CArray<T> b;
  if (!b_in.is_none()) {
    b = in<T>(b_in, op, "bias");
    check_shape(b, op, "bias", {out});
  }
  const Activation act = activation_arg(act_in, op);
  const double slope = real_arg(slope_in, op, "negative_slope");
  check_finite(slope, op, "negative_slope");

  const MatrixArg<T> xm(x, op, "x"), wm(w, op, "weight");
  CArray<T> y = new_array<T>(std::vector<py::ssize_t>{n, out});
  const T* bp = b_in.is_none() ? nullptr : b.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    visit2(xm, wm, [&](const auto& xv, const auto& wv) { linear_forward(xv, wv, bp, yp, act, static_cast<T>(slope)); });
  }
  return std::move(y);
}

template <class T>
py::tuple backward_impl(const py::handle& go_in, const py::handle& x_in, const py::handle& w_in, const py::handle& y_in,
                        const py::handle& act_in, const py::handle& slope_in, const py::handle& need_gi_in,
                        const py::handle& need_gb_in, const py::handle& gw_out, const py::handle& gb_out) {
  const char* op = "linear_backward";
  py::array x = matrix<T>(x_in, op, "x"), w = matrix<T>(w_in, op, "weight");
  if (x.shape(1) != w.shape(1))
    value_error(op, "x (N, in) and weight (out, in) do not match: x is " + shape_str(x) + ", weight is " + shape_str(w));
  const index_t n = x.shape(0), in_f = x.shape(1), out = w.shape(0);
  CArray<T> go = in<T>(go_in, op, "grad_out");
  check_shape(go, op, "grad_out", {n, out});
  const Activation act = activation_arg(act_in, op);
  const double slope = real_arg(slope_in, op, "negative_slope");
  check_finite(slope, op, "negative_slope");
  if (act == Activation::leaky_relu && !(slope > 0))
    value_error(op, "leaky_relu backward needs negative_slope > 0 (it reads the side of zero from y), got " +
                        std::to_string(slope));
  CArray<T> y;
  if (y_in.is_none()) {
    if (act != Activation::none)
      value_error(op, std::string("y (the output of linear_forward) is required for activation '") +
                          activation_name(act) + "'");
  } else {
    y = in<T>(y_in, op, "y");
    check_shape(y, op, "y", {n, out});
  }
  const bool need_gi = flag_arg(need_gi_in, op, "need_input_grad");
  const bool need_gb = flag_arg(need_gb_in, op, "need_bias_grad");
  if (!need_gb && !gb_out.is_none()) value_error(op, "grad_bias_out is given but need_bias_grad is False");

  const bool acc_w = !gw_out.is_none(), acc_b = !gb_out.is_none();
  CArray<T> gw = acc_w ? accumulator<T>(gw_out, op, "grad_weight_out", {out, in_f}, {&x, &w, &go, &y})
                       : new_array<T>({out, in_f});
  CArray<T> gb;
  if (need_gb) gb = acc_b ? accumulator<T>(gb_out, op, "grad_bias_out", {out}, {&x, &w, &go, &y, &gw}) : new_array<T>({out});
  CArray<T> gi;
  if (need_gi) gi = new_array<T>({n, in_f});
  CArray<T> scratch;
  if (act != Activation::none) scratch = new_array<T>({n, out});

  const MatrixArg<T> xm(x, op, "x"), wm(w, op, "weight");
  const T *gop = go.data(), *yp = y_in.is_none() ? nullptr : y.data();
  T *gip = need_gi ? gi.mutable_data() : nullptr, *gwp = gw.mutable_data();
  T *gbp = need_gb ? gb.mutable_data() : nullptr, *sp = act != Activation::none ? scratch.mutable_data() : nullptr;
  {
    py::gil_scoped_release nogil;
    // grad_weight and grad_bias are either both fresh or both accumulated: split the rare mixed
    // case into two calls rather than give the kernel two flags.
    visit2(xm, wm, [&](const auto& xv, const auto& wv) {
      if (acc_w == (acc_b || !need_gb)) {
        linear_backward(gop, xv, wv, yp, gip, gwp, gbp, sp, act, static_cast<T>(slope), acc_w);
      } else {
        linear_backward(gop, xv, wv, yp, gip, gwp, static_cast<T*>(nullptr), sp, act, static_cast<T>(slope), acc_w);
        linear_backward_elementwise(gop, yp, sp, gbp, n, out, act, static_cast<T>(slope), acc_b);
      }
    });
  }
  py::object gi_obj = need_gi ? py::object(std::move(gi)) : py::object(py::none());
  py::object gb_obj = need_gb ? py::object(std::move(gb)) : py::object(py::none());
  return py::make_tuple(gi_obj, std::move(gw), gb_obj);
}

}  // namespace

void bind_linear(py::module_& m) {
  m.def(
      "linear_forward",
      [](const py::handle& x, const py::handle& weight, const py::handle& bias, const py::handle& activation,
         const py::handle& negative_slope) -> py::array {
        return dispatch_float(x, "linear_forward", "x", [&](auto tag) {
          return forward_impl<decltype(tag)>(x, weight, bias, activation, negative_slope);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = "none",
      py::arg("negative_slope") = 0.01);
  m.def(
      "linear_backward",
      [](const py::handle& grad_out, const py::handle& x, const py::handle& weight, const py::handle& y,
         const py::handle& activation, const py::handle& negative_slope, const py::handle& need_input_grad,
         const py::handle& need_bias_grad, const py::handle& grad_weight_out,
         const py::handle& grad_bias_out) -> py::tuple {
        return dispatch_float(x, "linear_backward", "x", [&](auto tag) {
          return backward_impl<decltype(tag)>(grad_out, x, weight, y, activation, negative_slope, need_input_grad,
                                              need_bias_grad, grad_weight_out, grad_bias_out);
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("y") = py::none(), py::arg("activation") = "none",
      py::arg("negative_slope") = 0.01, py::arg("need_input_grad") = true, py::arg("need_bias_grad") = true,
      py::arg("grad_weight_out") = py::none(), py::arg("grad_bias_out") = py::none());
}

}  // namespace fastnn::bind
