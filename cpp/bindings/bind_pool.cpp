// max/avg/adaptive/global 2-D pooling on NCHW arrays (kernels/pool.h), and the pooling layers
// (layers/pool.h). Inputs are read C-contiguous (other layouts are copied once); errors match the
// references' messages (reference/pool.py). Registered after bind_layers (the Layer base classes).
#include <cstdint>
#include <string>
#include <utility>

#include "bindings/arrays.h"
#include "bindings/conv_args.h"
#include "fastnn/kernels/pool.h"
#include "fastnn/layers/pool.h"

namespace fastnn::bind {
namespace {

using Index = std::int64_t;  // torch's indices

// kernel_size, stride (None: the kernel), padding, dilation as (h, w) pairs, in the reference's order.
struct WindowArgs {
  std::array<index_t, 2> k, s, p, d;
  WindowArgs(const py::handle& k_in, const py::handle& s_in, const py::handle& p_in, const py::handle& d_in,
             const char* op)
      : k(pair_arg(k_in, op, "kernel_size", 1)),
        s(s_in.is_none() ? k : pair_arg(s_in, op, "stride", 1)),
        p(pair_arg(p_in, op, "padding", 0)),
        d(pair_arg(d_in, op, "dilation", 1)) {
    check_pool_window(k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], op);
  }
  ConvGeometry on(const std::array<index_t, 4>& nchw, bool ceil_mode, const char* op) const {
    return pool_geometry(nchw[0], nchw[1], nchw[2], nchw[3], k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1],
                         ceil_mode, op);
  }
};

// x: a non-empty 4-D float array (dtype checked by the caller's dispatch).
std::array<index_t, 4> input_nchw(const py::handle& x_in, const char* op) {
  const py::array raw = nchw_arg(x_in, op, "x");
  check_nonempty(raw, op, "x");
  return shape4(raw);
}

// divisor_override: None (0) or a nonzero int, not a bool.
index_t divisor_arg(const py::handle& h, const char* op) {
  if (h.is_none()) return 0;
  index_t v = 0;
  if (!integer_value(h, &v) || v == 0)
    value_error(op, "divisor_override must be a nonzero int or None, got " + repr_str(h));
  return v;
}

void check_grad_shape(const py::handle& go_in, const std::array<index_t, 4>& want, const char* op) {
  py::array raw = as_ndarray(go_in, op, "grad_out");
  if (raw.ndim() != 4 || raw.shape(0) != want[0] || raw.shape(1) != want[1] || raw.shape(2) != want[2] ||
      raw.shape(3) != want[3])
    value_error(op, "grad_out must be " + fastnn::shape_str(Shape(want.begin(), want.end())) + ", got " +
                        shape_str(raw));
}

template <class T>
py::tuple max_forward_impl(const py::handle& x_in, const py::handle& k_in, const py::handle& s_in,
                           const py::handle& p_in, const py::handle& d_in, const py::handle& ceil_in) {
  const char* op = "max_pool2d_forward";
  const auto nchw = input_nchw(x_in, op);
  const WindowArgs win(k_in, s_in, p_in, d_in, op);
  const ConvGeometry g = win.on(nchw, flag_arg(ceil_in, op, "ceil_mode"), op);
  CArray<T> x = in<T>(x_in, op, "x");
  CArray<T> y = new_array<T>({g.n, g.c, g.p, g.q});
  CArray<Index> idx = new_array<Index>({g.n, g.c, g.p, g.q});
  const T* xp = x.data();
  T* yp = y.mutable_data();
  Index* ip = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_forward(xp, yp, ip, g);
  }
  return py::make_tuple(std::move(y), std::move(idx));
}

