// Placeholder until the dropout kernels land.
#include "bindings/arrays.h"

namespace fastnn::bind {
void bind_dropout(py::module_& m) { (void)m; }
}  // namespace fastnn::bind
