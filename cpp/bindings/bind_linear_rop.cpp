// linear_forward_pair (kernels/linear_rop.h), the forward and the direction's R{z} of a Linear in
// one pass, on NumPy arrays, for fastnn.functional.linear_rop and its tests.
#include <string>

#include "bindings/arrays.h"
#include "fastnn/kernels/linear_rop.h"

namespace fastnn::bind {
namespace {

// An (out, in) matrix, or (out,) vector when `vector`, C-contiguous, of x's dtype; None: null when optional.
template <class T>
const T* param_arg(const py::handle& h, const char* op, const char* name, index_t out, index_t in_features,
                   bool vector, std::vector<py::object>& keep) {
  if (h.is_none()) {
    if (!vector) value_error(op, std::string(name) + " is required");
    return nullptr;
  }
  CArray<T> a = in<T>(h, op, name);
  if (vector) check_shape(a, op, name, {out});
  else check_shape(a, op, name, {out, in_features});
  keep.push_back(a);
  return a.data();
}

Activation activation_of(const std::string& name, const char* op) {
  Activation a;
  if (!parse_activation(name, &a))
    value_error(op, "activation must be one of " + std::string(activation_names()) + ", got '" + name + "'");
  return a;
}

}  // namespace

void bind_linear_rop(py::module_& m) {
  m.def(
      "linear_forward_pair",
      [](const py::handle& x, const py::handle& w, const py::handle& b, const py::handle& v, const py::handle& vb,
         const std::string& activation, double slope) {
        const char* op = "linear_forward_pair";
        return dispatch_float(x, op, "x", [&](auto tag) -> py::object {
          using T = decltype(tag);
          std::vector<py::object> keep;
          CArray<T> xa = in<T>(x, op, "x");
          check_ndim(xa, op, "x", {2});
          py::array wa = as_ndarray(w, op, "weight");
          check_ndim(wa, op, "weight", {2});
          const index_t n = xa.shape(0), in_features = xa.shape(1), out = wa.shape(0);
          if (out < 1) value_error(op, "weight must have at least one row, got shape " + shape_str(wa));
          const T* wp = param_arg<T>(w, op, "weight", out, in_features, false, keep);
          const T* bp = param_arg<T>(b, op, "bias", out, in_features, true, keep);
          const T* vp = param_arg<T>(v, op, "v_weight", out, in_features, false, keep);
          const T* vbp = param_arg<T>(vb, op, "v_bias", out, in_features, true, keep);
          const Activation act = activation_of(activation, op);
          check_finite(slope, op, "negative_slope");
          CArray<T> y = new_array<T>({n, out}), r = new_array<T>({n, out});
          {
            py::gil_scoped_release nogil;
            linear_forward_pair(xa.data(), wp, bp, vp, vbp, y.mutable_data(), r.mutable_data(), n, in_features, out,
                                act, static_cast<T>(slope));
          }
          return py::make_tuple(y, r);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("v_weight"), py::arg("v_bias"),
      py::arg("activation") = "none", py::arg("negative_slope") = 0.01);
}

}  // namespace fastnn::bind
