// The Python face of Layer<T>: parameters, state, forward/backward on NumPy arrays.
#pragma once

#include <cstring>
#include <string>

#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/model_lock.h"
#include "fastnn/layers/layer.h"

namespace fastnn::bind {

// Copy of a layer-owned view (the layer reuses its buffers at the next call).
template <class T>
py::array copy_out(const View<T>& v) {
  std::vector<py::ssize_t> shape(v.shape.begin(), v.shape.end());
  CArray<T> a = new_array<T>(shape);
  std::memcpy(a.mutable_data(), v.data, sizeof(T) * v.size());
  return std::move(a);
}

// A C-contiguous input of dtype T, as a view. The caller (fastnn.nn) keeps the array alive until
// backward, because layers keep a pointer to their input. It may be read-only: no layer writes
// its input or the gradient it is given (their kernels take them as const T*; a Python-written
// layer gets a copy), so the const_cast below is never written through.
template <class T>
View<T> input_view(const py::handle& h, const std::string& op, const char* name) {
  py::array a = as_ndarray(h, op.c_str(), name);
  if (!a.dtype().equal(py::dtype::of<T>()))
    type_error(op.c_str(), std::string(name) + " must be " + dtype_name<T>() + " (the model's dtype), got " + dtype_str(a));
  if (!a.attr("flags").attr("c_contiguous").cast<bool>())
    value_error(op.c_str(), std::string(name) + " must be C-contiguous");
  check_nonempty(a, op.c_str(), name);
  if (a.ndim() < 1) value_error(op.c_str(), std::string(name) + " must have a batch dimension, got a scalar");
  return View<T>{const_cast<T*>(static_cast<const T*>(a.data())), Shape(a.shape(), a.shape() + a.ndim())};
}

template <class T>
void bind_layer_base(py::module_& m, const std::string& name) {
  py::class_<Layer<T>, LayerPtr<T>>(m, name.c_str())
      .def_property_readonly("kind", &Layer<T>::kind)
      .def("param_specs",
           [](const Layer<T>& l) {
             py::list out;
             for (const auto& p : l.param_specs())
               out.append(py::make_tuple(p.name, py::tuple(py::cast(p.shape)), p.decay));
             return out;
           })
      .def("num_params", &Layer<T>::num_params)
      .def(
          "bind_params",
          [](Layer<T>& l, const py::handle& params, const py::handle& grads, index_t offset) {
            const std::string op = l.kind() + ".bind_params";
            CArray<T> p = inout<T>(params, op.c_str(), "params"), g = inout<T>(grads, op.c_str(), "grads");
            if (p.size() != g.size() || offset < 0 || offset + l.num_params() > p.size())
              value_error(op.c_str(), "buffers of " + std::to_string(p.size()) + "/" + std::to_string(g.size()) +
                                          " elements cannot hold " + std::to_string(l.num_params()) +
                                          " parameters at offset " + std::to_string(offset));
            ModelLock<T> lock(l, op, false, false);  // not while a call runs the layer
            l.bind_params(p.mutable_data() + offset, g.mutable_data() + offset);
            l.mutex().params_owner = hold(py::make_tuple(p, g));
          },
          py::arg("params"), py::arg("grads"), py::arg("offset"))
      .def_readwrite("params_trainable", &Layer<T>::params_trainable)
      .def_readwrite("salt", &Layer<T>::salt)
      .def_readwrite("mode", &Layer<T>::mode)
      .def(
          "state",
          [](py::object self) {
            auto& l = self.cast<Layer<T>&>();
            py::list out;
            for (auto& s : l.state()) {
              std::vector<py::ssize_t> shape(s.view.shape.begin(), s.view.shape.end());
              // A view into the layer's memory that keeps the layer alive.
              out.append(py::make_tuple(s.name, py::array_t<T>(shape, s.view.data, self)));
            }
            return out;
          })
      .def(
          "output_shape",
          [](const Layer<T>& l, const Shape& in) {  // a part not promised (kAnyDims) shows as ...
            py::list out;
            for (index_t d : l.output_shape(in)) out.append(d == kAnyDims ? py::object(py::ellipsis()) : py::int_(d));
            return py::tuple(out);
          },
          py::arg("shape"))
      .def(
          "forward",
          [](Layer<T>& l, const py::handle& x, bool training, std::uint64_t seed, std::uint64_t step, bool force) {
            const std::string op = l.kind() + ".forward";
            View<T> xv = input_view<T>(x, op, "x");
            Context ctx{training, seed, step, force};
            ModelLock<T> lock(l, op, true);
            l.last_output_shape.clear();  // a forward that raises leaves nothing for backward
            View<T> y;
            {
              py::gil_scoped_release nogil;
              y = l.forward(xv, ctx);
            }
            l.last_output_shape = y.shape;
            keep_input(l, x);
            return copy_out(y);
          },
          py::arg("x"), py::arg("training") = true, py::arg("seed") = 0, py::arg("step") = 0,
          py::arg("force") = false)
      .def(
          "backward",
          [](Layer<T>& l, const py::handle& g, bool need_input_grad) -> py::object {
            const std::string op = l.kind() + ".backward";
            View<T> gv = input_view<T>(g, op, "grad_out");
            ModelLock<T> lock(l, op, false);
            const auto last = l.mutex().last_forward;
            if (last != std::thread::id() && last != std::this_thread::get_id())
              throw std::runtime_error("[" + op + "] the model's last forward ran in another thread, so backward "
                                       "has not this thread's activations: train a model in one thread at a time");
            if (l.last_output_shape.empty())
              value_error(op.c_str(), "backward called before forward (or predict, evaluate or fit ran the model "
                                      "since its forward)");
            if (gv.shape != l.last_output_shape)
              value_error(op.c_str(), "grad_out must have the shape of the last output " +
                                          fastnn::shape_str(l.last_output_shape) + ", got " + fastnn::shape_str(gv.shape));
            View<T> dx;
            {
              py::gil_scoped_release nogil;
              dx = l.backward(gv, need_input_grad);
            }
            if (!need_input_grad) return py::none();
            return copy_out(dx);
          },
          py::arg("grad_out"), py::arg("need_input_grad") = true)
      // The R-operator pair (layer.h), for tests and fastnn.hvp. The direction v and the H·v
      // accumulator hv are flat buffers laid out as the parameters, read and written from offset.
      .def_property_readonly("has_rop", &Layer<T>::has_rop)
      .def(
          "bind_direction",
          [](Layer<T>& l, const py::handle& v, const py::handle& hv, index_t offset) {
            const std::string op = l.kind() + ".bind_direction";
            CArray<T> vv = in<T>(v, op.c_str(), "v"), h = inout<T>(hv, op.c_str(), "hv");
            if (vv.size() != h.size() || offset < 0 || offset + l.num_params() > vv.size())
              value_error(op.c_str(), "buffers of " + std::to_string(vv.size()) + "/" + std::to_string(h.size()) +
                                          " elements cannot hold the direction of " + std::to_string(l.num_params()) +
                                          " parameters at offset " + std::to_string(offset));
            ModelLock<T> lock(l, op, false, false);
            l.bind_direction(vv.data() + offset, h.mutable_data() + offset);
            l.mutex().direction_owner = hold(py::make_tuple(vv, h));
          },
          py::arg("v"), py::arg("hv"), py::arg("offset") = 0)
      .def(
          "rop_forward",
          [](Layer<T>& l, const py::handle& rx, bool training, std::uint64_t seed, std::uint64_t step,
             bool force) -> py::object {
            const std::string op = l.kind() + ".rop_forward";
            if (!l.has_rop()) value_error(op.c_str(), "this layer has no R-operator");
            if (l.last_output_shape.empty()) value_error(op.c_str(), "rop_forward called before forward");
            View<T> rv;  // None: R{x} = 0
            if (!rx.is_none()) rv = input_view<T>(rx, op, "rx");
            Context ctx{training, seed, step, force};
            ModelLock<T> lock(l, op, false);
            View<T> ry;
            {
              py::gil_scoped_release nogil;
              ry = l.rop_forward(rv, ctx);
            }
            l.mutex().r_input_owner = hold(rx);
            if (!ry.data) {  // R{y} = 0: no parameter before or in this layer moves the output
              std::vector<py::ssize_t> shape(ry.shape.begin(), ry.shape.end());
              CArray<T> z = new_array<T>(shape);
              std::memset(z.mutable_data(), 0, sizeof(T) * z.size());
              return py::object(std::move(z));
            }
            return copy_out(ry);
          },
          py::arg("rx"), py::arg("training") = true, py::arg("seed") = 0, py::arg("step") = 0,
          py::arg("force") = false)
      .def(
          "rop_backward",
          [](Layer<T>& l, const py::handle& g, const py::handle& rg, bool need_input_grad) -> py::object {
            const std::string op = l.kind() + ".rop_backward";
            if (!l.has_rop()) value_error(op.c_str(), "this layer has no R-operator");
            View<T> gv = input_view<T>(g, op, "grad_out"), rgv = input_view<T>(rg, op, "r_grad_out");
            if (l.last_output_shape.empty()) value_error(op.c_str(), "rop_backward called before forward");
            if (gv.shape != l.last_output_shape || rgv.shape != l.last_output_shape)
              value_error(op.c_str(), "grad_out and r_grad_out must have the shape of the last output " +
                                          fastnn::shape_str(l.last_output_shape) + ", got " +
                                          fastnn::shape_str(gv.shape) + " and " + fastnn::shape_str(rgv.shape));
            ModelLock<T> lock(l, op, false);
            RopGrad<T> r;
            {
              py::gil_scoped_release nogil;
              r = l.rop_backward(gv, rgv, need_input_grad);
            }
            if (!need_input_grad) return py::none();
            return py::make_tuple(copy_out(r.grad), copy_out(r.rgrad));
          },
          py::arg("grad_out"), py::arg("r_grad_out"), py::arg("need_input_grad") = true);
}

}  // namespace fastnn::bind
