// Fused first-order optimizer steps, gradient clipping and max-norm over flat buffers:
// sgd_step, adagrad_step, rmsprop_step, adam_step, clip_grad_norm_, clip_grad_value_, max_norm_.
// All update their arrays in place. python/fastnn/optim/ owns the state and calls these.
#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/segments_arg.h"
#include "bindings/stepper.h"
#include "fastnn/optim/adagrad.h"
#include "fastnn/optim/adam.h"
#include "fastnn/optim/clip.h"
#include "fastnn/optim/rmsprop.h"
#include "fastnn/optim/sgd.h"

namespace fastnn::bind {
namespace {

// The flat arrays of one call: all 1-D, C-contiguous, of dtype T and one length; the ones
// updated in place writeable and sharing no memory with any other.
template <class T>
class FlatArgs {
 public:
  explicit FlatArgs(const char* op) : op_(op) {}

  T* add(const py::handle& h, const char* name, bool writeable) {
    py::array a = as_ndarray(h, op_, name);
    if (!a.dtype().equal(py::dtype::of<T>()))
      type_error(op_, std::string(name) + " must be " + dtype_name<T>() + " like params, got " + dtype_str(a));
    if (a.ndim() != 1) value_error(op_, std::string(name) + " must be 1-D (a flat buffer), got shape " + shape_str(a));
    if (n_ < 0) {
      check_nonempty(a, op_, name);
      n_ = a.shape(0);
    } else if (a.shape(0) != n_) {
      value_error(op_, std::string(name) + " must have " + std::to_string(n_) + " elements like " + first_ +
                           ", got " + std::to_string(a.shape(0)));
    }
    if (!(a.flags() & py::array::c_style))  // NumPy's flag, read directly: this runs at every step
      value_error(op_, std::string(name) + " must be C-contiguous (a flat buffer, not a strided view)");
    if (writeable && !a.writeable()) value_error(op_, std::string(name) + " is updated in place and must be writeable");
    for (const auto& [other, other_name, other_writeable] : seen_)
      if ((writeable || other_writeable) && overlaps(a, other))
        value_error(op_, std::string(name) + " shares memory with " + other_name);
    if (first_.empty()) first_ = name;
    seen_.emplace_back(a, name, writeable);
    // Read-only arrays are accepted for what is only read (grads): the kernels take them as const T*.
    return writeable ? static_cast<T*>(a.mutable_data()) : const_cast<T*>(static_cast<const T*>(a.data()));
  }

  // A state array that is only needed when `needed`; None is allowed otherwise (-> nullptr).
  T* add_optional(const py::handle& h, const char* name, bool needed, const char* when) {
    if (h.is_none()) {
      if (needed) value_error(op_, std::string(name) + " is required when " + when);
      return nullptr;
    }
    return add(h, name, true);
  }

  index_t size() const { return n_; }

  // The arrays, to keep alive while a deferred step (Stepper) holds their pointers.
  std::vector<py::object> arrays() const {
    std::vector<py::object> out;
    for (const auto& entry : seen_) out.push_back(std::get<0>(entry));
    return out;
  }

