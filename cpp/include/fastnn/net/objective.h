// The training objective of fit(): loss + gradient of the model output for one batch, the number
// of correct predictions (classification accuracy) and the cheap metrics (top-k accuracy, absolute
// and squared errors), with the loss's PyTorch options and per-sample weights.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "fastnn/kernels/loss.h"
#include "fastnn/layers/tensor.h"

namespace fastnn {

enum class LossKind { CrossEntropy, BCEWithLogits, MSE, NLL, L1, SmoothL1, Huber };

struct Objective {
  LossKind kind = LossKind::CrossEntropy;
  Reduction reduction = Reduction::mean;  // mean or sum (none is not a training objective)
  std::vector<double> class_weight;       // cross-entropy / NLL: one per class, or empty
  std::vector<double> pos_weight;         // BCE: one per output value of a sample, or empty
  double label_smoothing = 0;
  std::int64_t ignore_index = -100;
  double param = 1;                       // smooth_l1's beta, huber's delta
  index_t top_k = 0;                      // > 0: count the rows whose label is among the k largest outputs

  LossOptions options(index_t cols) const {
    LossOptions o;
    o.class_weight = class_weight.empty() ? nullptr : class_weight.data();
    o.pos_weight = pos_weight.empty() ? nullptr : pos_weight.data();
    o.cols = cols;
    o.label_smoothing = label_smoothing;
    o.ignore_index = ignore_index;
    o.param = param;
    return o;
  }
};

// Targets of a data set: integer labels (N,) or values (N, width) in the model's dtype, and
// optionally a weight per sample (fit's sample_weight and class_weight).
template <class T>
struct Targets {
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
  index_t width = 0;  // values per sample (0 with labels)
  const double* sample_weight = nullptr;

