// dropout_forward / dropout_backward: inverted dropout with a counter-based mask (bool array).
#include <cstring>

#include "bindings/arrays.h"
#include "bindings/dropout_args.h"
#include "fastnn/kernels/dropout.h"

namespace fastnn::bind {
namespace {

using BoolArray = py::array_t<bool, py::array::c_style>;

template <class T>
py::tuple dropout_forward_impl(const py::handle& x_in, const py::handle& p_in, const py::handle& seed_in,
                               const py::handle& step_in, bool training) {
  const char* op = "dropout_forward";
  CArray<T> x = in<T>(x_in, op, "x");
  const double p = p_arg(p_in, op);
  const std::uint64_t seed = u64_arg(seed_in, op, "seed"), step = u64_arg(step_in, op, "step");
  const auto shape = shape_of(x);
  CArray<T> y = new_array<T>(shape);
  BoolArray mask(shape);
  const T* xp = x.data();
  T* yp = y.mutable_data();
  auto* mp = reinterpret_cast<std::uint8_t*>(mask.mutable_data());
  const index_t n = x.size();
  {
    py::gil_scoped_release nogil;
    // Eval mode is the identity: dropout_forward with p = 0 copies x and keeps every element.
    dropout_forward(xp, yp, mp, n, training ? p : 0.0, seed, step);
  }
  return py::make_tuple(std::move(y), std::move(mask));
}

template <class T>
py::array dropout_backward_impl(const py::handle& g_in, const py::handle& mask_in, const py::handle& p_in) {
  const char* op = "dropout_backward";
  CArray<T> g = in<T>(g_in, op, "grad_out");
  py::array m = as_ndarray(mask_in, op, "mask");
  if (!m.dtype().equal(py::dtype::of<bool>())) type_error(op, "mask must be bool, got " + dtype_str(m));
  check_shape(m, op, "mask", shape_of(g));
  BoolArray mask = c_array<bool>(m, op, "mask");
  const double p = p_arg(p_in, op);
  CArray<T> grad_in = new_array<T>(shape_of(g));
  const T* gp = g.data();
  const auto* mp = reinterpret_cast<const std::uint8_t*>(mask.data());
  T* dp = grad_in.mutable_data();
  const index_t n = g.size();
  {
    py::gil_scoped_release nogil;
    dropout_backward(gp, mp, dp, n, p);
  }
  return std::move(grad_in);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def(
      "dropout_forward",
      [](const py::handle& x, const py::handle& p, const py::handle& seed, const py::handle& step, bool training) {
        return dispatch_float(x, "dropout_forward", "x", [&](auto tag) {
          return dropout_forward_impl<decltype(tag)>(x, p, seed, step, training);
        });
      },
      py::arg("x"), py::arg("p") = 0.5, py::arg("seed") = 0, py::arg("step") = 0, py::arg("training") = true);
  m.def(
      "dropout_backward",
      [](const py::handle& grad_out, const py::handle& mask, const py::handle& p) {
        return dispatch_float(grad_out, "dropout_backward", "grad_out",
                              [&](auto tag) { return dropout_backward_impl<decltype(tag)>(grad_out, mask, p); });
      },
      py::arg("grad_out"), py::arg("mask"), py::arg("p"));
}

}  // namespace fastnn::bind
