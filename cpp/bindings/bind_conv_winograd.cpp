// conv3x3_winograd_forward / conv3x3_winograd_input_grad on NCHW arrays (kernels/conv_winograd.h):
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
  const index_t chunks = conv_detail::image_chunks(N), per = winograd::image_scratch_size(in_ch, out_ch, P, Q);
  CArray<T> u = new_array<T>({winograd::kPoints * in_ch * out_ch}), scratch = new_array<T>({chunks * per});
  const T *xp = x.data(), *wp = w.data(), *bp = b_in.is_none() ? nullptr : b.data();
  T *yp = y.mutable_data(), *up = u.mutable_data(), *sp = scratch.mutable_data();
  {
    py::gil_scoped_release nogil;
    // flip: weight is the forward's (O = in_ch, C = out_ch, 3, 3)
    winograd::transform_weight(wp, flip ? in_ch : out_ch, flip ? out_ch : in_ch, flip, up);
    conv_detail::for_each_image(N, P * Q * in_ch * out_ch * 4, [&](index_t k, index_t, index_t n) {
      winograd::conv3x3_image(xp + n * in_ch * H * W, in_ch, H, W, ph, pw, up, out_ch, yp + n * out_ch * P * Q, P, Q,
                              sp + k * per, [&](index_t o, T* row, index_t len) {
                                if (bp)
                                  for (index_t i = 0; i < len; ++i) row[i] += bp[o];
                              });
    });
  }
  return std::move(y);
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
}

}  // namespace fastnn::bind
