// The full-batch (or large-batch) training objective of fit() with a second-order optimizer:
// f(params) = the loss over the whole data set (+ l2/2 |w|^2 over the weights that decay) and
// its gradient, evaluated in C++ in consecutive batches of the data (no copies: batches are
// slices of X), so that the many evaluations of an L-BFGS step never call Python.
#pragma once

#include <cstring>

#include "fastnn/layers/layer.h"
#include "fastnn/net/objective.h"
#include "fastnn/net/train.h"
#include "fastnn/optim/line_search.h"
#include "fastnn/optim/segments.h"

namespace fastnn {

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

  // Loss over the data set at the current parameters; writes its gradient into grads.
  double operator()() {
    FlushDenormals ftz;
    if (n_ > 0) std::memset(grads_, 0, sizeof(T) * n_);
    const index_t s = d_.sample_size();
    const bool mean = obj_.reduction == Reduction::mean;
    double total = 0;
    correct_ = 0;
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
      if (!std::isfinite(loss)) {
        ++evaluations_;
        return loss;
      }
      // The mean over all N samples: batch b's mean loss weighs count / N.
      const T w = mean ? static_cast<T>(double(count) / double(d_.n)) : T(1);
      if (w != T(1)) Eigen::Map<Vec<T>>(g.data, g.size()) *= w;
      total += loss * double(w);
      model_.backward(g, false);
    }
    for (index_t i = 0; i < decay_.count; ++i)
      if (!decay_.trainable(i)) std::memset(grads_ + decay_.offset(i), 0, sizeof(T) * decay_.size(i));
    if (l2_ > 0) {
      double sq = 0;
      for (index_t i = 0; i < decay_.count; ++i) {
        if (!decay_.decays(i) || !decay_.trainable(i)) continue;
        const index_t o = decay_.offset(i), m = decay_.size(i);
        sq += vec_dot(params_ + o, params_ + o, m);
        Eigen::Map<Vec<T>>(grads_ + o, m) += static_cast<T>(l2_) * Eigen::Map<const Vec<T>>(params_ + o, m);
      }
      total += 0.5 * l2_ * sq;
    }
    ++evaluations_;
    return total;
  }

 private:
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
  index_t correct_ = 0;
  Workspace<T> grad_ws_;
  OutputCheck check_output_{"fit"};
};

}  // namespace fastnn
