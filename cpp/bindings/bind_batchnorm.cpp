// batch_norm_forward / _backward (train and eval), batch_norm_fold, batch_norm_affine, the
// fused batch_norm_relu_forward / _backward (batch norm + ReLU + optional dropout), and
// batch_norm_relu_max_pool2d_forward (training batch norm + ReLU + MaxPool2d(2)).
#include <cstdint>
#include <optional>

#include "bindings/arrays.h"
#include "bindings/dropout_args.h"
#include "fastnn/kernels/batchnorm.h"
#include "fastnn/kernels/batchnorm_activation.h"

namespace fastnn::bind {
namespace {

constexpr const char* kXShapes = "(N, C), (N, C, L) or (N, C, H, W)";

// x viewed as (N, C, S): S is the product of the spatial extents (1 for a (N, C) input).
struct Geometry {
  index_t N, C, S;
  explicit Geometry(const py::array& x) : N(x.shape(0)), C(x.shape(1)), S(1) {
    for (py::ssize_t d = 2; d < x.ndim(); ++d) S *= x.shape(d);
  }
};

template <class T>
CArray<T> input_x(const py::handle& h, const char* op, const char* name) {
  CArray<T> x = in<T>(h, op, name);
  check_ndim(x, op, name, {2, 3, 4}, kXShapes);
  return x;
}

// A (C,) input of dtype T, or nothing for None.
template <class T>
std::optional<CArray<T>> optional_channels(const py::object& h, const char* op, const char* name, index_t C) {
  if (h.is_none()) return std::nullopt;
  CArray<T> a = in<T>(h, op, name);
  check_shape(a, op, name, {C});
  return a;
}

template <class T>
CArray<T> channels(const py::handle& h, const char* op, const char* name, index_t C) {
  CArray<T> a = in<T>(h, op, name);
  check_shape(a, op, name, {C});
  return a;
}

template <class T> const T* ptr(const std::optional<CArray<T>>& a) { return a ? a->data() : nullptr; }

void check_eps(double eps, const char* op) {
  check_finite(eps, op, "eps");
  if (!(eps > 0)) value_error(op, "eps must be > 0, got " + std::to_string(eps));
}

// The checked arguments of a forward: x, gamma/beta and the running statistics (updated in place).
template <class T>
struct ForwardArgs {
  CArray<T> x;
  Geometry geo;
  std::optional<CArray<T>> w, b, rm, rv;
  std::vector<py::ssize_t> shape;

  ForwardArgs(const char* op, const py::handle& x_in, const py::object& weight, const py::object& bias,
              const py::object& running_mean, const py::object& running_var, bool training, double momentum,
              double eps)
      : x(input_x<T>(x_in, op, "x")), geo(x), shape(x.shape(), x.shape() + x.ndim()) {
    w = optional_channels<T>(weight, op, "weight", geo.C);
    b = optional_channels<T>(bias, op, "bias", geo.C);
    check_finite(momentum, op, "momentum");
    if (momentum < 0 || momentum > 1) value_error(op, "momentum must be in [0, 1], got " + std::to_string(momentum));
    check_eps(eps, op);
    if (running_mean.is_none() != running_var.is_none())
      value_error(op, "running_mean and running_var must both be arrays or both be None");
    if (!running_mean.is_none()) {
      rm = inout<T>(running_mean, op, "running_mean");
      rv = inout<T>(running_var, op, "running_var");
      check_shape(*rm, op, "running_mean", {geo.C});
      check_shape(*rv, op, "running_var", {geo.C});
      if (overlaps(*rm, *rv)) value_error(op, "running_mean and running_var must not share memory");
      const std::initializer_list<const py::array*> inputs = {&x, w ? &*w : nullptr, b ? &*b : nullptr};
      for (const py::array* a : inputs) {
        if (a && (overlaps(*rm, *a) || overlaps(*rv, *a)))
          value_error(op, "running_mean and running_var are updated in place and must not share memory with an input");
      }
    }
    if (training && geo.N * geo.S <= 1)
      value_error(op, "Expected more than 1 value per channel when training, got input of shape " + shape_str(x));
    if (!training && !rm) value_error(op, "training=False needs running_mean and running_var, got None");
  }
  T* running_mean() { return rm ? rm->mutable_data() : nullptr; }
  T* running_var() { return rv ? rv->mutable_data() : nullptr; }
};

// The checked arguments of a backward and its outputs dx, dgamma, dbeta (allocated).
template <class T>
struct BackwardArgs {
  CArray<T> x;
  Geometry geo;
  std::vector<py::ssize_t> shape;
  CArray<T> g, mean, invstd;
  std::optional<CArray<T>> w;
  CArray<T> dx, dgamma, dbeta;

