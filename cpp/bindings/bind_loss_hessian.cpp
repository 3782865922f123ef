// H r of the losses (kernels/loss_hessian.h) on NumPy arrays, for fastnn.functional.loss_hessian.
#include <cstdint>

#include "bindings/arrays.h"
#include "fastnn/kernels/loss_hessian.h"

namespace fastnn::bind {
namespace {

template <class T>
void same_shape(const CArray<T>& a, const CArray<T>& b, const char* op, const char* name) {
  if (shape_of(a) != shape_of(b))
    value_error(op, std::string(name) + " must have the shape of the logits " + shape_str(a) + ", got " + shape_str(b));
}

}  // namespace

void bind_loss_hessian(py::module_& m) {
  m.def(
      "cross_entropy_hessian_vector",
      [](const py::handle& logits, const py::handle& target, const py::handle& r, double scale) {
        const char* op = "cross_entropy_hessian_vector";
        check_finite(scale, op, "scale");
        return dispatch_float(logits, op, "logits", [&](auto tag) -> py::object {
          using T = decltype(tag);
          CArray<T> z = in<T>(logits, op, "logits"), rv = in<T>(r, op, "r");
          if (z.ndim() != 2) value_error(op, "logits must be (N, C), got shape " + shape_str(z));
          same_shape(z, rv, op, "r");
          const index_t n = z.shape(0), c = z.shape(1);
          py::array t = as_ndarray(target, op, "target");
          CArray<T> hr = new_array<T>(shape_of(z));
          if (t.dtype().kind() == 'i' || t.dtype().kind() == 'u') {
            auto labels = c_array<std::int64_t, py::array::c_style | py::array::forcecast>(t, op, "target");
            if (labels.ndim() != 1 || labels.shape(0) != n)
              value_error(op, "labels must be (" + std::to_string(n) + ",), got " + shape_str(labels));
            for (index_t i = 0; i < n; ++i)
              if (labels.data()[i] < 0 || labels.data()[i] >= c)
                value_error(op, "label " + std::to_string(labels.data()[i]) + " is not a class index in [0, " +
                                    std::to_string(c) + ")");
            py::gil_scoped_release nogil;
            cross_entropy_hessian_vector(z.data(), labels.data(), static_cast<const T*>(nullptr), rv.data(),
                                         hr.mutable_data(), n, c, scale);
          } else {
            CArray<T> probs = in<T>(t, op, "target");
            same_shape(z, probs, op, "target");
            py::gil_scoped_release nogil;
            cross_entropy_hessian_vector(z.data(), static_cast<const std::int64_t*>(nullptr), probs.data(), rv.data(),
                                         hr.mutable_data(), n, c, scale);
          }
          return std::move(hr);
        });
      },
      py::arg("logits"), py::arg("target"), py::arg("r"), py::arg("scale") = 1.0);
  m.def(
      "bce_with_logits_hessian_vector",
      [](const py::handle& logits, const py::handle& r, double scale) {
        const char* op = "bce_with_logits_hessian_vector";
        check_finite(scale, op, "scale");
        return dispatch_float(logits, op, "logits", [&](auto tag) -> py::object {
          using T = decltype(tag);
          CArray<T> z = in<T>(logits, op, "logits"), rv = in<T>(r, op, "r");
          same_shape(z, rv, op, "r");
          CArray<T> hr = new_array<T>(shape_of(z));
          py::gil_scoped_release nogil;
          bce_with_logits_hessian_vector(z.data(), rv.data(), hr.mutable_data(), z.size(), scale);
          return std::move(hr);
        });
      },
      py::arg("logits"), py::arg("r"), py::arg("scale") = 1.0);
  m.def(
      "mse_hessian_vector",
      [](const py::handle& r, double scale) {
        const char* op = "mse_hessian_vector";
        check_finite(scale, op, "scale");
        return dispatch_float(r, op, "r", [&](auto tag) -> py::object {
          using T = decltype(tag);
          CArray<T> rv = in<T>(r, op, "r");
          CArray<T> hr = new_array<T>(shape_of(rv));
          py::gil_scoped_release nogil;
          mse_hessian_vector(rv.data(), hr.mutable_data(), rv.size(), scale);
          return std::move(hr);
        });
      },
      py::arg("r"), py::arg("scale") = 1.0);
}

}  // namespace fastnn::bind
