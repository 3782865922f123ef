// A data set in memory, as the C++ loops read it: fit's epoch loop, evaluate, predict, the
// curvature products and the full-batch objective.
#pragma once

#include "fastnn/layers/tensor.h"
#include "fastnn/net/objective.h"

namespace fastnn {

// N samples of sample_shape, row-major, plus targets.
template <class T>
struct Dataset {
  const T* x = nullptr;
  index_t n = 0;
  Shape sample_shape;
  Targets<T> y;

  index_t sample_size() const { return numel(sample_shape); }
};

}  // namespace fastnn