  BackwardArgs(const char* op, const py::handle& grad_out, const py::handle& x_in, const py::object& weight,
               const py::handle& save_mean, const py::handle& save_invstd)
      : x(input_x<T>(x_in, op, "x")), geo(x), shape(x.shape(), x.shape() + x.ndim()), g(in<T>(grad_out, op, "grad_out")) {
    check_shape(g, op, "grad_out", shape);
    w = optional_channels<T>(weight, op, "weight", geo.C);
    mean = channels<T>(save_mean, op, "save_mean", geo.C);
    invstd = channels<T>(save_invstd, op, "save_invstd", geo.C);
    dx = new_array<T>(shape);
    dgamma = new_array<T>(std::vector<py::ssize_t>{geo.C});
    dbeta = new_array<T>(std::vector<py::ssize_t>{geo.C});
  }
  py::tuple result() { return py::make_tuple(std::move(dx), std::move(dgamma), std::move(dbeta)); }
};

template <class T>
py::tuple batchnorm_forward_impl(const py::handle& x_in, const py::object& weight, const py::object& bias,
                                 const py::object& running_mean, const py::object& running_var, bool training,
                                 double momentum, double eps) {
  ForwardArgs<T> args("batch_norm_forward", x_in, weight, bias, running_mean, running_var, training, momentum, eps);
  const Geometry& geo = args.geo;
  CArray<T> y = new_array<T>(args.shape), save_mean = new_array<T>(std::vector<py::ssize_t>{geo.C}), save_invstd = new_array<T>(std::vector<py::ssize_t>{geo.C});
  const T *xp = args.x.data(), *wp = ptr(args.w), *bp = ptr(args.b);
  T *yp = y.mutable_data(), *mp = save_mean.mutable_data(), *ip = save_invstd.mutable_data();
  T *rmp = args.running_mean(), *rvp = args.running_var();
  if (training) {
    py::gil_scoped_release nogil;
    batch_norm_forward_train(xp, geo.N, geo.C, geo.S, wp, bp, T(eps), yp, mp, ip, T(momentum), rmp, rvp);
  } else {
    std::vector<T> scale(geo.C), shift(geo.C);
    py::gil_scoped_release nogil;
    batch_norm_forward_eval(xp, geo.N, geo.C, geo.S, wp, bp, rmp, rvp, T(eps), yp, scale.data(), shift.data());
    std::copy(rmp, rmp + geo.C, mp);
    batch_norm_invstd(rvp, geo.C, T(eps), ip);
  }
  return py::make_tuple(std::move(y), std::move(save_mean), std::move(save_invstd));
}

// Batch norm + ReLU + dropout (p, seed, step; training only): returns (y, save_mean, save_invstd, mask).
template <class T>
py::tuple relu_forward_impl(const py::handle& x_in, const py::object& weight, const py::object& bias,
                            const py::object& running_mean, const py::object& running_var, bool training,
                            double momentum, double eps, const py::handle& p_in, const py::handle& seed_in,
                            const py::handle& step_in) {
  const char* op = "batch_norm_relu_forward";
  ForwardArgs<T> args(op, x_in, weight, bias, running_mean, running_var, training, momentum, eps);
  const double p = p_arg(p_in, op);
  const std::uint64_t seed = u64_arg(seed_in, op, "seed"), step = u64_arg(step_in, op, "step");
  const Geometry& geo = args.geo;
  CArray<T> y = new_array<T>(args.shape), save_mean = new_array<T>(std::vector<py::ssize_t>{geo.C}), save_invstd = new_array<T>(std::vector<py::ssize_t>{geo.C});
  py::array_t<std::uint8_t, py::array::c_style> mask(args.shape);
  const T *xp = args.x.data(), *wp = ptr(args.w), *bp = ptr(args.b);
  T *yp = y.mutable_data(), *mp = save_mean.mutable_data(), *ip = save_invstd.mutable_data();
  T *rmp = args.running_mean(), *rvp = args.running_var();
  std::uint8_t* kp = mask.mutable_data();
  if (training) {
    py::gil_scoped_release nogil;
    batch_norm_relu_forward_train(xp, geo.N, geo.C, geo.S, wp, bp, T(eps), yp, kp, mp, ip, T(momentum), rmp, rvp, p,
                                  seed, step);
  } else {
    std::vector<T> scale(geo.C), shift(geo.C);
    py::gil_scoped_release nogil;
    batch_norm_relu_forward_eval(xp, geo.N, geo.C, geo.S, wp, bp, rmp, rvp, T(eps), yp, kp, scale.data(),
                                 shift.data());
    std::copy(rmp, rmp + geo.C, mp);
    batch_norm_invstd(rvp, geo.C, T(eps), ip);
  }
  return py::make_tuple(std::move(y), std::move(save_mean), std::move(save_invstd), std::move(mask));
}

// Training batch norm + ReLU + MaxPool2d(2) on (N, C, H, W), W even: returns
// (y (N, C, H/2, W/2), indices (int64, max_pool2d_forward's), save_mean, save_invstd).
template <class T>
py::tuple relu_max_pool_forward_impl(const py::handle& x_in, const py::object& weight, const py::object& bias,
                                     const py::object& running_mean, const py::object& running_var, double momentum,
                                     double eps) {
  const char* op = "batch_norm_relu_max_pool2d_forward";
  ForwardArgs<T> args(op, x_in, weight, bias, running_mean, running_var, true, momentum, eps);
  if (args.x.ndim() != 4) value_error(op, "x must be (N, C, H, W), got " + shape_str(args.x));
  const index_t N = args.x.shape(0), C = args.x.shape(1), H = args.x.shape(2), W = args.x.shape(3);
  if (H < 2 || W % 2 || W > 1024)
    value_error(op, "needs H >= 2 and an even W <= 1024 (2x2 windows tiling the rows), got x " + shape_str(args.x));
  const ConvGeometry pool = pool_geometry(N, C, H, W, 2, 2, 2, 2, 0, 0, 1, 1, false, op);
  const std::vector<py::ssize_t> out{N, C, pool.p, pool.q};
  CArray<T> y = new_array<T>(out), save_mean = new_array<T>(std::vector<py::ssize_t>{C}),
            save_invstd = new_array<T>(std::vector<py::ssize_t>{C});
  py::array_t<std::int64_t, py::array::c_style> indices(out);
  const T *xp = args.x.data(), *wp = ptr(args.w), *bp = ptr(args.b);
  T *yp = y.mutable_data(), *mp = save_mean.mutable_data(), *ip = save_invstd.mutable_data();
  T *rmp = args.running_mean(), *rvp = args.running_var();
  std::int64_t* kp = indices.mutable_data();
  {
    py::gil_scoped_release nogil;
    batch_norm_relu_max_pool2d_forward_train(xp, pool, wp, bp, T(eps), yp, kp, mp, ip, T(momentum), rmp, rvp);
  }
  return py::make_tuple(std::move(y), std::move(indices), std::move(save_mean), std::move(save_invstd));
}

template <class T>
py::tuple batchnorm_backward_impl(const py::handle& grad_out, const py::handle& x_in, const py::object& weight,
                                  const py::handle& save_mean, const py::handle& save_invstd, bool training) {
  BackwardArgs<T> a("batch_norm_backward", grad_out, x_in, weight, save_mean, save_invstd);
  {
    py::gil_scoped_release nogil;
    batch_norm_backward(a.g.data(), a.x.data(), a.geo.N, a.geo.C, a.geo.S, ptr(a.w), a.mean.data(), a.invstd.data(),
                        training, a.dx.mutable_data(), a.dgamma.mutable_data(), a.dbeta.mutable_data());
  }
  return a.result();
}

template <class T>
py::tuple relu_backward_impl(const py::handle& grad_out, const py::handle& x_in, const py::object& weight,
                             const py::handle& save_mean, const py::handle& save_invstd, const py::handle& mask_in,
                             bool training, const py::handle& p_in) {
  const char* op = "batch_norm_relu_backward";
  BackwardArgs<T> a(op, grad_out, x_in, weight, save_mean, save_invstd);
  py::array m = as_ndarray(mask_in, op, "mask");
  if (!m.dtype().equal(py::dtype::of<std::uint8_t>())) type_error(op, "mask must be uint8, got " + dtype_str(m));
  check_shape(m, op, "mask", a.shape);
  auto mask = c_array<std::uint8_t>(m, op, "mask");
  const double p = p_arg(p_in, op);
  {
    py::gil_scoped_release nogil;
    // Eval mode has no dropout: its p is ignored.
    batch_norm_relu_backward(a.g.data(), mask.data(), a.x.data(), a.geo.N, a.geo.C, a.geo.S, ptr(a.w), a.mean.data(),
                             a.invstd.data(), training, training ? p : 0.0, a.dx.mutable_data(),
                             a.dgamma.mutable_data(), a.dbeta.mutable_data());
  }
  return a.result();
}

template <class T>
py::tuple fold_impl(const py::object& weight, const py::object& bias, const py::handle& running_mean,
                    const py::handle& running_var, double eps) {
  const char* op = "batch_norm_fold";
  CArray<T> rm = in<T>(running_mean, op, "running_mean");
  check_ndim(rm, op, "running_mean", {1}, "(C,)");
  const index_t C = rm.shape(0);
  CArray<T> rv = channels<T>(running_var, op, "running_var", C);
  const auto w = optional_channels<T>(weight, op, "weight", C);
  const auto b = optional_channels<T>(bias, op, "bias", C);
  check_eps(eps, op);
  CArray<T> scale = new_array<T>(std::vector<py::ssize_t>{C}), shift = new_array<T>(std::vector<py::ssize_t>{C});
  batch_norm_fold(ptr(w), ptr(b), rm.data(), rv.data(), C, T(eps), scale.mutable_data(), shift.mutable_data());
  return py::make_tuple(std::move(scale), std::move(shift));
}

template <class T>
py::array affine_impl(const py::handle& x_in, const py::handle& scale_in, const py::handle& shift_in) {
  const char* op = "batch_norm_affine";
  CArray<T> x = input_x<T>(x_in, op, "x");
  const Geometry geo(x);
  CArray<T> scale = channels<T>(scale_in, op, "scale", geo.C);
  CArray<T> shift = channels<T>(shift_in, op, "shift", geo.C);
  CArray<T> y = new_array<T>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const T *xp = x.data(), *sp = scale.data(), *hp = shift.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    batch_norm_affine(xp, geo.N, geo.C, geo.S, sp, hp, yp);
  }
  return std::move(y);
}

}  // namespace

