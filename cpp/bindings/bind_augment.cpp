// augment_batch / augment_params / augment_apply: the augmentation pipeline on (N, C, H, W) batches.
#include "bindings/arrays.h"
#include "bindings/augment_args.h"
#include "bindings/dropout_args.h"
#include "fastnn/kernels/augment.h"

namespace fastnn::bind {
namespace {

std::vector<py::ssize_t> image_batch_shape(index_t n, const ImageShape& s) { return {n, s.c, s.h, s.w}; }

template <class T>
CArray<T> images_arg(const py::handle& h, const char* op) {
  CArray<T> x = in<T>(h, op, "x", true);
  check_ndim(x, op, "x", {4}, "(N, C, H, W)");
  if (x.shape(1) < 1 || x.shape(2) < 1 || x.shape(3) < 1)
    value_error(op, "x must have C, H, W >= 1, got shape " + shape_str(x));
  return x;
}

template <class T>
py::array augment_impl(const py::handle& x_in, const py::handle& ops_in, const py::handle& seed_in,
                       const py::handle& step_in, const py::handle& params_in, bool compose) {
  const char* op = params_in.is_none() ? "augment_batch" : "augment_apply";
  CArray<T> x = images_arg<T>(x_in, op);
  const index_t n = x.shape(0);
  Augmenter<T> aug(augment_ops_arg(ops_in, op), ImageShape{x.shape(1), x.shape(2), x.shape(3)}, op);
  aug.set_compose(compose);
  std::uint64_t seed = 0, step = 0;
  const double* params = nullptr;
  py::array_t<double, py::array::c_style> p;
  if (params_in.is_none()) {
    seed = u64_arg(seed_in, op, "seed");
    step = u64_arg(step_in, op, "step");
  } else {
    p = in<double>(params_in, op, "params", true);
    check_shape(p, op, "params", {n, aug.n_ops(), kAugmentParams});
    params = p.data();
    aug.check_params(params, n, op);
  }
  CArray<T> y = new_array<T>(image_batch_shape(n, aug.output_shape()));
  const T* xp = x.data();
  T* yp = y.mutable_data();
  const index_t in_size = aug.input_shape().size();
  {
    py::gil_scoped_release nogil;
    aug.run([xp, in_size](index_t i) { return xp + i * in_size; }, n, yp, seed, step, params);
  }
  return std::move(y);
}

}  // namespace

void bind_augment(py::module_& m) {
  m.def(
      "augment_batch",
      [](const py::handle& x, const py::handle& ops, const py::handle& seed, const py::handle& step, bool compose) {
        return dispatch_float(x, "augment_batch", "x", [&](auto tag) {
          return augment_impl<decltype(tag)>(x, ops, seed, step, py::none(), compose);
        });
      },
      py::arg("x"), py::arg("ops"), py::arg("seed") = 0, py::arg("step") = 0, py::kw_only(), py::arg("compose") = true);
  m.def(
      "augment_apply",
      [](const py::handle& x, const py::handle& ops, const py::handle& params, bool compose) {
        if (params.is_none()) type_error("augment_apply", "params must be a float64 array, got None");
        return dispatch_float(x, "augment_apply", "x", [&](auto tag) {
          return augment_impl<decltype(tag)>(x, ops, py::none(), py::none(), params, compose);
        });
      },
      py::arg("x"), py::arg("ops"), py::arg("params"), py::kw_only(), py::arg("compose") = true);
  m.def(
      "augment_params",
      [](const py::handle& ops, const py::handle& shape, index_t n, const py::handle& seed, const py::handle& step) {
        const char* op = "augment_params";
        if (n < 0) value_error(op, "n must be >= 0, got " + std::to_string(n));
        Augmenter<double> aug(augment_ops_arg(ops, op), image_shape_arg(shape, op), op);
        const std::uint64_t s = u64_arg(seed, op, "seed"), t = u64_arg(step, op, "step");
        auto out = new_array<double>({n, aug.n_ops(), kAugmentParams});
        double* o = out.mutable_data();
        for (index_t i = 0; i < n; ++i) aug.draw(s, t, i, o + i * aug.params_per_image());
        return out;
      },
      py::arg("ops"), py::arg("shape"), py::arg("n"), py::arg("seed") = 0, py::arg("step") = 0);
}

}  // namespace fastnn::bind
