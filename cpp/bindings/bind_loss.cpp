// Placeholder until the loss kernels land.
#include "bindings/arrays.h"

namespace fastnn::bind {
void bind_loss(py::module_& m) { (void)m; }
}  // namespace fastnn::bind
