// C++ layers as Python objects (handles used by fastnn.nn), plus the trampoline that lets a layer
// written in Python sit inside a C++ container.
#include <cstring>
#include <unordered_map>

#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/layer_binding.h"
#include "fastnn/layers/activation.h"
#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/dropout.h"
#include "fastnn/layers/linear.h"
#include "fastnn/layers/shape_layers.h"
#include "fastnn/net/concat.h"
#include "fastnn/net/residual.h"
#include "fastnn/net/sequential.h"

namespace fastnn::bind {
namespace {

// The lock of a Python-written module, shared by all its trampolines (fit, evaluate and predict
// wrap a Python module anew at each call): the module's own state (its training flag, what its
// forward keeps for backward) is used by one call at a time. Called with the GIL, which guards
// the registry; an entry lives while a trampoline holds the module (and so its address).
inline std::shared_ptr<LayerMutex> module_mutex(const py::object& module) {
  static auto* registry = new std::unordered_map<PyObject*, std::weak_ptr<LayerMutex>>();
  static size_t prune_at = 64;
  std::shared_ptr<LayerMutex> m = (*registry)[module.ptr()].lock();
  if (!m) (*registry)[module.ptr()] = m = std::make_shared<LayerMutex>();
  if (registry->size() >= prune_at) {
    for (auto it = registry->begin(); it != registry->end();) it = it->second.expired() ? registry->erase(it) : ++it;
    prune_at = 2 * registry->size() + 64;
  }
  return m;
}

// A layer implemented by a Python object with forward(x) -> y and backward(g) -> dx (NumPy).
// Slower than a C++ layer (the GIL is taken and arrays are copied at the boundary) but checked:
// every array the module returns is checked (an ndarray of the model's dtype, not empty) before
// any C++ layer reads it, and the container checks its shape (Sequential::run_child, backward):
// forward's against output_shape below, backward's against the input of that forward.
template <class T>
class PythonLayer : public Layer<T> {
 public:
  explicit PythonLayer(py::object module) : module_(std::move(module)), mutex_(module_mutex(module_)) {}
  LayerMutex& mutex() override { return *mutex_; }
  ~PythonLayer() override {
    py::gil_scoped_acquire gil;
    module_ = py::object();
  }
  std::string kind() const override {
    py::gil_scoped_acquire gil;
    return py::str(py::type::of(module_).attr("__name__")).cast<std::string>();
  }
  // The module's own output_shape(shape) when it defines one; otherwise only the batch is known,
  // (N, ...): the output must keep the input's first dimension.
  Shape output_shape(const Shape& in) const override {
    FASTNN_CHECK(!in.empty(), kind(), "input must have a batch dimension, got shape ()");
    py::gil_scoped_acquire gil;
    py::object f = py::getattr(module_, "output_shape", py::none());
    if (f.is_none()) return {in[0], kAnyDims};
    if (!PyCallable_Check(f.ptr()))
      type_error((kind() + ".output_shape").c_str(),
                 "must be a method output_shape(shape) -> tuple, got a " +
                     py::str(py::type::of(f).attr("__name__")).cast<std::string>());
    return promised_shape(f(py::tuple(py::cast(in))), in);
  }
  // Its fastnn submodules' gradients are in the model's flat buffer and their backward adds to
  // them: the epoch loop must zero the buffer before each batch.
  bool supports_grad_overwrite() const override { return false; }
  // Its parameters are the module's own business (they may be Python arrays): its backward always runs.
  bool trains_params() const override { return true; }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    py::gil_scoped_acquire gil;
    // evaluate/predict: the module and its submodules in that mode (Module._forward_in_mode);
    // else the modules' own modes
    py::object y = ctx.force ? module_.attr("_forward_in_mode")(to_numpy(x), ctx.training)
                             : module_.attr("forward")(to_numpy(x));
    return from_numpy(y, out_, "forward");
  }
  View<T> backward(const View<T>& g, bool) override {
    py::gil_scoped_acquire gil;
    return from_numpy(module_.attr("backward")(to_numpy(g)), grad_in_, "backward");
  }

