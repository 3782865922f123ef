// The extension module fastnn._C: one bind_<topic>() per file, registered here.
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"

namespace py = pybind11;

namespace fastnn::bind {
void bind_config(py::module_& m);
void bind_gemm(py::module_& m);
void bind_linear(py::module_& m);
void bind_conv(py::module_& m);
void bind_conv_winograd(py::module_& m);
void bind_activations(py::module_& m);
void bind_loss(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_dropout(py::module_& m);
void bind_layers(py::module_& m);
void bind_dense_block(py::module_& m);
void bind_pool(py::module_& m);
void bind_optim(py::module_& m);
void bind_train(py::module_& m);
void bind_info(py::module_& m);
void bind_augment(py::module_& m);
void bind_second_order(py::module_& m);
void bind_curvature(py::module_& m);
void bind_batchnorm_rop(py::module_& m);
void bind_loss_hessian(py::module_& m);
void bind_linear_rop(py::module_& m);
void bind_linear_loss(py::module_& m);
}  // namespace fastnn::bind

PYBIND11_MODULE(FASTNN_MODULE_NAME, m) {
  using namespace fastnn::bind;
  m.doc() = "fastnn C++ core (Eigen + OpenMP). Use fastnn.functional for the documented API.";
  bind_config(m);
  bind_gemm(m);
  bind_linear(m);
  bind_activations(m);
  bind_loss(m);
  bind_batchnorm(m);
  bind_dropout(m);
  bind_layers(m);
  bind_conv(m);  // after bind_layers: the Conv2d layers derive from its Layer_<dtype>
  bind_conv_winograd(m);
  bind_pool(m);  // after bind_layers: its layers derive from Layer_float32/64
  bind_dense_block(m);
  bind_optim(m);
  bind_train(m);
  bind_info(m);
  bind_augment(m);
  bind_second_order(m);
  bind_curvature(m);
  bind_batchnorm_rop(m);
  bind_loss_hessian(m);
  bind_linear_rop(m);
  bind_linear_loss(m);
}
