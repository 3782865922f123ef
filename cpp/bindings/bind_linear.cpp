// Placeholder until the linear kernels land.
#include "bindings/arrays.h"

namespace fastnn::bind {
void bind_linear(py::module_& m) { (void)m; }
}  // namespace fastnn::bind
