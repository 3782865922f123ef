// The full-batch (or large-batch) training objective of fit() with a second-order optimizer:
// f(params) = the loss over the whole data set (+ l2/2 |w|^2 over the weights that decay) and
// its gradient, evaluated in C++ in consecutive batches of the data (no copies: batches are
// slices of X), so that the many evaluations of an L-BFGS step never call Python.
#pragma once

#include <cstring>

#include "fastnn/kernels/linear_loss.h"
#include "fastnn/layers/layer.h"
#include "fastnn/layers/linear.h"
#include "fastnn/net/curvature.h"
#include "fastnn/net/objective.h"
#include "fastnn/net/sequential.h"
#include "fastnn/net/train.h"
#include "fastnn/optim/line_search.h"
#include "fastnn/optim/segments.h"

namespace fastnn {

// The model's only layer when it is one Linear (alone or in Sequentials of one child), else null.
template <class T>
Linear<T>* sole_linear(Layer<T>& model) {
  if (auto* l = dynamic_cast<Linear<T>*>(&model)) return l;
  if (auto* s = dynamic_cast<Sequential<T>*>(&model))
    if (s->children().size() == 1) return sole_linear(*s->children()[0]);
  return nullptr;
}

// Whether linear_objective takes this Linear on this data set: no activation, bound parameters,
// samples of in_features values without sample weights, few outputs (kernels/linear_loss.h).
template <class T>
bool linear_objective_fits(const Linear<T>& l, const Dataset<T>& d) {
  return l.activation() == Activation::none && !l.lacks_param_buffer() && !d.y.sample_weight &&
         d.sample_shape == Shape{l.in_features()} && linear_loss_fits<T>(l.out_features(), l.in_features());
}

// The loss over the data set (the mean or the sum, as obj.reduction) of a linear model z = x W^T + b
// (w (out, in), b (out) or null) and its gradient, written (=) into dw and db, in one pass over
// the data (kernels/linear_loss.h); adds the correct predictions to *correct. outputs (n, out), unless
// null, receives z (for linear_curvature_at: products at the same point skip the forward of W).
template <class T>
double linear_objective(const Objective& obj, const Dataset<T>& d, const T* w, const T* b, index_t out, T* dw, T* db,
                        index_t* correct, T* outputs = nullptr) {
  const index_t in = d.sample_size();
  const bool classes = obj.kind == LossKind::CrossEntropy || obj.kind == LossKind::NLL;
  FASTNN_CHECK(d.y.labels || (d.y.values && d.y.width == out), "fit",
               "targets must be class labels or have " << out << " values per sample like the model output");
  const double scale = obj.reduction == Reduction::mean ? 1.0 / double(classes ? d.n : d.n * out) : 1.0;
  Objective sum = obj;
  sum.reduction = Reduction::sum;  // the blocks' sums, scaled once
  std::vector<index_t> counts(static_cast<size_t>(linear_loss_detail::kStripes), 0);
  auto block = [&](const T* z, index_t row0, index_t rows, T* g, index_t stripe) {
    Targets<T> t = d.y;
    if (t.labels) t.labels += row0;
    if (t.values) t.values += row0 * t.width;
    if (outputs) std::copy(z, z + rows * out, outputs + row0 * out);
    const double loss = objective_forward_backward(sum, View<T>{const_cast<T*>(z), Shape{rows, out}}, t, g, &counts[stripe]);
    if (scale != 1.0) Eigen::Map<Vec<T>>(g, rows * out) *= static_cast<T>(scale);
    return loss;
  };
  const double loss = linear_loss_forward_backward(d.x, d.n, in, w, b, out, out, dw, db, block);
  for (index_t c : counts) *correct += c;
  return loss * scale;
}

// hvw, hvb (=) H v of linear_objective's loss along (vw, vb), in one pass over the data: per block
// of rows, z and r = x V^T + v_b from one product with [W; V], then H_loss r (kernels/loss_hessian.h)
// and its products with x. For a linear model H = G (no second-order term of the layer).
// b and vb: both given or both null.
template <class T>
void linear_curvature(const Objective& obj, const Dataset<T>& d, const T* w, const T* b, const T* vw, const T* vb,
                      index_t out, T* hvw, T* hvb) {
  const index_t in = d.sample_size();
  const bool classes = obj.kind == LossKind::CrossEntropy;
  FASTNN_CHECK(d.y.labels || (d.y.values && d.y.width == out), "fit",
               "targets must be class labels or have " << out << " values per sample like the model output");
  const double scale = obj.reduction == Reduction::mean ? 1.0 / double(classes ? d.n : d.n * out) : 1.0;
  std::vector<T> stacked(static_cast<size_t>(2 * out * in)), stacked_b(b ? static_cast<size_t>(2 * out) : 0);
  std::copy(w, w + out * in, stacked.begin());
  std::copy(vw, vw + out * in, stacked.begin() + out * in);
  if (b) {
    std::copy(b, b + out, stacked_b.begin());
    std::copy(vb, vb + out, stacked_b.begin() + out);
  }
  auto block = [&](const T* zr, index_t row0, index_t rows, T* hr, index_t) {
    thread_local std::vector<T> work;
    work.resize(static_cast<size_t>(3 * rows * out));
    T *z = work.data(), *r = z + rows * out, *scratch = r + rows * out;
    for (index_t i = 0; i < rows; ++i) {
      std::copy(zr + i * 2 * out, zr + i * 2 * out + out, z + i * out);
      std::copy(zr + i * 2 * out + out, zr + (i + 1) * 2 * out, r + i * out);
    }
    return curvature_detail::loss_grad_hessian(obj, View<T>{z, Shape{rows, out}}, d.y, row0, r,
                                               static_cast<T*>(nullptr), hr, scale, scratch);
  };
  linear_loss_forward_backward(d.x, d.n, in, stacked.data(), b ? stacked_b.data() : nullptr, 2 * out, out, hvw, hvb,
                               block);
}

// linear_curvature from the outputs z (n, out) of linear_objective at the same w and b: per block,
// only r = x V^T + v_b is computed (a product with V, not the stacked [W; V]: a product then costs
// what an evaluation does).
template <class T>
void linear_curvature_at(const Objective& obj, const Dataset<T>& d, const T* z, const T* vw, const T* vb, index_t out,
                         T* hvw, T* hvb) {
  const index_t in = d.sample_size();
  const bool classes = obj.kind == LossKind::CrossEntropy;
  const double scale = obj.reduction == Reduction::mean ? 1.0 / double(classes ? d.n : d.n * out) : 1.0;
  auto block = [&](const T* r, index_t row0, index_t rows, T* hr, index_t) {
    thread_local std::vector<T> scratch;
    scratch.resize(static_cast<size_t>(rows * out));
    return curvature_detail::loss_grad_hessian(obj, View<T>{const_cast<T*>(z + row0 * out), Shape{rows, out}}, d.y,
                                               row0, r, static_cast<T*>(nullptr), hr, scale, scratch.data());
  };
  linear_loss_forward_backward(d.x, d.n, in, vw, vb, out, out, hvw, hvb, block);
}

template <class T>
class FullBatchObjective {
 public:
  // params/grads: the model's flat buffers (n values); segments: every parameter's [offset, size,
  // flags]: frozen ones get a zero gradient (the layers compute one), l2 applies to the trainable
  // ones that decay.
  FullBatchObjective(Layer<T>& model, Dataset<T> data, Objective obj, const T* params, T* grads, index_t n,
                     index_t batch_size, double l2, SegmentTable decay, std::uint64_t seed)
      : model_(model), d_(data), obj_(obj), params_(params), grads_(grads), n_(n),
        batch_size_(std::max<index_t>(1, std::min(batch_size, data.n))), l2_(l2), decay_(decay), seed_(seed) {}