void bind_batchnorm(py::module_& m) {
  m.def(
      "batch_norm_forward",
      [](const py::handle& x, const py::object& weight, const py::object& bias, const py::object& running_mean,
         const py::object& running_var, bool training, double momentum, double eps) -> py::tuple {
        return dispatch_float(x, "batch_norm_forward", "x", [&](auto tag) {
          return batchnorm_forward_impl<decltype(tag)>(x, weight, bias, running_mean, running_var, training, momentum,
                                                       eps);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("training"), py::arg("momentum") = 0.1, py::arg("eps") = 1e-5);
  m.def(
      "batch_norm_backward",
      [](const py::handle& grad_out, const py::handle& x, const py::object& weight, const py::handle& save_mean,
         const py::handle& save_invstd, bool training) -> py::tuple {
        return dispatch_float(x, "batch_norm_backward", "x", [&](auto tag) {
          return batchnorm_backward_impl<decltype(tag)>(grad_out, x, weight, save_mean, save_invstd, training);
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("save_mean"), py::arg("save_invstd"),
      py::arg("training") = true);
  m.def(
      "batch_norm_fold",
      [](const py::object& weight, const py::object& bias, const py::handle& running_mean,
         const py::handle& running_var, double eps) -> py::tuple {
        return dispatch_float(running_mean, "batch_norm_fold", "running_mean", [&](auto tag) {
          return fold_impl<decltype(tag)>(weight, bias, running_mean, running_var, eps);
        });
      },
      py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("eps") = 1e-5);
  m.def(
      "batch_norm_affine",
      [](const py::handle& x, const py::handle& scale, const py::handle& shift) -> py::array {
        return dispatch_float(x, "batch_norm_affine", "x",
                              [&](auto tag) { return affine_impl<decltype(tag)>(x, scale, shift); });
      },
      py::arg("x"), py::arg("scale"), py::arg("shift"));
  m.def(
      "batch_norm_relu_forward",
      [](const py::handle& x, const py::object& weight, const py::object& bias, const py::object& running_mean,
         const py::object& running_var, bool training, double momentum, double eps, const py::handle& p,
         const py::handle& seed, const py::handle& step) -> py::tuple {
        return dispatch_float(x, "batch_norm_relu_forward", "x", [&](auto tag) {
          return relu_forward_impl<decltype(tag)>(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                                  p, seed, step);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("training"), py::arg("momentum") = 0.1, py::arg("eps") = 1e-5, py::arg("p") = 0.0, py::arg("seed") = 0,
      py::arg("step") = 0);
  m.def(
      "batch_norm_relu_max_pool2d_forward",
      [](const py::handle& x, const py::object& weight, const py::object& bias, const py::object& running_mean,
         const py::object& running_var, double momentum, double eps) -> py::tuple {
        return dispatch_float(x, "batch_norm_relu_max_pool2d_forward", "x", [&](auto tag) {
          return relu_max_pool_forward_impl<decltype(tag)>(x, weight, bias, running_mean, running_var, momentum, eps);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("momentum") = 0.1, py::arg("eps") = 1e-5);
  m.def(
      "batch_norm_relu_backward",
      [](const py::handle& grad_out, const py::handle& x, const py::object& weight, const py::handle& save_mean,
         const py::handle& save_invstd, const py::handle& mask, bool training, const py::handle& p) -> py::tuple {
        return dispatch_float(x, "batch_norm_relu_backward", "x", [&](auto tag) {
          return relu_backward_impl<decltype(tag)>(grad_out, x, weight, save_mean, save_invstd, mask, training, p);
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("save_mean"), py::arg("save_invstd"),
      py::arg("mask"), py::arg("training") = true, py::arg("p") = 0.0);
}

}  // namespace fastnn::bind
