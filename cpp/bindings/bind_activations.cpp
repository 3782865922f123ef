// Placeholder until the activations kernels land.
#include "bindings/arrays.h"

namespace fastnn::bind {
void bind_activations(py::module_& m) { (void)m; }
}  // namespace fastnn::bind