// A max pool's kept argmax (N, C, P, Q) int64 for input planes (N, C, H, W) = nchw: checked to be -1
// or in [0, H*W), with the geometry of its flat-index passes (only the sizes matter).
struct MaxIndices {
  CArray<Index> idx;
  ConvGeometry g;
};
MaxIndices max_indices_arg(const py::handle& idx_in, const std::array<index_t, 4>& nchw, const char* op) {
  py::array iraw = as_ndarray(idx_in, op, "indices");
  if (iraw.ndim() != 4 || iraw.shape(0) != nchw[0] || iraw.shape(1) != nchw[1])
    value_error(op, "indices " + shape_str(iraw) + " must be (N, C, P, Q) with (N, C) = (" + std::to_string(nchw[0]) +
                        ", " + std::to_string(nchw[1]) + ")");
  if (!iraw.dtype().equal(py::dtype::of<Index>())) type_error(op, "indices must be int64, got " + dtype_str(iraw));
  MaxIndices r{c_array<Index>(iraw, op, "indices"), ConvGeometry{}};
  ConvGeometry& g = r.g;
  g.n = nchw[0], g.c = nchw[1], g.h = nchw[2], g.w = nchw[3], g.p = iraw.shape(2), g.q = iraw.shape(3);
  g.kh = g.kw = 0;
  FASTNN_CHECK(double(g.h) * double(g.w) < 0x1p62, op, "input planes are too large");
  const Index hw = g.h * g.w;
  const Index* ip = r.idx.data();
  const index_t count = r.idx.size();
  bool in_range = true;
  {
    py::gil_scoped_release nogil;
    for (index_t i = 0; i < count; ++i) in_range &= ip[i] >= -1 && ip[i] < hw;
  }
  if (!in_range) value_error(op, "indices must be -1 or in [0, H*W) = [0, " + std::to_string(hw) + ")");
  return r;
}

template <class T>
py::array max_backward_impl(const py::handle& go_in, const py::handle& idx_in, const py::handle& shape_in) {
  const char* op = "max_pool2d_backward";
  const auto nchw = input_shape_arg(shape_in, op);
  py::array graw = as_ndarray(go_in, op, "grad_out"), iraw = as_ndarray(idx_in, op, "indices");
  const bool ok = graw.ndim() == 4 && graw.shape(0) == nchw[0] && graw.shape(1) == nchw[1] && iraw.ndim() == 4 &&
                  std::equal(graw.shape(), graw.shape() + 4, iraw.shape());
  if (!ok)
    value_error(op, "grad_out " + shape_str(graw) + " and indices " + shape_str(iraw) +
                        " must be (N, C, P, Q) with (N, C) = (" + std::to_string(nchw[0]) + ", " +
                        std::to_string(nchw[1]) + ")");
  const MaxIndices mi = max_indices_arg(idx_in, nchw, op);
  CArray<T> go = in<T>(go_in, op, "grad_out");
  const ConvGeometry& g = mi.g;
  CArray<T> dx = new_array<T>({g.n, g.c, g.h, g.w});
  const T* gp = go.data();
  const Index* ip = mi.idx.data();
  T* dp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_backward(gp, ip, dp, g);
  }
  return std::move(dx);
}

template <class T>
py::array max_gather_impl(const py::handle& x_in, const py::handle& idx_in) {
  const char* op = "max_pool2d_gather";
  const MaxIndices mi = max_indices_arg(idx_in, input_nchw(x_in, op), op);
  CArray<T> x = in<T>(x_in, op, "x");
  const ConvGeometry& g = mi.g;
  CArray<T> y = new_array<T>({g.n, g.c, g.p, g.q});
  const T* xp = x.data();
  const Index* ip = mi.idx.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_gather(xp, ip, yp, g);
  }
  return std::move(y);
}

// avg_pool2d's geometry and windows, in the reference's order of checks.
struct AvgArgs {
  ConvGeometry g;
  PoolWindows rows, cols;
  index_t divisor = 0;
  AvgArgs(const std::array<index_t, 4>& nchw, const py::handle& k_in, const py::handle& s_in, const py::handle& p_in,
          const py::handle& ceil_in, const py::handle& cip_in, const py::handle& div_in, const char* op) {
    const WindowArgs win(k_in, s_in, p_in, py::int_(1), op);
    const bool ceil_mode = flag_arg(ceil_in, op, "ceil_mode"), cip = flag_arg(cip_in, op, "count_include_pad");
    divisor = divisor_arg(div_in, op);
    g = win.on(nchw, ceil_mode, op);
    rows = avg_pool_rows(g, cip), cols = avg_pool_cols(g, cip);
  }
};

template <class T>
py::array mean_forward(const py::handle& x_in, const ConvGeometry& g, const PoolWindows& rows,
                       const PoolWindows& cols, index_t divisor, std::vector<py::ssize_t> out_shape, const char* op,
                       const ConvGeometry* fixed = nullptr) {
  CArray<T> x = in<T>(x_in, op, "x");
  CArray<T> y = new_array<T>(out_shape);
  const T* xp = x.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    window_mean_forward(xp, yp, g.n * g.c, g.h, g.w, rows, cols, divisor, fixed);
  }
  return std::move(y);
}