 private:
  static py::array to_numpy(const View<T>& v) {
    std::vector<py::ssize_t> shape(v.shape.begin(), v.shape.end());
    CArray<T> a = new_array<T>(shape);
    std::memcpy(a.mutable_data(), v.data, sizeof(T) * v.size());
    return std::move(a);
  }
  View<T> from_numpy(const py::object& obj, Workspace<T>& ws, const char* what) {
    const std::string op = kind() + "." + what;
    if (!py::isinstance<py::array>(obj))
      throw py::type_error("[" + op + "] must return a numpy.ndarray, got " +
                           py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().equal(py::dtype::of<T>()))
      throw py::type_error("[" + op + "] returned " + dtype_str(a) + ", the model is " + dtype_name<T>());
    if (a.size() == 0) value_error(op.c_str(), "returned an empty array of shape " + shape_str(a));
    CArray<T> c = c_array<T>(a, op.c_str(), "its result");
    Shape s(c.shape(), c.shape() + c.ndim());
    View<T> v = ws.get(s);
    std::memcpy(v.data, c.data(), sizeof(T) * v.size());
    return v;
  }
  // What the module's output_shape returned, as a Shape: a tuple of positive ints that keeps the batch.
  Shape promised_shape(const py::object& r, const Shape& in) const {
    Shape s;
    bool ok = py::isinstance<py::tuple>(r) || py::isinstance<py::list>(r);
    if (ok)
      for (const py::handle& d : r) {
        ok = !PyBool_Check(d.ptr()) && PyIndex_Check(d.ptr());
        if (!ok) break;
        py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(d.ptr()));
        if (!i) throw py::error_already_set();
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
        ok = overflow == 0 && v >= 1;
        if (!ok) break;
        s.push_back(v);
      }
    if (!ok || s.empty() || s[0] != in[0])
      value_error((kind() + ".output_shape").c_str(),
                  "must return a tuple of positive ints starting with the batch (" + std::to_string(in[0]) +
                      ") for the input shape " + fastnn::shape_str(in) + ", got " + py::repr(r).cast<std::string>());
    return s;
  }

  py::object module_;
  std::shared_ptr<LayerMutex> mutex_;
  Workspace<T> out_, grad_in_;
};

// A model's descendants get their random streams at construction (an enclosing container gives
// them new ones when it is built around it).
template <class C>
std::shared_ptr<C> with_salts(std::shared_ptr<C> c) {
  std::uint64_t next = 1;
  c->assign_salts(next);
  return c;
}

