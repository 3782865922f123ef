// Curvature products (net/curvature.h) as a Python function for fastnn.curvature: hvp and gnvp of a
// model's loss over a data set, with the GIL released. Python validates the data, the loss and v.
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/model_lock.h"
#include "bindings/train_args.h"
#include "fastnn/net/curvature.h"

namespace fastnn::bind {
namespace {

template <class T>
double curvature_impl(const py::handle& model, const py::handle& X, const py::handle& y, const std::string& loss,
                      const std::string& reduction, const py::handle& params, const py::handle& grads,
                      const py::handle& v, const py::handle& hv, const CurvatureOptions& o) {
  const char* op = "hvp";
  const Objective obj = plain_objective_arg(loss, reduction, op);
  std::vector<py::object> keep;
  const Dataset<T> d = dataset_arg<T>(X, y, op, keep);
  Layer<T>* layer = &layer_arg<T>(model, op);
  CArray<T> p = inout<T>(params, op, "params"), g = inout<T>(grads, op, "grads"), h = inout<T>(hv, op, "hv");
  CArray<T> vv = in<T>(v, op, "v");
  const index_t n = layer->num_params();
  if (p.size() != n || g.size() != n || vv.size() != n || h.size() != n)
    value_error(op, "params, grads, v and hv must have the model's " + std::to_string(n) + " elements, got " +
                        std::to_string(p.size()) + ", " + std::to_string(g.size()) + ", " + std::to_string(vv.size()) +
                        " and " + std::to_string(h.size()));
  ModelLock<T> lock(*layer, op, true);
  py::gil_scoped_release nogil;
  return curvature_product(*layer, obj, d, p.mutable_data(), g.mutable_data(), vv.data(), h.mutable_data(), o);
}

}  // namespace

void bind_curvature(py::module_& m) {
  m.def(
      "curvature_product",
      [](const py::handle& model, const py::handle& X, const py::handle& y, const std::string& loss,
         const std::string& reduction, const py::handle& params, const py::handle& grads, const py::handle& v,
         const py::handle& hv, index_t batch_size, bool training, bool gauss_newton, std::uint64_t seed,
         std::uint64_t step, bool gradient) {
        CurvatureOptions o;
        o.gradient = gradient;
        o.batch_size = batch_size;
        o.training = training;
        o.gauss_newton = gauss_newton;
        o.seed = seed;
        o.step = step;
        return dispatch_float(X, "hvp", "X", [&](auto tag) {
          using T = decltype(tag);
          return curvature_impl<T>(model, X, y, loss, reduction, params, grads, v, hv, o);
        });
      },
      py::arg("model"), py::arg("X"), py::arg("y"), py::arg("loss"), py::arg("reduction"), py::arg("params"),
      py::arg("grads"), py::arg("v"), py::arg("hv"), py::arg("batch_size") = 0, py::arg("training") = true,
      py::arg("gauss_newton") = false, py::arg("seed") = 0, py::arg("step") = 0, py::arg("gradient") = true,
      "hv += H v (or the Gauss-Newton G v) of the loss of model over (X, y); grads += the loss gradient "
      "(H v only). Returns the loss. params/grads: the model's flat buffers; fastnn.hvp is the API.");
}

}  // namespace fastnn::bind