template <class T>
py::array mean_backward(const py::handle& go_in, const ConvGeometry& g, const PoolWindows& rows,
                        const PoolWindows& cols, index_t divisor, const char* op, const ConvGeometry* fixed = nullptr) {
  CArray<T> go = in<T>(go_in, op, "grad_out");
  CArray<T> dx = new_array<T>({g.n, g.c, g.h, g.w});
  const T* gp = go.data();
  T* dp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    window_mean_backward(gp, dp, g.n * g.c, g.h, g.w, rows, cols, divisor, fixed);
  }
  return std::move(dx);
}

ConvGeometry plane_geometry(const std::array<index_t, 4>& nchw, index_t p, index_t q, const char* op) {
  constexpr index_t kMax = index_t(1) << 31;
  if (p > kMax || q > kMax || double(nchw[0]) * double(nchw[1]) * double(p) * double(q) >= 0x1p60)
    value_error(op, "output size (" + std::to_string(p) + ", " + std::to_string(q) + ") is too large");
  ConvGeometry g;
  g.n = nchw[0], g.c = nchw[1], g.h = nchw[2], g.w = nchw[3], g.p = p, g.q = q;
  return g;
}

template <class T>
py::array avg_forward_impl(const py::handle& x_in, const py::handle& k_in, const py::handle& s_in,
                           const py::handle& p_in, const py::handle& ceil_in, const py::handle& cip_in,
                           const py::handle& div_in) {
  const char* op = "avg_pool2d_forward";
  const AvgArgs a(input_nchw(x_in, op), k_in, s_in, p_in, ceil_in, cip_in, div_in, op);
  return mean_forward<T>(x_in, a.g, a.rows, a.cols, a.divisor, {a.g.n, a.g.c, a.g.p, a.g.q}, op, &a.g);
}

template <class T>
py::array avg_backward_impl(const py::handle& go_in, const py::handle& shape_in, const py::handle& k_in,
                            const py::handle& s_in, const py::handle& p_in, const py::handle& ceil_in,
                            const py::handle& cip_in, const py::handle& div_in) {
  const char* op = "avg_pool2d_backward";
  const AvgArgs a(input_shape_arg(shape_in, op), k_in, s_in, p_in, ceil_in, cip_in, div_in, op);
  check_grad_shape(go_in, {a.g.n, a.g.c, a.g.p, a.g.q}, op);
  return mean_backward<T>(go_in, a.g, a.rows, a.cols, a.divisor, op, &a.g);
}

// output_size: an int or a pair of ints or None (None keeps the input's size on that axis).
std::array<index_t, 2> output_size_arg(const py::handle& h, const std::array<index_t, 4>& nchw, const char* op) {
  py::object sizes = py::reinterpret_borrow<py::object>(h);
  if (h.is_none()) return {nchw[2], nchw[3]};
  if (py::isinstance<py::tuple>(h) || py::isinstance<py::list>(h)) {
    const auto seq = py::reinterpret_borrow<py::sequence>(h);
    if (seq.size() != 2) value_error(op, "output_size must be an int or a pair, got " + repr_str(h));
    py::tuple t(2);
    for (size_t a = 0; a < 2; ++a) t[a] = seq[a].is_none() ? py::int_(nchw[2 + a]) : seq[a];
    sizes = t;
  }
  return pair_arg(sizes, op, "output_size", 1);
}

template <class T>
py::array adaptive_forward_impl(const py::handle& x_in, const py::handle& size_in) {
  const char* op = "adaptive_avg_pool2d_forward";
  const auto nchw = input_nchw(x_in, op);
  const auto out = output_size_arg(size_in, nchw, op);
  const ConvGeometry g = plane_geometry(nchw, out[0], out[1], op);
  return mean_forward<T>(x_in, g, PoolWindows::adaptive(g.p, g.h), PoolWindows::adaptive(g.q, g.w), 0,
                         {g.n, g.c, g.p, g.q}, op);
}

template <class T>
py::array adaptive_backward_impl(const py::handle& go_in, const py::handle& shape_in) {
  const char* op = "adaptive_avg_pool2d_backward";
  py::array raw = as_ndarray(go_in, op, "grad_out");
  if (raw.ndim() != 4) value_error(op, "grad_out must be (N, C, P, Q), got " + shape_str(raw));
  const auto nchw = input_shape_arg(shape_in, op);
  check_grad_shape(go_in, {nchw[0], nchw[1], raw.shape(2), raw.shape(3)}, op);
  check_nonempty(raw, op, "grad_out");
  const ConvGeometry g = plane_geometry(nchw, raw.shape(2), raw.shape(3), op);
  return mean_backward<T>(go_in, g, PoolWindows::adaptive(g.p, g.h), PoolWindows::adaptive(g.q, g.w), 0, op);
}

