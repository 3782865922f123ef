// The C++ training loop as Python functions: train_epoch, train_step, evaluate, predict.
// Python (fastnn.train) validates the data and owns callbacks, schedules and history.
#include <cstring>
#include <limits>
#include <memory>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/augment_args.h"
#include "bindings/layer_binding.h"
#include "bindings/model_lock.h"
#include "bindings/segments_arg.h"
#include "bindings/stepper.h"
#include "bindings/train_args.h"
#include "fastnn/kernels/finite.h"
#include "fastnn/net/train.h"

namespace fastnn::bind {
namespace {

// The loss's vector options must fit the model's output (known only here, per batch, otherwise).
void check_objective(const Objective& o, index_t width) {
  if (!o.class_weight.empty() && static_cast<index_t>(o.class_weight.size()) != width)
    value_error("train", "the loss's weight has " + std::to_string(o.class_weight.size()) +
                             " entries, but the model has " + std::to_string(width) + " outputs (classes)");
  if (!o.pos_weight.empty() && static_cast<index_t>(o.pos_weight.size()) != width)
    value_error("train", "the loss's pos_weight has " + std::to_string(o.pos_weight.size()) +
                             " entries, but the model has " + std::to_string(width) + " outputs per sample");
}

// Per-sample weights: None or a finite, non-negative float64 (N,) array.
const double* sample_weight_arg(const py::handle& w, index_t n, const char* op, std::vector<py::object>& keep) {
  if (w.is_none()) return nullptr;
  auto a = c_array<double, py::array::c_style | py::array::forcecast>(w, op, "sample_weight");
  if (a.ndim() != 1 || a.shape(0) != n)
    value_error(op, "sample_weight must have shape (" + std::to_string(n) + ",), got " + shape_str(a));
  for (index_t i = 0; i < n; ++i)
    if (!(a.data()[i] >= 0) || !std::isfinite(a.data()[i]))
      value_error(op, "sample_weight[" + std::to_string(i) + "] = " + std::to_string(a.data()[i]) +
                          " must be finite and >= 0");
  keep.push_back(a);
  return a.data();
}

std::vector<StepFn> steps_arg(const std::vector<std::shared_ptr<Stepper>>& steppers) {
  std::vector<StepFn> out;
  for (const auto& s : steppers) out.push_back([s](index_t k) { s->fn(k); });
  return out;
}

template <class T>
T* grads_arg(const py::handle& grads, const char* op, index_t* n, std::vector<py::object>& keep) {
  if (grads.is_none()) return *n = 0, nullptr;
  CArray<T> g = inout<T>(grads, op, "grads");
  keep.push_back(g);
  *n = g.size();
  return g.mutable_data();
}

// The clip segments of a flat gradient of n elements, validated as the optimizers' are (the
// clipping indexes the gradient with them).
SegmentTable clip_segments_arg(const py::handle& segs, index_t n, std::vector<py::object>& keep) {
  if (segs.is_none()) return SegmentTable{};
  SegmentArg s = segments_arg(segs, "train_epoch", n);
  keep.push_back(s.keep);
  return s.table;
}

py::dict stats_dict(const EpochStats& s) {
  py::dict d;
  d["top_k_correct"] = s.metrics.top_k_correct;
  d["abs_error"] = s.metrics.abs_error;
  d["sq_error"] = s.metrics.sq_error;
  d["loss_sum"] = s.loss_sum;
  d["correct"] = s.correct;
  d["samples"] = s.samples;
  d["batches"] = s.batches;
  d["nonfinite_batch"] = s.nonfinite_batch;
  return d;
}

// Where the epoch loop counts the batches whose optimizer steps it applied, so that Python can
// advance the optimizer's step counters by exactly that even when the epoch raises.
index_t* applied_arg(const py::handle& applied, std::vector<py::object>& keep) {
  if (applied.is_none()) return nullptr;
  auto a = py::array_t<std::int64_t, py::array::c_style>::ensure(applied);
  if (!a || a.ptr() != applied.ptr() || a.size() != 1 || !a.writeable())  // not a converted copy
    throw py::value_error("[train_epoch] applied must be a writeable int64 array of 1 element");
  keep.push_back(a);
  return a.mutable_data();
}

// fit's augment=: the pipeline on samples of image shape augment_shape, which must hold exactly
// one sample and give one of the same size (the model sees the augmented batch in X's layout).
template <class T>
std::unique_ptr<Augmenter<T>> augmenter_arg(const py::handle& ops, const py::handle& shape, const Dataset<T>& d,
                                            const char* op) {
  if (ops.is_none()) return nullptr;
  auto aug = std::make_unique<Augmenter<T>>(augment_ops_arg(ops, op), image_shape_arg(shape, op), op);
  if (aug->input_shape().size() != d.sample_size() || aug->output_shape().size() != d.sample_size())
    value_error(op, "augment must take and give samples of X's size (" + std::to_string(d.sample_size()) + " values)");
  return aug;
}

// fit's data-parallel hook (fastnn.distributed): called with the GIL taken as
// hook(batch, count, loss, correct, top_k_correct, abs_error, sq_error) -> the global batch loss.
GradHook grad_hook_arg(const py::object& hook) {
  if (hook.is_none()) return {};
  return [&hook](const ShardReport& r) {
    py::gil_scoped_acquire gil;
    return hook(r.batch, r.count, r.loss, r.correct, r.metrics.top_k_correct, r.metrics.abs_error, r.metrics.sq_error)
        .cast<double>();
  };
}

template <class T>
py::dict train_epoch_impl(const py::handle& model, const py::handle& X, const py::handle& y, const Objective& obj,
                          const py::handle& grads, const std::vector<std::shared_ptr<Stepper>>& steppers,
                          const EpochOptions& o, const py::handle& clip_segments, const py::object& progress,
                          const py::handle& applied_out, const py::handle& sample_weight, const py::handle& augment,
                          const py::handle& augment_shape, const py::object& grad_hook) {
  const char* op = "train_epoch";
  std::vector<py::object> keep;
  Dataset<T> d = dataset_arg<T>(X, y, op, keep);
  d.y.sample_weight = sample_weight_arg(sample_weight, d.n, op, keep);
  index_t n_params;
  T* g = grads_arg<T>(grads, op, &n_params, keep);
  Layer<T>& layer = layer_arg<T>(model, op);
  Trainer<T> trainer(layer, g, n_params, clip_segments_arg(clip_segments, n_params, keep));
  std::unique_ptr<Augmenter<T>> aug = augmenter_arg<T>(augment, augment_shape, d, op);
  trainer.set_augment(aug.get());
  trainer.set_grad_hook(grad_hook_arg(grad_hook));
  // Called between batches at most ~10 times a second: Ctrl-C (seen by Python only when it runs)
  // stops the epoch there, with every step before it applied and counted.
  const ProgressFn report = [&progress](index_t done, index_t total, const EpochStats& running) {
    if (done == total && progress.is_none()) return;  // Python runs next anyway
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!progress.is_none()) progress(done, total, stats_dict(running));
  };
  std::vector<StepFn> steps = steps_arg(steppers);
  if (index_t* applied = applied_arg(applied_out, keep)) {
    *applied = 0;
    steps.push_back([applied](index_t k) { *applied = k + 1; });  // runs after the batch's optimizer steps
  }
  ModelLock<T> lock(layer, op, true);
  EpochStats st;
  {
    py::gil_scoped_release nogil;
    st = trainer.train_epoch(d, obj, steps, o, report);
  }
  return stats_dict(st);
}

template <class T>
py::array predict_impl(const py::handle& model, const py::handle& X, index_t batch_size) {
  const char* op = "predict";
  std::vector<py::object> keep;
  Dataset<T> d = dataset_arg<T>(X, py::none(), op, keep);
  Layer<T>& layer = layer_arg<T>(model, op);
  ModelLock<T> lock(layer, op, true);
  const index_t s = d.sample_size();
  py::array_t<T> out;
  T* dst = nullptr;
  index_t out_row = 0;
  OutputCheck check_output(op);  // so that each batch's output fills exactly its rows of `out`
  for (index_t start = 0; start < d.n; start += batch_size) {
    const index_t count = std::min(batch_size, d.n - start);
    View<T> xv{const_cast<T*>(d.x + start * s), Shape{count}};
    xv.shape.insert(xv.shape.end(), d.sample_shape.begin(), d.sample_shape.end());
    View<T> y;
    {
      py::gil_scoped_release nogil;
      y = layer.forward(xv, Context{false, 0, 0, true});
    }
    check_output(y.shape, count);
    if (dst == nullptr) {  // the output shape is known after the first batch
      std::vector<py::ssize_t> shape(y.shape.begin(), y.shape.end());
      shape[0] = d.n;
      out = new_array<T>(shape);
      dst = out.mutable_data();
      out_row = y.features();
    }
    std::memcpy(dst + start * out_row, y.data, sizeof(T) * y.size());
  }
  return std::move(out);
}

}  // namespace