  // Dropout and other randomness draw from (seed, step): the same within one optimizer step, so
  // the line search sees one deterministic function.
  void set_step(std::uint64_t step) { step_ = step; }
  index_t evaluations() const { return evaluations_; }
  index_t correct() const { return correct_; }  // correct predictions at the last evaluation

  index_t products() const { return products_; }  // curvature products so far
  index_t size() const { return n_; }

  // Loss over the data set at the current parameters; writes its gradient into grads.
  double operator()() {
    FlushDenormals ftz;
    if (n_ > 0) std::memset(grads_, 0, sizeof(T) * n_);
    correct_ = 0;
    double total = 0;
    Linear<T>* linear = sole_linear(model_);
    outputs_at_.clear();
    if (linear && linear_objective_fits(*linear, d_)) {  // a linear model: one pass over the data
      // z is kept for the curvature products at this point when it is no larger than X
      const bool keep = linear->out_features() <= linear->in_features();
      if (keep) outputs_.resize(static_cast<size_t>(d_.n * linear->out_features()));
      total = linear_objective(obj_, d_, linear->weight(), linear->bias(), linear->out_features(),
                               linear->weight_grad(), linear->bias_grad(), &correct_, keep ? outputs_.data() : nullptr);
      if (keep) outputs_at_ = linear_point_(*linear);
    } else {
      total = layers_objective_();
    }
    ++evaluations_;
    if (!std::isfinite(total)) return total;
    return total + penalty_(grads_);
  }