template <class T>
py::array global_forward_impl(const py::handle& x_in) {
  const char* op = "global_avg_pool2d_forward";
  const ConvGeometry g = plane_geometry(input_nchw(x_in, op), 1, 1, op);
  return mean_forward<T>(x_in, g, PoolWindows::adaptive(1, g.h), PoolWindows::adaptive(1, g.w), 0, {g.n, g.c}, op);
}

template <class T>
py::array global_backward_impl(const py::handle& go_in, const py::handle& shape_in) {
  const char* op = "global_avg_pool2d_backward";
  const auto nchw = input_shape_arg(shape_in, op);
  py::array raw = as_ndarray(go_in, op, "grad_out");
  if (raw.ndim() != 2 || raw.shape(0) != nchw[0] || raw.shape(1) != nchw[1])
    value_error(op, "grad_out must be (" + std::to_string(nchw[0]) + ", " + std::to_string(nchw[1]) + "), got " +
                        shape_str(raw));
  const ConvGeometry g = plane_geometry(nchw, 1, 1, op);
  return mean_backward<T>(go_in, g, PoolWindows::adaptive(1, g.h), PoolWindows::adaptive(1, g.w), 0, op);
}

// An output_size entry of AdaptiveAvgPool2d: a positive int, or None (0: the input's size).
index_t layer_output_size(const py::handle& h) {
  if (h.is_none()) return 0;
  index_t v = 0;
  if (!integer_value(h, &v))
    type_error("AdaptiveAvgPool2d", "output_size must be an int, None or a pair, got " + repr_str(h));
  if (v < 1) value_error("AdaptiveAvgPool2d", "output_size must be >= 1 (or None), got " + repr_str(h));
  return v;
}

