// Placeholder until the batchnorm kernels land.
#include "bindings/arrays.h"

namespace fastnn::bind {
void bind_batchnorm(py::module_& m) { (void)m; }
}  // namespace fastnn::bind
