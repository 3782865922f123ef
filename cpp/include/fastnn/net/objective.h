// The training objective of fit(): loss + gradient of the model output for one batch, and the
// number of correct predictions (classification accuracy).
#pragma once

#include <cmath>
#include <cstdint>

#include "fastnn/kernels/loss.h"
#include "fastnn/layers/tensor.h"

namespace fastnn {

enum class LossKind { CrossEntropy, BCEWithLogits, MSE };

struct Objective {
  LossKind kind = LossKind::CrossEntropy;
  Reduction reduction = Reduction::mean;
};

// Targets of a data set: integer labels (N,) or values (N, width) in the model's dtype.
template <class T>
struct Targets {
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
  index_t width = 0;  // values per sample (0 with labels)

  bool has_labels() const { return labels != nullptr; }
};

// Index of the largest of n values (first on ties).
template <class T>
index_t argmax(const T* v, index_t n) {
  index_t best = 0;
  for (index_t j = 1; j < n; ++j)
    if (v[j] > v[best]) best = j;
  return best;
}

// Loss of `out` (rows, cols) against the batch's targets; writes d loss / d out into grad and
// adds the number of correct predictions to *correct (per row for cross-entropy, per element for BCE).
template <class T>
double objective_forward_backward(const Objective& obj, const View<T>& out, const Targets<T>& t, T* grad,
                                  index_t* correct) {
  const index_t rows = out.batch(), cols = out.features(), n = out.size();
  switch (obj.kind) {
    case LossKind::CrossEntropy: {
      double loss;
      if (t.has_labels()) {
        const index_t bad = find_bad_label(t.labels, rows, cols);
        FASTNN_CHECK(bad < 0, "train", "label " << (bad < 0 ? 0 : t.labels[bad]) << " is not a class index in [0, "
                                                << cols << ") (the model has " << cols << " outputs)");
        loss = cross_entropy_forward_backward(out.data, ClassLabels<std::int64_t>{t.labels}, grad, rows, cols,
                                              obj.reduction);
        for (index_t i = 0; i < rows; ++i) *correct += argmax(out.data + i * cols, cols) == t.labels[i];
      } else {
        FASTNN_CHECK(t.values && t.width == cols, "train", "probability targets must have " << cols << " columns");
        loss = cross_entropy_forward_backward(out.data, ClassProbs<T>{t.values}, grad, rows, cols, obj.reduction);
        for (index_t i = 0; i < rows; ++i)
          *correct += argmax(out.data + i * cols, cols) == argmax(t.values + i * cols, cols);
      }
      return loss;
    }
    case LossKind::BCEWithLogits: {
      FASTNN_CHECK(t.values && t.width == cols, "train", "targets must have the model output's shape per sample");
      const double loss = binary_cross_entropy_with_logits_forward_backward(out.data, t.values, grad, n, obj.reduction);
      for (index_t i = 0; i < n; ++i) *correct += (out.data[i] > T(0)) == (t.values[i] > T(0.5));
      return loss;
    }
    case LossKind::MSE:
      FASTNN_CHECK(t.values && t.width == cols, "train", "targets must have the model output's shape per sample");
      return mse_forward_backward(out.data, t.values, grad, n, obj.reduction);
  }
  return 0.0;
}

// Loss only (evaluation): the gradient goes to a scratch buffer the caller provides.
template <class T>
double objective_forward(const Objective& obj, const View<T>& out, const Targets<T>& t, T* scratch, index_t* correct) {
  return objective_forward_backward(obj, out, t, scratch, correct);
}

}  // namespace fastnn
