// Model-level curvature products over a data set, with the R-operator pair of layers/layer.h:
//   H·v  (exact Hessian of the loss):  forward, rop_forward (R{out} = J v), dL/dout and
//        R{dL/dout} = H_loss R{out} (kernels/loss_hessian.h), rop_backward.
//   G·v  (Gauss-Newton, Jᵀ H_loss J v, PSD): forward, rop_forward, then a plain backward of
//        H_loss J v whose parameter gradients are written into hv (the parameters are bound with
//        hv as their gradient buffer for that pass): no second-order terms of the layers.
// The data runs in batches; each batch's loss is scaled as its share of the whole set's loss
// (the mean over all samples, or the sum), so the products are those of the whole set's loss.
// The caller zeroes hv and grads; H·v also accumulates the loss gradient into grads.
// Runs every layer in `training` mode (Context::force); the caller saves and restores the
// running statistics a training-mode BatchNorm updates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fastnn/kernels/loss.h"
#include "fastnn/kernels/loss_hessian.h"
#include "fastnn/layers/layer.h"
#include "fastnn/net/dataset.h"
#include "fastnn/net/objective.h"

namespace fastnn {

struct CurvatureOptions {
  index_t batch_size = 0;  // 0: all samples in one batch
  bool training = true;
  bool gauss_newton = false;
  bool gradient = true;  // H·v also accumulates the loss gradient into grads (false: layers may skip it)
  bool force = true;     // every layer in `training` mode (false: each layer in its own mode, Layer::mode)
  std::uint64_t seed = 0, step = 0;  // dropout/RReLU draws: batch b runs at step + b
  bool step_per_batch = true;        // false: every batch at `step` (as net/full_batch.h's evaluations)
};

namespace curvature_detail {

// Restores what the passes change on the model: its gradient-overwrite flag and, for G·v, the
// gradient buffer its parameters write to; and unbinds the direction.
template <class T>
struct ModelGuard {
  Layer<T>& model;
  bool overwrite;
  T *params, *grads;
  bool rebound = false;
  std::vector<Layer<T>*> layers;
  ModelGuard(Layer<T>& m, T* p, T* g, bool skip_grads)
      : model(m), overwrite(m.overwrite_grads), params(p), grads(g) {
    model.set_grad_overwrite(false);  // backward must add into grads/hv, batch after batch
    model.collect_layers(layers);
    for (Layer<T>* l : layers) l->rop_skips_param_grads = skip_grads;
  }
  ~ModelGuard() {
    for (Layer<T>* l : layers) l->rop_skips_param_grads = false;
    if (rebound) model.bind_params(params, grads);
    model.bind_direction(nullptr, nullptr);
    model.set_grad_overwrite(overwrite);
  }
};

// The loss of `out` against the batch's targets starting at sample `first`; writes scale * dL/dout
// into grad (when not null) and H_loss r into hr. Returns the batch's unscaled loss sum.
template <class T>
double loss_grad_hessian(const Objective& obj, const View<T>& out, const Targets<T>& t, index_t first, const T* r,
                         T* grad, T* hr, double scale, T* scratch) {
  const index_t rows = out.batch(), cols = out.features(), n = out.size();
  T* g = grad ? grad : scratch;
  double loss = 0;
  switch (obj.kind) {
    case LossKind::CrossEntropy:
      if (t.has_labels()) {
        FASTNN_CHECK(find_bad_label(t.labels + first, rows, cols) < 0, "hvp",
                     "a label is not a class index in [0, " << cols << ")");
        loss = detail::cross_entropy(out.data, ClassLabels<std::int64_t>{t.labels + first}, g, rows, cols, scale,
                                     Reduction::sum);
        cross_entropy_hessian_vector(out.data, t.labels + first, static_cast<const T*>(nullptr), r, hr, rows, cols,
                                     scale);
      } else {
        FASTNN_CHECK(t.values && t.width == cols, "hvp", "probability targets must have " << cols << " columns");
        loss = detail::cross_entropy(out.data, ClassProbs<T>{t.values + first * cols}, g, rows, cols, scale,
                                     Reduction::sum);
        cross_entropy_hessian_vector(out.data, static_cast<const std::int64_t*>(nullptr), t.values + first * cols, r,
                                     hr, rows, cols, scale);
      }
      break;
    case LossKind::BCEWithLogits:
      FASTNN_CHECK(t.values && t.width == cols, "hvp", "targets must have the model output's shape per sample");
      loss = detail::bce(out.data, t.values + first * cols, g, n, scale, Reduction::sum);
      bce_with_logits_hessian_vector(out.data, r, hr, n, scale);
      break;
    case LossKind::MSE:
      FASTNN_CHECK(t.values && t.width == cols, "hvp", "targets must have the model output's shape per sample");
      loss = detail::mse(out.data, t.values + first * cols, g, n, scale, Reduction::sum);
      mse_hessian_vector(r, hr, n, scale);
      break;
  }
  return loss;
}

}  // namespace curvature_detail

// hv += H v (or G v) of the loss over the data; with H·v, grads += its gradient. params/grads:
// the model's flat buffers (bound); v, hv: buffers of the same layout. Returns the loss (mean or
// sum over the set, as obj.reduction).
template <class T>
double curvature_product(Layer<T>& model, const Objective& obj, const Dataset<T>& d, T* params, T* grads,
                         const T* v, T* hv, const CurvatureOptions& o) {
  FASTNN_CHECK(model.has_rop(), "hvp", "the model has a layer without an R-operator (" << model.kind() << ")");
  FASTNN_CHECK(d.n >= 1, "hvp", "no samples");
  const index_t bs = o.batch_size > 0 ? std::min(o.batch_size, d.n) : d.n;
  const index_t s = numel(d.sample_shape);
  curvature_detail::ModelGuard<T> guard(model, params, grads, !o.gradient);
  model.bind_direction(v, hv);
  std::vector<T> g, rg, zero, scratch;
  double loss = 0;
  double scale = 1;  // set from the first output's width
  for (index_t start = 0, b = 0; start < d.n; start += bs, ++b) {
    const index_t count = std::min(bs, d.n - start);
    View<T> xv{const_cast<T*>(d.x + start * s), Shape{count}};
    xv.shape.insert(xv.shape.end(), d.sample_shape.begin(), d.sample_shape.end());
    // rop: the layers may compute their part of R{out} in the forward's pass (Linear: one GEMM of [W; V])
    const Context ctx{o.training, o.seed, o.step + (o.step_per_batch ? static_cast<std::uint64_t>(b) : 0), o.force, true};
    if (guard.rebound) model.bind_params(params, grads), guard.rebound = false;
    View<T> out = model.forward(xv, ctx);
    FASTNN_CHECK(out.batch() == count, "hvp", "the model output has " << out.batch() << " rows for " << count << " samples");
    View<T> rout = model.rop_forward(View<T>{nullptr, xv.shape}, ctx);
    const index_t n = out.size();
    if (!rout.data) {  // no parameter reaches the output
      zero.assign(static_cast<size_t>(n), T(0));
      rout = View<T>{zero.data(), out.shape};
    }
    if (start == 0 && obj.reduction == Reduction::mean)
      scale = 1.0 / double(obj.kind == LossKind::CrossEntropy ? d.n : d.n * out.features());
    g.resize(static_cast<size_t>(n));
    rg.resize(static_cast<size_t>(n));
    scratch.resize(static_cast<size_t>(n));
    loss += curvature_detail::loss_grad_hessian(obj, out, d.y, start, rout.data, g.data(), rg.data(), scale,
                                                scratch.data());
    const View<T> gv{g.data(), out.shape}, rgv{rg.data(), out.shape};
    if (o.gauss_newton) {
      model.bind_params(params, hv);  // the backward of H_loss J v writes Jᵀ H_loss J v
      guard.rebound = true;
      model.backward(rgv, false);
    } else {
      model.rop_backward(gv, rgv, false);
    }
  }
  return loss * scale;
}

}  // namespace fastnn