  // Whether curvature() has exact products (every layer has an R-operator).
  bool has_curvature() const { return model_.has_rop(); }

  // out = B v at the current parameters: the Gauss-Newton product G v (gauss_newton) or the
  // exact Hessian's H v of the loss over the data set (net/curvature.h, in the evaluations'
  // batches), plus l2 v on the weights that decay; 0 on the frozen parameters. The gradient
  // buffer and the layers' state (BatchNorm's running statistics) are left as they were.
  // A linear model (one Linear) takes linear_curvature: one pass over the data, as an evaluation.
  void curvature(const T* v, T* out, bool gauss_newton) {
    FlushDenormals ftz;
    Linear<T>* linear = sole_linear(model_);
    if (linear && linear_objective_fits(*linear, d_) && linear_loss_fits<T>(2 * linear->out_features(), linear->in_features())) {
      const index_t w0 = linear->weight() - params_, b0 = linear->bias() ? linear->bias() - params_ : 0;
      std::fill(out, out + n_, T(0));
      const T* vb = linear->bias() ? v + b0 : nullptr;
      T* hvb = linear->bias() ? out + b0 : nullptr;
      if (!outputs_at_.empty() && outputs_at_ == linear_point_(*linear))  // the last evaluation's point
        linear_curvature_at(obj_, d_, outputs_.data(), v + w0, vb, linear->out_features(), out + w0, hvb);
      else
        linear_curvature(obj_, d_, linear->weight(), linear->bias(), v + w0, vb, linear->out_features(), out + w0, hvb);
      penalty_curvature_(v, out);
      return;
    }
    std::vector<T> saved_grads(grads_, grads_ + n_);
    std::vector<StateSpec<T>> state = model_.state();
    std::vector<std::vector<T>> saved_state;
    for (const auto& st : state) saved_state.emplace_back(st.view.data, st.view.data + st.view.size());
    std::fill(out, out + n_, T(0));
    CurvatureOptions o;
    o.batch_size = batch_size_;
    o.gauss_newton = gauss_newton;
    o.gradient = false;
    o.force = false;  // every layer in its own mode, as the evaluations run it
    o.seed = seed_;
    o.step = step_;
    o.step_per_batch = false;  // the evaluations draw every batch's dropout at step_
    try {
      curvature_product(model_, obj_, d_, const_cast<T*>(params_), grads_, v, out, o);
    } catch (...) {
      restore_(saved_grads, state, saved_state);
      throw;
    }
    restore_(saved_grads, state, saved_state);
    penalty_curvature_(v, out);
  }

  // The dense (n, n) Hessian (row-major) from n exact products H e_j, symmetrized.
  void hessian(T* H) {
    std::vector<T> e(static_cast<size_t>(n_), T(0)), col(static_cast<size_t>(n_));
    for (index_t j = 0; j < n_; ++j) {
      e[j] = T(1);
      curvature(e.data(), col.data(), false);
      e[j] = T(0);
      for (index_t i = 0; i < n_; ++i) H[i * n_ + j] = col[i];
    }
    Eigen::Map<RowMat<T>> h(H, n_, n_);
    h = (h + h.transpose().eval()) * T(0.5);
  }