template <class T>
void bind_dtype(py::module_& m, const std::string& suffix) {
  bind_layer_base<T>(m, "Layer_" + suffix);
  py::class_<Identity<T>, Layer<T>, std::shared_ptr<Identity<T>>>(m, ("Identity_" + suffix).c_str())
      .def(py::init<>());
  py::class_<Flatten<T>, Layer<T>, std::shared_ptr<Flatten<T>>>(m, ("Flatten_" + suffix).c_str())
      .def(py::init<int, int>(), py::arg("start_dim") = 1, py::arg("end_dim") = -1);
  py::class_<Container<T>, Layer<T>, std::shared_ptr<Container<T>>>(m, ("Container_" + suffix).c_str())
      .def_property_readonly("child_names", &Container<T>::child_names);
  py::class_<Sequential<T>, Container<T>, std::shared_ptr<Sequential<T>>>(m, ("Sequential_" + suffix).c_str())
      .def(py::init([](std::vector<LayerPtr<T>> children) { return with_salts(std::make_shared<Sequential<T>>(std::move(children))); }),
           py::arg("children"))
      .def_property_readonly("execution_plan", &Sequential<T>::execution_plan);
  py::class_<Residual<T>, Container<T>, std::shared_ptr<Residual<T>>>(m, ("Residual_" + suffix).c_str())
      .def(py::init([](LayerPtr<T> body, LayerPtr<T> shortcut) {
             if (!body) value_error("Residual", "body is None");
             return with_salts(std::make_shared<Residual<T>>(std::move(body), std::move(shortcut)));
           }),
           py::arg("body"), py::arg("shortcut") = nullptr);
  py::class_<Concat<T>, Container<T>, std::shared_ptr<Concat<T>>>(m, ("Concat_" + suffix).c_str())
      .def(py::init([](std::vector<LayerPtr<T>> branches) { return with_salts(std::make_shared<Concat<T>>(std::move(branches))); }),
           py::arg("branches"));
  py::class_<PointwiseActivation<T>, Layer<T>, std::shared_ptr<PointwiseActivation<T>>>(m, ("Pointwise_" + suffix).c_str())
      .def(py::init([](const std::string& kind, double param) {
             for (Pointwise a : {Pointwise::Sigmoid, Pointwise::Tanh, Pointwise::ReLU, Pointwise::LeakyReLU,
                                 Pointwise::ELU, Pointwise::SELU})
               if (kind == pointwise_name(a)) return std::make_shared<PointwiseActivation<T>>(a, param);
             throw py::value_error("unknown activation " + kind);
           }),
           py::arg("kind"), py::arg("param") = 0.0);
  py::class_<PReLU<T>, Layer<T>, std::shared_ptr<PReLU<T>>>(m, ("PReLU_" + suffix).c_str())
      .def(py::init<index_t>(), py::arg("num_parameters"));
  py::class_<RReLU<T>, Layer<T>, std::shared_ptr<RReLU<T>>>(m, ("RReLU_" + suffix).c_str())
      .def(py::init<double, double>(), py::arg("lower"), py::arg("upper"));
  py::class_<Softmax<T>, Layer<T>, std::shared_ptr<Softmax<T>>>(m, ("Softmax_" + suffix).c_str())
      .def(py::init<bool>(), py::arg("log") = false);
  py::class_<Maxout<T>, Layer<T>, std::shared_ptr<Maxout<T>>>(m, ("Maxout_" + suffix).c_str())
      .def(py::init<index_t>(), py::arg("pieces"));
  py::class_<BatchNorm<T>, Layer<T>, std::shared_ptr<BatchNorm<T>>>(m, ("BatchNorm_" + suffix).c_str())
      .def(py::init<index_t, double, double, bool, bool, int>(), py::arg("num_features"), py::arg("eps"),
           py::arg("momentum"), py::arg("affine"), py::arg("track_running_stats"), py::arg("spatial_dims"))
      .def_property_readonly("last_input_shape", &BatchNorm<T>::last_input_shape)
      .def(
          "collect_statistics",
          [](BatchNorm<T>& bn, bool on, bool stop) {
            ModelLock<T> lock(bn, "BatchNorm.collect_statistics", false, false);  // not while a call runs it
            bn.collect(on, stop);
          },
          py::arg("on"), py::arg("stop") = false)
      .def("collected_statistics", [](const BatchNorm<T>& bn) {
        return py::make_tuple(bn.collected_tick(), bn.collected_count(), py::array_t<double>(py::cast(bn.collected_shift())),
                              py::array_t<double>(py::cast(bn.collected_sum())),
                              py::array_t<double>(py::cast(bn.collected_sumsq())));
      });
  py::class_<Linear<T>, Layer<T>, std::shared_ptr<Linear<T>>>(m, ("Linear_" + suffix).c_str())
      .def(py::init([](index_t in, index_t out, bool bias, const std::string& activation, double slope) {
             Activation act;
             if (!parse_activation(activation, &act))
               throw py::value_error("[Linear] activation must be one of " + std::string(activation_names()) +
                                     ", got '" + activation + "'");
             return std::make_shared<Linear<T>>(in, out, bias, act, slope);
           }),
           py::arg("in_features"), py::arg("out_features"), py::arg("bias") = true, py::arg("activation") = "none",
           py::arg("negative_slope") = 0.01);
  py::class_<Dropout<T>, Layer<T>, std::shared_ptr<Dropout<T>>>(m, ("Dropout_" + suffix).c_str())
      .def(py::init<double>(), py::arg("p"));
  py::class_<PythonLayer<T>, Layer<T>, std::shared_ptr<PythonLayer<T>>>(m, ("PythonLayer_" + suffix).c_str())
      .def(py::init<py::object>(), py::arg("module"));
}

}  // namespace

void bind_layers(py::module_& m) {
  // Python sees it as _C.StopForward, also when it passes through a layer written in Python.
  py::register_exception<StopForward>(m, "StopForward", PyExc_RuntimeError);
  bind_dtype<float>(m, "float32");
  bind_dtype<double>(m, "float64");
}

}  // namespace fastnn::bind
