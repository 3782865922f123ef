// im2col / col2im / conv2d_forward / conv2d_backward on NCHW arrays (kernels/im2col.h,
// kernels/conv.h), and the Conv2d layer (layers/conv.h). Inputs are read C-contiguous (other
// layouts are copied once); the workspaces are allocated here per call (a layer keeps its own).
// Errors match the references' messages.
#include <string>
#include <utility>

#include "bindings/arrays.h"
#include "bindings/conv_args.h"
#include "fastnn/kernels/conv.h"
#include "fastnn/kernels/im2col.h"
#include "fastnn/layers/conv.h"

namespace fastnn::bind {
namespace {

template <class T>
py::array im2col_impl(const py::handle& x_in, const py::handle& k_in, const py::handle& s_in, const py::handle& p_in,
                      const py::handle& d_in) {
  const char* op = "im2col";
  const py::array raw = nchw_arg(x_in, op, "x");
  check_nonempty(raw, op, "x");
  const ConvGeometry g = geometry_arg(shape4(raw), pair_arg(k_in, op, "kernel_size", 1), s_in, p_in, d_in, op);
  CArray<T> x = in<T>(x_in, op, "x");
  CArray<T> cols = new_array<T>({g.rows(), g.taps()});
  const T* xp = x.data();
  T* cp = cols.mutable_data();
  {
    py::gil_scoped_release nogil;
    im2col(xp, cp, g);
  }
  return std::move(cols);
}

template <class T>
py::array col2im_impl(const py::handle& cols_in, const py::handle& shape_in, const py::handle& k_in,
                      const py::handle& s_in, const py::handle& p_in, const py::handle& d_in) {
  const char* op = "col2im";
  const auto nchw = input_shape_arg(shape_in, op);
  const ConvGeometry g = geometry_arg(nchw, pair_arg(k_in, op, "kernel_size", 1), s_in, p_in, d_in, op);
  py::array raw = as_ndarray(cols_in, op, "cols");
  if (raw.ndim() != 2 || raw.shape(0) != g.rows() || raw.shape(1) != g.taps())
    value_error(op, "cols must be (N*P*Q, C*kh*kw) = (" + std::to_string(g.rows()) + ", " + std::to_string(g.taps()) +
                        "), got " + shape_str(raw));
  CArray<T> cols = in<T>(cols_in, op, "cols");
  CArray<T> x = new_array<T>({nchw[0], nchw[1], nchw[2], nchw[3]});
  const T* cp = cols.data();
  T* xp = x.mutable_data();
  {
    py::gil_scoped_release nogil;
    col2im(cp, xp, g);
  }
  return std::move(x);
}

// The checks both directions share, in the reference's order: x and weight 4-D, groups, channel
// counts, then the window (a ValueError if the kernel does not fit the padded input).
Conv2dShape conv_shape(const py::handle& x_in, const py::handle& w_in, const py::handle& s_in, const py::handle& p_in,
                       const py::handle& d_in, const py::handle& groups_in, const char* op) {
  py::array x = nchw_arg(x_in, op, "x");
  py::array w = nchw_arg(w_in, op, "weight", "(out_channels, in_channels/groups, kh, kw)");
  check_nonempty(x, op, "x");
  check_nonempty(w, op, "weight");
  const index_t groups = groups_arg(groups_in, op);
  const index_t O = w.shape(0), Cg = w.shape(1);
  if (O % groups) value_error(op, "out_channels " + std::to_string(O) + " is not divisible by groups=" + std::to_string(groups));
  if (x.shape(1) != Cg * groups)
    value_error(op, "x has " + std::to_string(x.shape(1)) + " channels, weight " + shape_str(w) + " with groups=" +
                        std::to_string(groups) + " expects " + std::to_string(Cg * groups));
  const ConvGeometry g = geometry_arg(shape4(x), {index_t(w.shape(2)), index_t(w.shape(3))}, s_in, p_in, d_in, op);
  return Conv2dShape::make(g, O, groups, op);
}

// The per-call workspaces (a pointwise convolution needs none). Not "Workspace": that would hide
// fastnn::Workspace in the binding files compiled after this one in a unity TU.
template <class T>
struct ConvBuffers {
  ConvWorkspaceSize size;
  CArray<T> cols, rows, partial;
  explicit ConvBuffers(const Conv2dShape& s) : size(conv2d_workspace_size(s)) {
    if (size.cols) cols = new_array<T>({size.cols});
    if (size.rows) rows = new_array<T>({size.rows});
    if (size.partial) partial = new_array<T>({size.partial});
  }
  ConvWorkspace<T> view() {
    ConvWorkspace<T> ws;
    if (size.cols) ws.cols = cols.mutable_data();
    if (size.rows) ws.rows = rows.mutable_data();
    if (size.partial) ws.partial = partial.mutable_data();
    return ws;
  }
};

template <class T>
py::array conv_forward_impl(const py::handle& x_in, const py::handle& w_in, const py::handle& b_in,
                            const py::handle& s_in, const py::handle& p_in, const py::handle& d_in,
                            const py::handle& groups_in) {
  const char* op = "conv2d_forward";
  const Conv2dShape s = conv_shape(x_in, w_in, s_in, p_in, d_in, groups_in, op);
  CArray<T> b;
  if (!b_in.is_none()) {
    py::array raw = as_ndarray(b_in, op, "bias");
    if (raw.ndim() != 1 || raw.shape(0) != s.out_channels)
      value_error(op, "bias must be (" + std::to_string(s.out_channels) + ",), got " + shape_str(raw));
    b = in<T>(b_in, op, "bias");
  }
  CArray<T> x = in<T>(x_in, op, "x"), w = in<T>(w_in, op, "weight");
  const ConvGeometry& g = s.geom;
  CArray<T> y = new_array<T>({g.n, s.out_channels, g.p, g.q});
  ConvBuffers<T> ws(s);
  const T *xp = x.data(), *wp = w.data(), *bp = b_in.is_none() ? nullptr : b.data();
  T* yp = y.mutable_data();
  const ConvWorkspace<T> wsv = ws.view();
  {
    py::gil_scoped_release nogil;
    conv2d_forward(xp, wp, bp, yp, s, wsv);
  }
  return std::move(y);
}

template <class T>
py::tuple conv_backward_impl(const py::handle& go_in, const py::handle& x_in, const py::handle& w_in,
                             const py::handle& s_in, const py::handle& p_in, const py::handle& d_in,
                             const py::handle& groups_in,
                             const py::handle& need_gi_in, const py::handle& need_gb_in, const py::handle& gw_out,
                             const py::handle& gb_out) {
  const char* op = "conv2d_backward";
  const Conv2dShape s = conv_shape(x_in, w_in, s_in, p_in, d_in, groups_in, op);
  const ConvGeometry& g = s.geom;
  const index_t O = s.out_channels;
  {
    py::array raw = as_ndarray(go_in, op, "grad_out");
    if (raw.ndim() != 4 || raw.shape(0) != g.n || raw.shape(1) != O || raw.shape(2) != g.p || raw.shape(3) != g.q)
      value_error(op, "grad_out must be (" + std::to_string(g.n) + ", " + std::to_string(O) + ", " +
                          std::to_string(g.p) + ", " + std::to_string(g.q) + "), got " + shape_str(raw));
  }
  const bool need_gi = flag_arg(need_gi_in, op, "need_input_grad");
  const bool need_gb = flag_arg(need_gb_in, op, "need_bias_grad");
  if (!gb_out.is_none() && !need_gb) value_error(op, "grad_bias_out is given but need_bias_grad is False");
  CArray<T> go = in<T>(go_in, op, "grad_out"), x = in<T>(x_in, op, "x"), w = in<T>(w_in, op, "weight");
  const bool acc_w = !gw_out.is_none(), acc_b = !gb_out.is_none();
  const auto wshape = std::vector<py::ssize_t>(w.shape(), w.shape() + 4);
  CArray<T> gw = acc_w ? accumulator<T>(gw_out, op, "grad_weight_out", wshape, {&go, &x, &w}) : new_array<T>(wshape);
  CArray<T> gb;
  if (need_gb) gb = acc_b ? accumulator<T>(gb_out, op, "grad_bias_out", {O}, {&go, &x, &w, &gw}) : new_array<T>({O});
  CArray<T> gi;
  if (need_gi) gi = new_array<T>({g.n, g.c, g.h, g.w});
  ConvBuffers<T> ws(s);
  const T *gop = go.data(), *xp = x.data(), *wp = w.data();
  T *gip = need_gi ? gi.mutable_data() : nullptr, *gwp = gw.mutable_data(), *gbp = need_gb ? gb.mutable_data() : nullptr;
  const ConvWorkspace<T> wsv = ws.view();
  {
    py::gil_scoped_release nogil;
    conv2d_backward(gop, xp, wp, gip, gwp, gbp, s, wsv, acc_w, acc_b);
  }
  py::object gi_obj = need_gi ? py::object(std::move(gi)) : py::object(py::none());
  py::object gb_obj = need_gb ? py::object(std::move(gb)) : py::object(py::none());
  return py::make_tuple(gi_obj, std::move(gw), gb_obj);
}

// _C.Conv2d_<dtype>(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias),
// the geometry as ints or (h, w) pairs. Needs Layer_<dtype> (bind_layers) registered first.
template <class T>
void bind_layer(py::module_& m, const std::string& suffix) {
  py::class_<Conv2d<T>, Layer<T>, std::shared_ptr<Conv2d<T>>>(m, ("Conv2d_" + suffix).c_str())
      .def(py::init([](index_t in, index_t out, const py::handle& k_in, const py::handle& s_in,
                       const py::handle& p_in, const py::handle& d_in, index_t groups, bool bias) {
             const char* op = "Conv2d";
             const auto k = pair_arg(k_in, op, "kernel_size", 1), s = pair_arg(s_in, op, "stride", 1),
                        p = pair_arg(p_in, op, "padding", 0), d = pair_arg(d_in, op, "dilation", 1);
             return std::make_shared<Conv2d<T>>(in, out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], groups, bias);
           }),
           py::arg("in_channels"), py::arg("out_channels"), py::arg("kernel_size"), py::arg("stride") = 1,
           py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("bias") = true)
      .def_property_readonly("in_channels", &Conv2d<T>::in_channels)
      .def_property_readonly("out_channels", &Conv2d<T>::out_channels)
      .def_property_readonly("groups", &Conv2d<T>::groups)
      .def_property_readonly("has_bias", &Conv2d<T>::has_bias)
      // images per eval block for an input shape (0: none), for the tests of FusedConvBatchNormPool
      .def(
          "_block_images",
          [](Conv2d<T>& c, const py::handle& in) {
            const auto nchw = input_shape_arg(in, "Conv2d._block_images");
            return c.block_images({nchw[0], nchw[1], nchw[2], nchw[3]});
          },
          py::arg("shape"));
}

}  // namespace

