// conv3x3_winograd_forward / _input_grad / _weight_grad on NCHW arrays (kernels/conv_winograd.h):
// the Winograd kernel on its own, image by image in conv.h's chunks, so that tests can hold it
// against reference/conv_winograd.py and the direct convolution at any shape conv2d would not
// route to it. Errors match the reference's messages.
#include <string>
#include <utility>

#include "bindings/arrays.h"
#include "bindings/conv_args.h"
#include "fastnn/kernels/conv.h"
#include "fastnn/kernels/conv_winograd.h"

namespace fastnn::bind {
namespace {

// y (N, O, P, Q) = the 3x3 convolution of x (N, C, H, W) with weight (O, C, 3, 3) (flip: the
// input gradient's kernel, weight (C, O, 3, 3) read rotated and transposed), padding (ph, pw).
template <class T>
py::array run(const py::handle& x_in, const py::handle& w_in, const py::handle& b_in, const py::handle& p_in, bool flip,
              const char* op) {
  py::array xr = nchw_arg(x_in, op, flip ? "grad_out" : "x");
  py::array wr = nchw_arg(w_in, op, "weight", "(O, C, 3, 3)");
  check_nonempty(xr, op, flip ? "grad_out" : "x");
  check_nonempty(wr, op, "weight");
  if (wr.shape(2) != 3 || wr.shape(3) != 3) value_error(op, "weight must be (O, C, 3, 3), got " + shape_str(wr));
  const index_t in_ch = flip ? wr.shape(0) : wr.shape(1), out_ch = flip ? wr.shape(1) : wr.shape(0);
  if (xr.shape(1) != in_ch)
    value_error(op, std::string(flip ? "grad_out" : "x") + " must be (N, " + std::to_string(in_ch) + ", H, W), got " +
                        shape_str(xr));
  const auto pad = pair_arg(p_in, op, "padding", 0);
  if (flip && std::max(pad[0], pad[1]) > 2) value_error(op, "padding must be <= 2, got " + repr_str(p_in));
  const index_t ph = flip ? 2 - pad[0] : pad[0], pw = flip ? 2 - pad[1] : pad[1];
  const index_t N = xr.shape(0), H = xr.shape(2), W = xr.shape(3), P = H + 2 * ph - 2, Q = W + 2 * pw - 2;
  if (P < 1 || Q < 1)
    value_error(op, "the 3x3 kernel is larger than the padded input (" + std::to_string(H + 2 * ph) + ", " +
                        std::to_string(W + 2 * pw) + ")");
  CArray<T> b;
  if (!b_in.is_none()) {
    py::array raw = as_ndarray(b_in, op, "bias");
    if (raw.ndim() != 1 || raw.shape(0) != out_ch)
      value_error(op, "bias must be (" + std::to_string(out_ch) + ",), got " + shape_str(raw));
    b = in<T>(b_in, op, "bias");
  }
  CArray<T> x = in<T>(x_in, op, flip ? "grad_out" : "x"), w = in<T>(w_in, op, "weight");
  CArray<T> y = new_array<T>({N, out_ch, P, Q});
  const index_t group = winograd::group_images(P, Q, out_ch);
  const index_t chunks = conv_detail::image_chunks(N), per = winograd::group_scratch_size(in_ch, out_ch, P, Q, group);
  CArray<T> u = new_array<T>({winograd::kernel_size_bound(in_ch, out_ch)}), scratch = new_array<T>({chunks * per});
  const T *xp = x.data(), *wp = w.data(), *bp = b_in.is_none() ? nullptr : b.data();
  T *yp = y.mutable_data(), *up = winograd::aligned_kernel(u.mutable_data()), *sp = scratch.mutable_data();
  {
    py::gil_scoped_release nogil;
    // flip: weight is the forward's (O = in_ch, C = out_ch, 3, 3)
    winograd::transform_weight(wp, flip ? in_ch : out_ch, flip ? out_ch : in_ch, flip, up);
    conv_detail::for_each_image_group(N, group, P * Q * in_ch * out_ch * 4, [&](index_t k, index_t, index_t n0, index_t n1) {
      winograd::conv3x3_images(xp + n0 * in_ch * H * W, n1 - n0, in_ch, H, W, ph, pw, up, out_ch,
                               yp + n0 * out_ch * P * Q, P, Q, sp + k * per, [&](index_t o, T* row, index_t len) {
                                 if (bp)
                                   for (index_t i = 0; i < len; ++i) row[i] += bp[o];
                               });
    });
  }
  return std::move(y);
}


// dW (O, C, 3, 3) of the 3x3 convolution of x (N, C, H, W) with padding (ph, pw), for its grad_out
// (N, O, P, Q): each chunk of images sums its transformed gradient, the chunks are added in order.
template <class T>
py::array run_weight_grad(const py::handle& g_in, const py::handle& x_in, const py::handle& p_in, const char* op) {
  py::array gr = nchw_arg(g_in, op, "grad_out");
  py::array xr = nchw_arg(x_in, op, "x");
  check_nonempty(gr, op, "grad_out");
  check_nonempty(xr, op, "x");
  const auto pad = pair_arg(p_in, op, "padding", 0);
  const index_t N = xr.shape(0), C = xr.shape(1), H = xr.shape(2), W = xr.shape(3);
  const index_t P = H + 2 * pad[0] - 2, Q = W + 2 * pad[1] - 2;
  if (P < 1 || Q < 1)
    value_error(op, "the 3x3 kernel is larger than the padded input (" + std::to_string(H + 2 * pad[0]) + ", " +
                        std::to_string(W + 2 * pad[1]) + ")");
  if (gr.shape(0) != N || gr.shape(2) != P || gr.shape(3) != Q)
    value_error(op, "grad_out must be (" + std::to_string(N) + ", O, " + std::to_string(P) + ", " + std::to_string(Q) +
                        "), got " + shape_str(gr));
  const index_t O = gr.shape(1);
  CArray<T> g = in<T>(g_in, op, "grad_out"), x = in<T>(x_in, op, "x");
  CArray<T> dw = new_array<T>({O, C, index_t(3), index_t(3)});
  const index_t group = winograd::group_images(winograd::Tiles(P, Q).count());
  const index_t chunks = conv_detail::image_chunks(N), per = winograd::group_scratch_size(C, O, P, Q, group);
  const index_t usize = winograd::kPoints * O * C;
  CArray<T> scratch = new_array<T>({chunks * per}), du = new_array<T>({chunks * usize});
  const T *gp = g.data(), *xp = x.data();
  T *dwp = dw.mutable_data(), *sp = scratch.mutable_data(), *dup = du.mutable_data();
  {
    py::gil_scoped_release nogil;
    conv_detail::for_each_image_group(N, group, P * Q * C * O * 4, [&](index_t k, index_t first, index_t n0, index_t n1) {
      winograd::weight_grad_images(xp + n0 * C * H * W, gp + n0 * O * P * Q, n1 - n0, C, H, W, index_t(pad[0]),
                                   index_t(pad[1]), O, P, Q, dup + k * usize, n0 > first, sp + k * per);
    });
    for (index_t k = 1; k < chunks; ++k)
      for (index_t e = 0; e < usize; ++e) dup[e] += dup[k * usize + e];
    winograd::weight_from_transform(dup, O, C, dwp, false);
  }
  return std::move(dw);
}

}  // namespace

void bind_conv_winograd(py::module_& m) {
  m.def(
      "conv3x3_winograd_forward",
      [](const py::handle& x, const py::handle& weight, const py::handle& bias, const py::handle& padding) -> py::array {
        return dispatch_float(x, "conv3x3_winograd_forward", "x", [&](auto tag) {
          return run<decltype(tag)>(x, weight, bias, padding, false, "conv3x3_winograd_forward");
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("padding") = 1);
  m.def(
      "conv3x3_winograd_input_grad",
      [](const py::handle& grad_out, const py::handle& weight, const py::handle& padding) -> py::array {
        return dispatch_float(grad_out, "conv3x3_winograd_input_grad", "grad_out", [&](auto tag) {
          return run<decltype(tag)>(grad_out, weight, py::none(), padding, true, "conv3x3_winograd_input_grad");
        });
      },
      py::arg("grad_out"), py::arg("weight"), py::arg("padding") = 1);
  m.def(
      "conv3x3_winograd_weight_grad",
      [](const py::handle& grad_out, const py::handle& x, const py::handle& padding) -> py::array {
        return dispatch_float(x, "conv3x3_winograd_weight_grad", "x", [&](auto tag) {
          return run_weight_grad<decltype(tag)>(grad_out, x, padding, "conv3x3_winograd_weight_grad");
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("padding") = 1);
}

}  // namespace fastnn::bind