void bind_train(py::module_& m) {
  m.def(
      "first_nonfinite",
      [](const py::handle& x) {
        return dispatch_float(x, "first_nonfinite", "x", [&](auto tag) {
          using T = decltype(tag);
          CArray<T> a = in<T>(x, "first_nonfinite", "x", true);
          py::gil_scoped_release nogil;
          return first_nonfinite(a.data(), static_cast<index_t>(a.size()));
        });
      },
      py::arg("x"));
  m.def(
      "train_epoch",
      [](const py::handle& model, const py::handle& X, const py::handle& y, const std::string& loss,
         const std::string& reduction, const py::handle& grads, const std::vector<std::shared_ptr<Stepper>>& steppers,
         index_t batch_size, bool shuffle, std::uint64_t seed, std::uint64_t epoch, std::uint64_t first_step,
         double clip_norm, double clip_value, const py::handle& clip_segments, const py::object& progress,
         const py::handle& applied, const py::object& loss_options, const py::handle& sample_weight, index_t width,
         const py::handle& augment, const py::handle& augment_shape, index_t shard, index_t shards,
         const py::object& grad_hook, bool drop_last) {
        if (batch_size < 1) value_error("train_epoch", "batch_size must be >= 1, got " + std::to_string(batch_size));
        if (shards < 1 || shard < 0 || shard >= shards || batch_size > std::numeric_limits<index_t>::max() / shards)
          value_error("train_epoch", "shard must be in [0, shards) and batch_size * shards must fit, got shard " +
                                         std::to_string(shard) + " of " + std::to_string(shards));
        if (shards > 1 && grad_hook.is_none())
          value_error("train_epoch", "training on a shard needs the grad_hook that averages the ranks' gradients");
        EpochOptions o{batch_size, shuffle, seed, epoch, first_step, clip_norm, clip_value, shard, shards, drop_last};
        const Objective obj = objective_arg(loss, reduction, loss_options);
        if (width > 0) check_objective(obj, width);
        return dispatch_float(X, "train_epoch", "X", [&](auto tag) {
          return train_epoch_impl<decltype(tag)>(model, X, y, obj, grads, steppers, o, clip_segments, progress,
                                                  applied, sample_weight, augment, augment_shape, grad_hook);
        });
      },
      py::arg("model"), py::arg("X"), py::arg("y"), py::arg("loss"), py::arg("reduction"), py::arg("grads"),
      py::arg("steppers"), py::arg("batch_size"), py::arg("shuffle"), py::arg("seed"), py::arg("epoch"),
      py::arg("first_step"), py::arg("clip_norm") = 0.0, py::arg("clip_value") = 0.0,
      py::arg("clip_segments") = py::none(), py::arg("progress") = py::none(), py::arg("applied") = py::none(),
      py::arg("loss_options") = py::none(), py::arg("sample_weight") = py::none(), py::arg("width") = 0,
      py::arg("augment") = py::none(), py::arg("augment_shape") = py::none(), py::arg("shard") = 0,
      py::arg("shards") = 1, py::arg("grad_hook") = py::none(), py::arg("drop_last") = false);
  m.def(
      "evaluate",
      [](const py::handle& model, const py::handle& X, const py::handle& y, const std::string& loss,
         const std::string& reduction, index_t batch_size, const py::object& loss_options,
         const py::handle& sample_weight, index_t width) {
        if (batch_size < 1) value_error("evaluate", "batch_size must be >= 1, got " + std::to_string(batch_size));
        const Objective obj = objective_arg(loss, reduction, loss_options);
        if (width > 0) check_objective(obj, width);
        return dispatch_float(X, "evaluate", "X", [&](auto tag) {
          using T = decltype(tag);
          std::vector<py::object> keep;
          Dataset<T> d = dataset_arg<T>(X, y, "evaluate", keep);
          d.y.sample_weight = sample_weight_arg(sample_weight, d.n, "evaluate", keep);
          Layer<T>& layer = layer_arg<T>(model, "evaluate");
          ModelLock<T> lock(layer, "evaluate", true);
          EpochStats st;
          {
            py::gil_scoped_release nogil;
            st = evaluate(layer, d, obj, batch_size);
          }
          return stats_dict(st);
        });
      },
      py::arg("model"), py::arg("X"), py::arg("y"), py::arg("loss"), py::arg("reduction"), py::arg("batch_size"),
      py::arg("loss_options") = py::none(), py::arg("sample_weight") = py::none(), py::arg("width") = 0);
  m.def(
      "predict",
      [](const py::handle& model, const py::handle& X, index_t batch_size) {
        if (batch_size < 1) value_error("predict", "batch_size must be >= 1, got " + std::to_string(batch_size));
        return dispatch_float(X, "predict", "X",
                              [&](auto tag) { return predict_impl<decltype(tag)>(model, X, batch_size); });
      },
      py::arg("model"), py::arg("X"), py::arg("batch_size"));
}

}  // namespace fastnn::bind
