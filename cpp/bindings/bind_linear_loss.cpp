// linear_loss_forward_backward: a linear model's loss and gradient in one pass over the data
// (kernels/linear_loss.h through net/full_batch.h's linear_objective, what fit(optimizer=LBFGS)
// runs for a model that is one Linear), on NumPy arrays, for fastnn.functional.linear_loss.
#include <string>

#include "bindings/arrays.h"
#include "bindings/train_args.h"
#include "fastnn/net/full_batch.h"

namespace fastnn::bind {

void bind_linear_loss(py::module_& m) {
  m.def(
      "linear_loss_forward_backward",
      [](const py::handle& x, const py::handle& y, const py::handle& w, const py::handle& b, const std::string& loss,
         const std::string& reduction) {
        const char* op = "linear_loss_forward_backward";
        return dispatch_float(x, op, "x", [&](auto tag) -> py::object {
          using T = decltype(tag);
          std::vector<py::object> keep;
          const Objective obj = plain_objective_arg(loss, reduction, op);
          const Dataset<T> d = dataset_arg<T>(x, y, op, keep);
          if (d.sample_shape.size() != 1) value_error(op, "x must be (N, in)");
          py::array wa = as_ndarray(w, op, "weight");
          check_ndim(wa, op, "weight", {2});
          const index_t in_features = d.sample_size(), out = wa.shape(0);
          CArray<T> wc = in<T>(w, op, "weight");
          check_shape(wc, op, "weight", {out, in_features});
          keep.push_back(wc);
          const T* wp = wc.data();
          const T* bp = nullptr;
          if (!b.is_none()) {
            CArray<T> bc = in<T>(b, op, "bias");
            check_shape(bc, op, "bias", {out});
            keep.push_back(bc);
            bp = bc.data();
          }
          if (!linear_loss_fits<T>(out, in_features))
            value_error(op, "at most " + std::to_string(narrow_linear_max_outputs<T>()) + " outputs, got " + std::to_string(out));
          if (d.y.labels && obj.kind != LossKind::CrossEntropy)
            type_error(op, "integer labels need loss 'cross_entropy', got '" + loss + "'");
          if (d.y.values && d.y.width != out)
            value_error(op, "y must have " + std::to_string(out) + " values per sample like the model output");
          CArray<T> dw = new_array<T>({out, in_features});
          py::object db = py::none();
          T* dbp = nullptr;
          if (bp) {
            CArray<T> dba = new_array<T>({out});
            dbp = dba.mutable_data();
            db = dba;
          }
          index_t correct = 0;
          double value;
          {
            py::gil_scoped_release nogil;
            value = linear_objective(obj, d, wp, bp, out, dw.mutable_data(), dbp, &correct);
          }
          return py::make_tuple(value, dw, db, correct);
        });
      },
      py::arg("x"), py::arg("y"), py::arg("weight"), py::arg("bias"), py::arg("loss") = "cross_entropy",
      py::arg("reduction") = "mean");
  m.def(
      "linear_loss_max_outputs",
      [](const std::string& dtype) -> index_t {
        if (dtype == "float32") return narrow_linear_max_outputs<float>();
        if (dtype == "float64") return narrow_linear_max_outputs<double>();
        value_error("linear_loss_max_outputs", "dtype must be 'float32' or 'float64', got '" + dtype + "'");
      },
      py::arg("dtype"));
}

}  // namespace fastnn::bind