 private:
  const char* op_;
  index_t n_ = -1;
  std::string first_;
  std::vector<std::tuple<py::array, std::string, bool>> seen_;
};

void check_min(double v, const char* op, const char* name, double lo) {
  check_finite(v, op, name);
  if (v < lo) value_error(op, std::string(name) + " must be >= " + std::to_string(lo) + ", got " + std::to_string(v));
}

void check_beta(double v, const char* op, const char* name) {
  check_finite(v, op, name);
  if (v < 0.0 || v >= 1.0) value_error(op, std::string(name) + " must be in [0, 1), got " + std::to_string(v));
}

void check_step(index_t step, const char* op) {
  if (step < 1) value_error(op, "step must be >= 1 (the number of this step), got " + std::to_string(step));
}

// lr, weight_decay, l1 (>= 0) and max_norm (None or > 0), shared by every optimizer.
Penalties penalties_arg(const char* op, double lr, double weight_decay, double l1, std::optional<double> max_norm,
                        bool decoupled = false) {
  check_min(lr, op, "lr", 0.0);
  check_min(weight_decay, op, "weight_decay", 0.0);
  check_min(l1, op, "l1", 0.0);
  if (max_norm) {
    check_finite(*max_norm, op, "max_norm");
    if (*max_norm <= 0) value_error(op, "max_norm must be None or > 0, got " + std::to_string(*max_norm));
  }
  return Penalties{weight_decay, decoupled, l1, max_norm.value_or(0.0)};
}

template <class F>
void run_nogil(F&& f) {
  py::gil_scoped_release nogil;
  f();
}

// Runs the step now (without the GIL; returns None) or, with defer=True, returns it as a Stepper
// that the C++ training loop calls once per batch: fn(k) takes the k-th step from here on.
template <class T, class F>
py::object finish(bool defer, const FlatArgs<T>& a, const SegmentArg& s, F&& fn) {
  if (!defer) {
    py::gil_scoped_release nogil;
    fn(index_t(0));
    return py::none();
  }
  auto st = std::make_shared<Stepper>();
  st->keep = a.arrays();
  st->keep.push_back(s.keep);
  st->fn = std::forward<F>(fn);
  return py::cast(st);
}

}  // namespace

// The *_step functions take their hyperparameters positionally too (no py::kw_only): the Python
// optimizers pass them so at every step, as matching keyword arguments costs ~1.3 us per call.
void bind_optim(py::module_& m) {
  py::class_<Stepper, std::shared_ptr<Stepper>>(m, "Stepper",
                                                "An optimizer step prepared once (defer=True) for the C++ training loop.")
      .def(
          "__call__",
          [](Stepper& st, index_t k) {
            py::gil_scoped_release nogil;
            st.fn(k);
          },
          py::arg("k") = 0, "Takes the k-th step (0-based) counted from the step the Stepper was made for.");
  m.def(
      "sgd_step",
      [](const py::handle& params, const py::handle& grads, const py::handle& segments,
         const py::handle& momentum_buffer, bool first_step, double lr, double momentum, double dampening,
         bool nesterov, double weight_decay, bool maximize, double l1, std::optional<double> max_norm, bool defer) -> py::object {
        const char* op = "sgd_step";
        SGDOptions o;
        o.penalties = penalties_arg(op, lr, weight_decay, l1, max_norm);
        check_min(momentum, op, "momentum", 0.0);
        check_finite(dampening, op, "dampening");
        if (nesterov && (momentum <= 0 || dampening != 0))
          value_error(op, "Nesterov momentum requires a momentum and zero dampening");
        o.lr = lr, o.momentum = momentum, o.dampening = dampening, o.nesterov = nesterov, o.maximize = maximize;
        return dispatch_float(params, op, "params", [&](auto tag) -> py::object {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* p = a.add(params, "params", true);
          const T* g = a.add(grads, "grads", false);
          T* b = a.add_optional(momentum_buffer, "momentum_buffer", momentum != 0, "momentum != 0");
          const SegmentArg s = segments_arg(segments, op, a.size());
          return finish(defer, a, s, [=, tbl = s.table](index_t k) { sgd_step(tbl, p, g, b, first_step && k == 0, o); });
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("segments"), py::arg("momentum_buffer"),
      py::arg("first_step"), py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
      py::arg("nesterov") = false, py::arg("weight_decay") = 0.0, py::arg("maximize") = false, py::arg("l1") = 0.0,
      py::arg("max_norm") = py::none(), py::arg("defer") = false,
      "One fused SGD step (torch.optim.SGD rule) over the trainable segments; see fastnn.optim.SGD.");

  m.def(
      "adagrad_step",
      [](const py::handle& params, const py::handle& grads, const py::handle& segments, const py::handle& state_sum,
         index_t step, double lr, double lr_decay, double eps, double weight_decay, bool maximize, double l1,
         std::optional<double> max_norm, bool defer) -> py::object {
        const char* op = "adagrad_step";
        AdagradOptions o;
        o.penalties = penalties_arg(op, lr, weight_decay, l1, max_norm);
        check_min(lr_decay, op, "lr_decay", 0.0);
        check_min(eps, op, "eps", 0.0);
        check_step(step, op);
        o.lr = lr, o.lr_decay = lr_decay, o.eps = eps, o.maximize = maximize;
        return dispatch_float(params, op, "params", [&](auto tag) -> py::object {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* p = a.add(params, "params", true);
          const T* g = a.add(grads, "grads", false);
          T* sum = a.add(state_sum, "state_sum", true);
          const SegmentArg s = segments_arg(segments, op, a.size());
          return finish(defer, a, s, [=, tbl = s.table](index_t k) { adagrad_step(tbl, p, g, sum, step + k, o); });
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("segments"), py::arg("state_sum"), py::arg("step"),
      py::arg("lr"), py::arg("lr_decay") = 0.0, py::arg("eps") = 1e-10, py::arg("weight_decay") = 0.0,
      py::arg("maximize") = false, py::arg("l1") = 0.0, py::arg("max_norm") = py::none(), py::arg("defer") = false,
      "One fused Adagrad step (torch.optim.Adagrad rule); step is the 1-based number of this step.");

  m.def(
      "rmsprop_step",
      [](const py::handle& params, const py::handle& grads, const py::handle& segments, const py::handle& square_avg,
         const py::handle& grad_avg, const py::handle& momentum_buffer, double lr, double alpha, double eps,
         double weight_decay, double momentum, bool centered, bool maximize, double l1,
         std::optional<double> max_norm, bool defer) -> py::object {
        const char* op = "rmsprop_step";
        RMSpropOptions o;
        o.penalties = penalties_arg(op, lr, weight_decay, l1, max_norm);
        check_min(alpha, op, "alpha", 0.0);
        check_min(eps, op, "eps", 0.0);
        check_min(momentum, op, "momentum", 0.0);
        o.lr = lr, o.alpha = alpha, o.eps = eps, o.momentum = momentum, o.centered = centered, o.maximize = maximize;
        return dispatch_float(params, op, "params", [&](auto tag) -> py::object {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* p = a.add(params, "params", true);
          const T* g = a.add(grads, "grads", false);
          T* v = a.add(square_avg, "square_avg", true);
          T* ga = a.add_optional(grad_avg, "grad_avg", centered, "centered");
          T* b = a.add_optional(momentum_buffer, "momentum_buffer", momentum > 0, "momentum > 0");
          const SegmentArg s = segments_arg(segments, op, a.size());
          return finish(defer, a, s, [=, tbl = s.table](index_t) { rmsprop_step(tbl, p, g, v, ga, b, o); });
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("segments"), py::arg("square_avg"), py::arg("grad_avg"),
      py::arg("momentum_buffer"), py::arg("lr"), py::arg("alpha") = 0.99, py::arg("eps") = 1e-8,
      py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("centered") = false,
      py::arg("maximize") = false, py::arg("l1") = 0.0, py::arg("max_norm") = py::none(), py::arg("defer") = false,
      "One fused RMSprop step (torch.optim.RMSprop rule).");

  m.def(
      "adam_step",
      [](const py::handle& params, const py::handle& grads, const py::handle& segments, const py::handle& exp_avg,
         const py::handle& exp_avg_sq, const py::handle& max_exp_avg_sq, index_t step, double lr, double beta1,
         double beta2, double eps, double weight_decay, bool amsgrad, bool decoupled_weight_decay, bool maximize,
         double l1, std::optional<double> max_norm, bool defer) -> py::object {
        const char* op = "adam_step";
        AdamOptions o;
        o.penalties = penalties_arg(op, lr, weight_decay, l1, max_norm, decoupled_weight_decay);
        check_beta(beta1, op, "beta1");
        check_beta(beta2, op, "beta2");
        check_min(eps, op, "eps", 0.0);
        check_step(step, op);
        o.lr = lr, o.beta1 = beta1, o.beta2 = beta2, o.eps = eps, o.amsgrad = amsgrad, o.maximize = maximize;
        return dispatch_float(params, op, "params", [&](auto tag) -> py::object {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* p = a.add(params, "params", true);
          const T* g = a.add(grads, "grads", false);
          T* m1 = a.add(exp_avg, "exp_avg", true);
          T* m2 = a.add(exp_avg_sq, "exp_avg_sq", true);
          T* vmax = a.add_optional(max_exp_avg_sq, "max_exp_avg_sq", amsgrad, "amsgrad");
          const SegmentArg s = segments_arg(segments, op, a.size());
          return finish(defer, a, s, [=, tbl = s.table](index_t k) { adam_step(tbl, p, g, m1, m2, vmax, step + k, o); });
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("segments"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
      py::arg("max_exp_avg_sq"), py::arg("step"), py::arg("lr"), py::arg("beta1") = 0.9,
      py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("amsgrad") = false,
      py::arg("decoupled_weight_decay") = false, py::arg("maximize") = false, py::arg("l1") = 0.0,
      py::arg("max_norm") = py::none(), py::arg("defer") = false,
      "One fused Adam / AdamW step (torch.optim.Adam rule); step is the 1-based number of this step.");

  m.def(
      "clip_grad_norm_",
      [](const py::handle& grads, const py::handle& segments, double max_norm, double norm_type,
         bool error_if_nonfinite) {
        const char* op = "clip_grad_norm_";
        if (std::isnan(max_norm) || max_norm < 0)
          value_error(op, "max_norm must be >= 0, got " + std::to_string(max_norm));
        if (std::isnan(norm_type) || norm_type <= 0 || (std::isinf(norm_type) && norm_type < 0))
          value_error(op, "norm_type must be > 0 or inf, got " + std::to_string(norm_type));
        return dispatch_float(grads, op, "grads", [&](auto tag) {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* g = a.add(grads, "grads", true);
          const SegmentArg s = segments_arg(segments, op, a.size());
          double total = 0;
          run_nogil([&] { total = clip_grad_norm_(s.table, g, max_norm, norm_type, !error_if_nonfinite); });
          if (error_if_nonfinite && !std::isfinite(total))
            throw std::runtime_error(std::string("[") + op + "] the total norm of order " + std::to_string(norm_type) +
                                     " of the gradients is non-finite, so it cannot be clipped; set "
                                     "error_if_nonfinite=False to scale the gradients anyway");
          return total;
        });
      },
      py::arg("grads"), py::arg("segments"), py::arg("max_norm"), py::arg("norm_type") = 2.0,
      py::arg("error_if_nonfinite") = false,
      "Scales the trainable gradients to a global norm <= max_norm; returns the norm before clipping.");

  m.def(
      "clip_grad_value_",
      [](const py::handle& grads, const py::handle& segments, double clip_value) {
        const char* op = "clip_grad_value_";
        if (std::isnan(clip_value) || clip_value < 0)
          value_error(op, "clip_value must be >= 0, got " + std::to_string(clip_value));
        dispatch_float(grads, op, "grads", [&](auto tag) {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* g = a.add(grads, "grads", true);
          const SegmentArg s = segments_arg(segments, op, a.size());
          run_nogil([&] { clip_grad_value_(s.table, g, static_cast<T>(clip_value)); });
        });
      },
      py::arg("grads"), py::arg("segments"), py::arg("clip_value"),
      "Clamps the trainable gradients to [-clip_value, clip_value] in place.");

  m.def(
      "max_norm_",
      [](const py::handle& params, const py::handle& segments, double max_norm) {
        const char* op = "max_norm_";
        check_finite(max_norm, op, "max_norm");
        if (max_norm <= 0) value_error(op, "max_norm must be > 0, got " + std::to_string(max_norm));
        dispatch_float(params, op, "params", [&](auto tag) {
          using T = decltype(tag);
          FlatArgs<T> a(op);
          T* p = a.add(params, "params", true);
          const SegmentArg s = segments_arg(segments, op, a.size());
          run_nogil([&] { max_norm_(s.table, p, static_cast<T>(max_norm)); });
        });
      },
      py::arg("params"), py::arg("segments"), py::arg("max_norm"),
      "Rescales each row of the TRAINABLE+DECAY segments with row_len > 0 to L2 norm <= max_norm.");
}

}  // namespace fastnn::bind