 private:
  // The loss through the layers' forward and backward, batch after batch.
  double layers_objective_() {
    const index_t s = d_.sample_size();
    const bool mean = obj_.reduction == Reduction::mean;
    double total = 0;
    for (index_t start = 0; start < d_.n; start += batch_size_) {
      const index_t count = std::min(batch_size_, d_.n - start);
      View<T> x{const_cast<T*>(d_.x + start * s), Shape{count}};
      x.shape.insert(x.shape.end(), d_.sample_shape.begin(), d_.sample_shape.end());
      View<T> out = model_.forward(x, Context{true, seed_, step_});
      check_output_(out.shape, count);
      Targets<T> y = d_.y;
      if (y.labels) y.labels += start;
      if (y.values) y.values += start * y.width;
      View<T> g = grad_ws_.get(out.shape);
      const double loss = objective_forward_backward(obj_, out, y, g.data, &correct_);
      if (!std::isfinite(loss)) return loss;
      // The mean over all N samples: batch b's mean loss weighs count / N.
      const T w = mean ? static_cast<T>(double(count) / double(d_.n)) : T(1);
      if (w != T(1)) Eigen::Map<Vec<T>>(g.data, g.size()) *= w;
      total += loss * double(w);
      model_.backward(g, false);
    }
    return total;
  }

  // Zeroes the frozen parameters' gradients, adds l2 w to the decaying ones' and returns l2/2 |w|^2.
  double penalty_(T* grads) {
    for (index_t i = 0; i < decay_.count; ++i)
      if (!decay_.trainable(i)) std::memset(grads + decay_.offset(i), 0, sizeof(T) * decay_.size(i));
    if (!(l2_ > 0)) return 0;
    double sq = 0;
    for (index_t i = 0; i < decay_.count; ++i) {
      if (!decay_.decays(i) || !decay_.trainable(i)) continue;
      const index_t o = decay_.offset(i), m = decay_.size(i);
      sq += vec_dot(params_ + o, params_ + o, m);
      Eigen::Map<Vec<T>>(grads + o, m) += static_cast<T>(l2_) * Eigen::Map<const Vec<T>>(params_ + o, m);
    }
    return 0.5 * l2_ * sq;
  }

  // The product's 0 on frozen parameters and l2 v on the decaying ones; counts the product.
  void penalty_curvature_(const T* v, T* out) {
    for (index_t i = 0; i < decay_.count; ++i)
      if (!decay_.trainable(i)) std::fill(out + decay_.offset(i), out + decay_.offset(i) + decay_.size(i), T(0));
    if (l2_ > 0)
      for (index_t i = 0; i < decay_.count; ++i) {
        if (!decay_.decays(i) || !decay_.trainable(i)) continue;
        const index_t o0 = decay_.offset(i), m = decay_.size(i);
        Eigen::Map<Vec<T>>(out + o0, m) += static_cast<T>(l2_) * Eigen::Map<const Vec<T>>(v + o0, m);
      }
    ++products_;
  }

  // A linear model's W and b, as one vector: the point the kept outputs belong to.
  static std::vector<T> linear_point_(const Linear<T>& l) {
    const index_t nw = l.out_features() * l.in_features();
    std::vector<T> point(l.weight(), l.weight() + nw);
    if (l.bias()) point.insert(point.end(), l.bias(), l.bias() + l.out_features());
    return point;
  }

  void restore_(const std::vector<T>& grads, const std::vector<StateSpec<T>>& state,
                const std::vector<std::vector<T>>& saved) {
    std::copy(grads.begin(), grads.end(), grads_);
    for (size_t i = 0; i < state.size(); ++i) std::copy(saved[i].begin(), saved[i].end(), state[i].view.data);
  }

  Layer<T>& model_;
  Dataset<T> d_;
  Objective obj_;
  const T* params_;
  T* grads_;
  index_t n_;
  index_t batch_size_;
  double l2_;
  SegmentTable decay_;
  std::uint64_t seed_;
  std::uint64_t step_ = 0;
  index_t evaluations_ = 0;
  index_t products_ = 0;
  index_t correct_ = 0;
  std::vector<T> outputs_;     // a linear model's z at outputs_at_ (its W and b), from the last evaluation
  std::vector<T> outputs_at_;  // empty: none kept
  Workspace<T> grad_ws_;
  OutputCheck check_output_{"fit"};
};

}  // namespace fastnn
