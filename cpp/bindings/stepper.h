// An optimizer step prepared once in Python (argument checks done, arrays referenced) and run
// many times without the GIL by the C++ training loop.
#pragma once

#include <functional>
#include <vector>

#include <pybind11/pybind11.h>

#include "fastnn/common.h"

namespace fastnn::bind {

struct Stepper {
  std::vector<pybind11::object> keep;   // the arrays fn points into
  std::function<void(index_t)> fn;      // fn(k): the k-th step from the one it was made for
};

}  // namespace fastnn::bind