void bind_conv(py::module_& m) {
  bind_layer<float>(m, "float32");
  bind_layer<double>(m, "float64");
  m.def(
      "im2col",
      [](const py::handle& x, const py::handle& kernel_size, const py::handle& stride, const py::handle& padding,
         const py::handle& dilation) -> py::array {
        return dispatch_float(x, "im2col", "x", [&](auto tag) {
          return im2col_impl<decltype(tag)>(x, kernel_size, stride, padding, dilation);
        });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1);
  m.def(
      "col2im",
      [](const py::handle& cols, const py::handle& input_shape, const py::handle& kernel_size, const py::handle& stride,
         const py::handle& padding, const py::handle& dilation) -> py::array {
        return dispatch_float(cols, "col2im", "cols", [&](auto tag) {
          return col2im_impl<decltype(tag)>(cols, input_shape, kernel_size, stride, padding, dilation);
        });
      },
      py::arg("cols"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride") = 1, py::arg("padding") = 0,
      py::arg("dilation") = 1);
  m.def(
      "conv2d_forward",
      [](const py::handle& x, const py::handle& weight, const py::handle& bias, const py::handle& stride,
         const py::handle& padding, const py::handle& dilation, const py::handle& groups) -> py::array {
        return dispatch_float(x, "conv2d_forward", "x", [&](auto tag) {
          return conv_forward_impl<decltype(tag)>(x, weight, bias, stride, padding, dilation, groups);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = 1, py::arg("padding") = 0,
      py::arg("dilation") = 1, py::arg("groups") = 1);
  m.def(
      "conv2d_backward",
      [](const py::handle& grad_out, const py::handle& x, const py::handle& weight, const py::handle& stride,
         const py::handle& padding, const py::handle& dilation, const py::handle& groups,
         const py::handle& need_input_grad, const py::handle& need_bias_grad, const py::handle& grad_weight_out,
         const py::handle& grad_bias_out) -> py::tuple {
        return dispatch_float(x, "conv2d_backward", "x", [&](auto tag) {
          return conv_backward_impl<decltype(tag)>(grad_out, x, weight, stride, padding, dilation, groups,
                                                   need_input_grad, need_bias_grad, grad_weight_out, grad_bias_out);
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("stride") = 1, py::arg("padding") = 0,
      py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("need_input_grad") = true,
      py::arg("need_bias_grad") = true, py::arg("grad_weight_out") = py::none(), py::arg("grad_bias_out") = py::none());
  // conv2d's direct path (kernels/conv_direct.h): the most taps per output (C/G * kh * kw) it takes
  // and the smallest batch, so that tests reach both sides of each limit.
  m.def("_conv_direct_limits", []() {
    py::dict d;
    d["max_taps"] = conv_direct::kMaxTaps;
    d["min_images"] = conv_detail::kFusedMinImages;
    return d;
  });
}

}  // namespace fastnn::bind