  bool has_labels() const { return labels != nullptr; }
};

// Sums of the metrics beyond accuracy over the samples seen (unweighted, as Keras's metrics=).
struct MetricSums {
  index_t top_k_correct = 0;
  double abs_error = 0;  // sum over output values of |output - target| (value targets)
  double sq_error = 0;   // sum of (output - target)^2
};

// Index of the largest of n values (first on ties).
template <class T>
index_t argmax(const T* v, index_t n) {
  index_t best = 0;
  for (index_t j = 1; j < n; ++j)
    if (v[j] > v[best]) best = j;
  return best;
}

// Number of outputs of a row larger than the one at `label` (its rank, 0 = the top).
template <class T>
index_t rank_of(const T* v, index_t n, index_t label) {
  index_t above = 0;
  for (index_t j = 0; j < n; ++j) above += v[j] > v[label];
  return above;
}

namespace detail {

// The class-label branch of cross-entropy and NLL (the fast kernel when no option is set).
template <class T>
double label_objective(const Objective& obj, const View<T>& out, const Targets<T>& t, T* grad, const LossOptions& o) {
  const index_t rows = out.batch(), cols = out.features();
  const index_t bad = find_bad_label(t.labels, rows, cols, obj.ignore_index);
  FASTNN_CHECK(bad < 0, "train", "label " << (bad < 0 ? 0 : t.labels[bad]) << " is not a class index in [0, "
                                          << cols << ") (the model has " << cols << " outputs)");
  const ClassLabels<std::int64_t> labels{t.labels};
  if (obj.kind == LossKind::NLL) return nll_general(out.data, labels, grad, nullptr, rows, cols, o, 1.0, obj.reduction);
  if (o.plain() && !has_ignored_label(t.labels, rows, obj.ignore_index))  // no option and no ignored label
    return cross_entropy_forward_backward(out.data, labels, grad, rows, cols, obj.reduction);
  return cross_entropy_general(out.data, labels, grad, nullptr, rows, cols, o, 1.0, obj.reduction);
}

template <ElementLoss K, class T>
double element_objective(const Objective& obj, const View<T>& out, const Targets<T>& t, T* grad,
                         const LossOptions& o) {
  return elementwise_loss<K>(out.data, t.values, grad, nullptr, out.size(), o, 1.0, obj.reduction);
}

}  // namespace detail

// Loss of `out` (rows, cols) against the batch's targets; writes d loss / d out into grad and
// adds the number of correct predictions to *correct (per row for cross-entropy and NLL, per
// element for BCE) and, when metrics is not null, the other metrics' sums.
template <class T>
double objective_forward_backward(const Objective& obj, const View<T>& out, const Targets<T>& t, T* grad,
                                  index_t* correct, MetricSums* metrics = nullptr) {
  const index_t rows = out.batch(), cols = out.features(), n = out.size();
  LossOptions o = obj.options(cols);
  o.row_weight = t.sample_weight;
  const bool classes = obj.kind == LossKind::CrossEntropy || obj.kind == LossKind::NLL;
  if (classes && t.has_labels()) {
    const double loss = detail::label_objective(obj, out, t, grad, o);
    for (index_t i = 0; i < rows; ++i) {
      if (t.labels[i] == obj.ignore_index) continue;
      const index_t rank = rank_of(out.data + i * cols, cols, static_cast<index_t>(t.labels[i]));
      *correct += argmax(out.data + i * cols, cols) == t.labels[i];
      if (metrics) metrics->top_k_correct += rank < obj.top_k;
    }
    return loss;
  }
  FASTNN_CHECK(t.values && t.width == cols, "train",
               (classes ? "probability targets must have " : "targets must have ")
                   << cols << " values per sample like the model output");
  double loss = 0;
  switch (obj.kind) {
    case LossKind::CrossEntropy:
      loss = o.plain() ? cross_entropy_forward_backward(out.data, ClassProbs<T>{t.values}, grad, rows, cols, obj.reduction)
                       : cross_entropy_general(out.data, ClassProbs<T>{t.values}, grad, nullptr, rows, cols, o, 1.0,
                                               obj.reduction);
      break;
    case LossKind::NLL:
      FASTNN_CHECK(false, "train", "NLLLoss needs integer class labels");
      break;
    case LossKind::BCEWithLogits:
      loss = o.plain() ? binary_cross_entropy_with_logits_forward_backward(out.data, t.values, grad, n, obj.reduction)
                       : detail::element_objective<ElementLoss::bce_with_logits>(obj, out, t, grad, o);
      break;
    case LossKind::MSE:
      loss = o.plain() ? mse_forward_backward(out.data, t.values, grad, n, obj.reduction)
                       : detail::element_objective<ElementLoss::mse>(obj, out, t, grad, o);
      break;
    case LossKind::L1: loss = detail::element_objective<ElementLoss::l1>(obj, out, t, grad, o); break;
    case LossKind::SmoothL1: loss = detail::element_objective<ElementLoss::smooth_l1>(obj, out, t, grad, o); break;
    case LossKind::Huber: loss = detail::element_objective<ElementLoss::huber>(obj, out, t, grad, o); break;
  }
  if (obj.kind == LossKind::CrossEntropy) {
    for (index_t i = 0; i < rows; ++i) {
      const T* zi = out.data + i * cols;
      const index_t label = argmax(t.values + i * cols, cols);
      *correct += argmax(zi, cols) == label;
      if (metrics) metrics->top_k_correct += rank_of(zi, cols, label) < obj.top_k;
    }
  } else if (obj.kind == LossKind::BCEWithLogits) {
    for (index_t i = 0; i < n; ++i) *correct += (out.data[i] > T(0)) == (t.values[i] > T(0.5));
  }
  if (metrics && !classes) {
    metrics->abs_error += detail::sum_in_double(n, [&](index_t k) { return std::abs(double(out.data[k]) - double(t.values[k])); });
    metrics->sq_error += detail::sum_in_double(n, [&](index_t k) {
      const double u = double(out.data[k]) - double(t.values[k]);
      return u * u;
    });
  }
  return loss;
}

// Loss only (evaluation): the gradient goes to a scratch buffer the caller provides.
template <class T>
double objective_forward(const Objective& obj, const View<T>& out, const Targets<T>& t, T* scratch, index_t* correct,
                         MetricSums* metrics = nullptr) {
  return objective_forward_backward(obj, out, t, scratch, correct, metrics);
}

}  // namespace fastnn
