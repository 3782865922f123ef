// DenseBlock (net/dense_block.h) as _C.DenseBlock_float32/_float64, built by fastnn.nn.DenseBlock
// from its children's C++ layers.
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/layer_binding.h"
#include "fastnn/net/dense_block.h"

namespace fastnn::bind {
namespace {

template <class T>
void bind_dense_block_dtype(py::module_& m, const std::string& suffix) {
  py::class_<DenseBlock<T>, Layer<T>, std::shared_ptr<DenseBlock<T>>>(m, ("DenseBlock_" + suffix).c_str())
      .def(py::init<const std::vector<LayerPtr<T>>&, index_t, index_t, bool, double, bool>(), py::arg("layers"),
           py::arg("in_channels"), py::arg("growth_rate"), py::arg("bottleneck"), py::arg("drop_rate"),
           py::arg("shared_scratch") = true)
      .def_property_readonly("num_layers", &DenseBlock<T>::num_layers)
      .def_property_readonly("out_channels", &DenseBlock<T>::out_channels)
      .def_property("shared_scratch", &DenseBlock<T>::shared_scratch, &DenseBlock<T>::set_shared_scratch)
      .def_property_readonly("buffer_elements", &DenseBlock<T>::buffer_elements);
}

}  // namespace

void bind_dense_block(py::module_& m) {
  bind_dense_block_dtype<float>(m, "float32");
  bind_dense_block_dtype<double>(m, "float64");
}

}  // namespace fastnn::bind