template <class T>
void bind_layers_dtype(py::module_& m, const std::string& suffix) {
  py::class_<MaxPool2d<T>, Layer<T>, std::shared_ptr<MaxPool2d<T>>>(m, ("MaxPool2d_" + suffix).c_str())
      .def(py::init([](const py::handle& k, const py::handle& s, const py::handle& p, const py::handle& d,
                       const py::handle& ceil_mode) {
             const WindowArgs w(k, s, p, d, "MaxPool2d");
             return std::make_shared<MaxPool2d<T>>(w.k[0], w.k[1], w.s[0], w.s[1], w.p[0], w.p[1], w.d[0], w.d[1],
                                                   flag_arg(ceil_mode, "MaxPool2d", "ceil_mode"));
           }),
           py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("dilation") = 1,
           py::arg("ceil_mode") = false);
  py::class_<AvgPool2d<T>, Layer<T>, std::shared_ptr<AvgPool2d<T>>>(m, ("AvgPool2d_" + suffix).c_str())
      .def(py::init([](const py::handle& k, const py::handle& s, const py::handle& p, const py::handle& ceil_mode,
                       const py::handle& cip, const py::handle& divisor) {
             const char* op = "AvgPool2d";
             const WindowArgs w(k, s, p, py::int_(1), op);
             return std::make_shared<AvgPool2d<T>>(w.k[0], w.k[1], w.s[0], w.s[1], w.p[0], w.p[1],
                                                   flag_arg(ceil_mode, op, "ceil_mode"),
                                                   flag_arg(cip, op, "count_include_pad"), divisor_arg(divisor, op));
           }),
           py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
           py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
           py::arg("divisor_override") = py::none());
  py::class_<AdaptiveAvgPool2d<T>, Layer<T>, std::shared_ptr<AdaptiveAvgPool2d<T>>>(
      m, ("AdaptiveAvgPool2d_" + suffix).c_str())
      .def(py::init([](const py::handle& size) {
             index_t oh, ow;
             if (py::isinstance<py::tuple>(size) || py::isinstance<py::list>(size)) {
               const auto seq = py::reinterpret_borrow<py::sequence>(size);
               if (seq.size() != 2)
                 value_error("AdaptiveAvgPool2d", "output_size must be an int, None or a pair, got " + repr_str(size));
               oh = layer_output_size(seq[0]), ow = layer_output_size(seq[1]);
             } else {
               oh = ow = layer_output_size(size);
             }
             return std::make_shared<AdaptiveAvgPool2d<T>>(oh, ow);
           }),
           py::arg("output_size"));
  py::class_<GlobalAvgPool2d<T>, AdaptiveAvgPool2d<T>, std::shared_ptr<GlobalAvgPool2d<T>>>(
      m, ("GlobalAvgPool2d_" + suffix).c_str())
      .def(py::init<>());
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](const py::handle& x, const py::handle& kernel_size, const py::handle& stride, const py::handle& padding,
         const py::handle& dilation, const py::handle& ceil_mode) -> py::tuple {
        return dispatch_float(x, "max_pool2d_forward", "x", [&](auto tag) {
          return max_forward_impl<decltype(tag)>(x, kernel_size, stride, padding, dilation, ceil_mode);
        });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
      py::arg("dilation") = 1, py::arg("ceil_mode") = false);
  m.def(
      "max_pool2d_backward",
      [](const py::handle& grad_out, const py::handle& indices, const py::handle& input_shape) -> py::array {
        return dispatch_float(grad_out, "max_pool2d_backward", "grad_out", [&](auto tag) {
          return max_backward_impl<decltype(tag)>(grad_out, indices, input_shape);
        });
      },
      py::arg("grad_out"), py::arg("indices"), py::arg("input_shape"));
  m.def(
      "max_pool2d_gather",
      [](const py::handle& x, const py::handle& indices) -> py::array {
        return dispatch_float(x, "max_pool2d_gather", "x", [&](auto tag) {
          return max_gather_impl<decltype(tag)>(x, indices);
        });
      },
      py::arg("x"), py::arg("indices"));
  m.def(
      "avg_pool2d_forward",
      [](const py::handle& x, const py::handle& kernel_size, const py::handle& stride, const py::handle& padding,
         const py::handle& ceil_mode, const py::handle& count_include_pad,
         const py::handle& divisor_override) -> py::array {
        return dispatch_float(x, "avg_pool2d_forward", "x", [&](auto tag) {
          return avg_forward_impl<decltype(tag)>(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                                 divisor_override);
        });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
      py::arg("ceil_mode") = false, py::arg("count_include_pad") = true, py::arg("divisor_override") = py::none());
  m.def(
      "avg_pool2d_backward",
      [](const py::handle& grad_out, const py::handle& input_shape, const py::handle& kernel_size,
         const py::handle& stride, const py::handle& padding, const py::handle& ceil_mode,
         const py::handle& count_include_pad, const py::handle& divisor_override) -> py::array {
        return dispatch_float(grad_out, "avg_pool2d_backward", "grad_out", [&](auto tag) {
          return avg_backward_impl<decltype(tag)>(grad_out, input_shape, kernel_size, stride, padding, ceil_mode,
                                                  count_include_pad, divisor_override);
        });
      },
      py::arg("grad_out"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride") = py::none(),
      py::arg("padding") = 0, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
      py::arg("divisor_override") = py::none());
  m.def(
      "adaptive_avg_pool2d_forward",
      [](const py::handle& x, const py::handle& output_size) -> py::array {
        return dispatch_float(x, "adaptive_avg_pool2d_forward", "x",
                              [&](auto tag) { return adaptive_forward_impl<decltype(tag)>(x, output_size); });
      },
      py::arg("x"), py::arg("output_size"));
  m.def(
      "adaptive_avg_pool2d_backward",
      [](const py::handle& grad_out, const py::handle& input_shape) -> py::array {
        return dispatch_float(grad_out, "adaptive_avg_pool2d_backward", "grad_out",
                              [&](auto tag) { return adaptive_backward_impl<decltype(tag)>(grad_out, input_shape); });
      },
      py::arg("grad_out"), py::arg("input_shape"));
  m.def(
      "global_avg_pool2d_forward",
      [](const py::handle& x) -> py::array {
        return dispatch_float(x, "global_avg_pool2d_forward", "x",
                              [&](auto tag) { return global_forward_impl<decltype(tag)>(x); });
      },
      py::arg("x"));
  m.def(
      "global_avg_pool2d_backward",
      [](const py::handle& grad_out, const py::handle& input_shape) -> py::array {
        return dispatch_float(grad_out, "global_avg_pool2d_backward", "grad_out",
                              [&](auto tag) { return global_backward_impl<decltype(tag)>(grad_out, input_shape); });
      },
      py::arg("grad_out"), py::arg("input_shape"));
  bind_layers_dtype<float>(m, "float32");
  bind_layers_dtype<double>(m, "float64");
}

}  // namespace fastnn::bind
