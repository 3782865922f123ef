// Linear (fully connected) layer, PyTorch layout: y = act(x W^T + b), x (N, in), W (out, in), b (out).
// Forward: one GEMM, then bias + activation fused into one pass over each thread's block of y
// while it is still in cache. Backward: g = grad_y * act'(y) (from the saved output, with the bias
// sums in the same pass), then grad_x = g W and grad_W = g^T x, optionally accumulated (+=).
// The GEMMs run on gemm.h's tiles (shape-only, so results do not depend on the thread count).
#pragma once

#include <algorithm>
#include <cstring>
#include <string>

#include "fastnn/common.h"
#include "fastnn/kernels/activations.h"
#include "fastnn/kernels/gemm.h"
#include "fastnn/kernels/linear_narrow.h"

namespace fastnn {

// Activations fused into the linear layer.
enum class Activation { none, relu, leaky_relu, sigmoid, tanh };

inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::none: return "none";
    case Activation::relu: return "relu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
  }
  return "?";
}

// The accepted names, for error messages.
inline const char* activation_names() { return "'none', 'relu', 'leaky_relu', 'sigmoid', 'tanh'"; }

// Parses a name ("relu", ...); false if unknown.
inline bool parse_activation(const std::string& name, Activation* out) {
  for (Activation a : {Activation::none, Activation::relu, Activation::leaky_relu, Activation::sigmoid, Activation::tanh})
    if (name == activation_name(a)) return *out = a, true;
  return false;
}

namespace linear_detail {

// v[j] = act(v[j] + b[j]) (b may be null) over one contiguous range, in place, while the range
// is in L1: the bias add, then the activation's serial core from activations.h.
template <class T>
inline void bias_activation(T* v, const T* b, index_t len, Activation act, T slope) {
  if (b) ArrMap<T>(v, len) += CArrMap<T>(b, len);
  switch (act) {
    case Activation::none: break;
    case Activation::relu: serial::relu_forward(v, v, len); break;
    case Activation::leaky_relu: serial::leaky_relu_forward(v, v, len, slope); break;
    case Activation::sigmoid: serial::sigmoid_forward(v, v, len); break;
    case Activation::tanh: serial::tanh_forward(v, v, len); break;
  }
}

// Derivatives from the output, applied elementwise inside the pass that also sums the bias
// gradient (one read of grad_out), which is why they are not the activations.h cores.
// The derivative of each activation written in terms of its output y = act(z).
template <class T> struct DerivNone    { static T d(T, T) { return T(1); } };
template <class T> struct DerivRelu    { static T d(T y, T) { return y > T(0) ? T(1) : T(0); } };
template <class T> struct DerivLeaky   { static T d(T y, T s) { return y > T(0) ? T(1) : s; } };  // needs s > 0
template <class T> struct DerivSigmoid { static T d(T y, T) { return y * (T(1) - y); } };
template <class T> struct DerivTanh    { static T d(T y, T) { return T(1) - y * y; } };

template <class T, class F>
inline void with_derivative(Activation act, F&& f) {
  switch (act) {
    case Activation::none: return f(DerivNone<T>{});
    case Activation::relu: return f(DerivRelu<T>{});
    case Activation::leaky_relu: return f(DerivLeaky<T>{});
    case Activation::sigmoid: return f(DerivSigmoid<T>{});
    case Activation::tanh: return f(DerivTanh<T>{});
  }
}

// Scalar operations per element of the fused passes (for parallel_for's threshold).
inline index_t activation_cost(Activation act) {
  return act == Activation::sigmoid || act == Activation::tanh ? 16 : 1;
}

// Columns per tile of the backward elementwise pass: every column is summed over all rows by one
// thread in row order, so grad_bias does not depend on the thread count.
constexpr index_t kBiasTile = 64;

// Pointers to the rows of a row-major matrix view (inner stride 1), for the narrow kernels.
template <class XM>
std::vector<const typename XM::Scalar*> row_pointers(const XM& x) {
  std::vector<const typename XM::Scalar*> rows(static_cast<size_t>(x.rows()));
  for (index_t r = 0; r < x.rows(); ++r) rows[r] = x.data() + r * x.outerStride();
  return rows;
}

// Whether x (N, in) can be read row by row: row-major with unit inner stride.
template <class XM>
constexpr bool rows_addressable() {
  return (XM::Flags & Eigen::RowMajorBit) && XM::InnerStrideAtCompileTime == 1;
}

}  // namespace linear_detail

// y = act(rows W^T + b) for a batch given as row pointers (linear_narrow.h); w (out, in) with
// narrow_linear_fits<T>(out).
template <class T, class WM>
void linear_forward_rows(const T* const* rows, index_t n, const Eigen::MatrixBase<WM>& w, const T* bias, T* y,
                         Activation act = Activation::none, T slope = T(0.01)) {
  const index_t out = w.rows();
  narrow_linear_forward(rows, n, w, y, [&](T* row) { linear_detail::bias_activation(row, bias, out, act, slope); });
}

// ---- forward -------------------------------------------------------------------------------

// y = act(x W^T + b) for any Eigen matrix views x (N, in) and w (out, in) (row- or column-major);
// bias (out) may be null; y is C-contiguous (N, out) and must not alias x or w.
// slope is leaky_relu's negative slope.
//
// Threads take gemm.h's tiles of y, each computing its tile's product and then the fused bias +
// activation on it while it is still in cache.
template <class XM, class WM, class T>
void linear_forward(const Eigen::MatrixBase<XM>& x, const Eigen::MatrixBase<WM>& w, const T* bias, T* y,
                    Activation act = Activation::none, T slope = T(0.01)) {
  using namespace linear_detail;
  const index_t n = x.rows(), out = w.rows();
  if constexpr (rows_addressable<XM>()) {
    if (narrow_linear_fits<T>(out)) {
      const auto rows = row_pointers(x.derived());
      return linear_forward_rows(rows.data(), n, w, bias, y, act, slope);
    }
  }
  MatMap<T> ym(y, n, out, Eigen::OuterStride<>(out));
  gemm(x.derived(), w.derived().transpose(), ym, false, [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    if (!bias && act == Activation::none) return;  // y[r0:r1, c0:c1] = act(that tile + b[c0:c1])
    for (index_t i = r0; i < r1; ++i) bias_activation(y + i * out + c0, bias ? bias + c0 : bias, c1 - c0, act, slope);
  });
}

// Raw-pointer form, all C-contiguous: x (n, in), w (out, in), bias (out) or null, y (n, out).
template <class T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, index_t n, index_t in, index_t out,
                    Activation act = Activation::none, T slope = T(0.01)) {
  linear_forward(CMatMap<T>(x, n, in, Eigen::OuterStride<>(in)), CMatMap<T>(w, out, in, Eigen::OuterStride<>(in)),
                 bias, y, act, slope);
}

// ---- backward ------------------------------------------------------------------------------

// g = grad_out * act'(y) into `g` (skipped when act is none: g is grad_out itself) and, if
// grad_bias is given, grad_bias (+)= column sums of g, in one pass. All (n, out) C-contiguous.
template <class T>
void linear_backward_elementwise(const T* grad_out, const T* y, T* g, T* grad_bias, index_t n, index_t out,
                                 Activation act, T slope, bool accumulate) {
  using namespace linear_detail;
  using namespace gemm_detail;
  const bool write_g = act != Activation::none;
  if (!write_g && !grad_bias) return;
  const index_t tiles = (out + kBiasTile - 1) / kBiasTile;
  with_derivative<T>(act, [&](auto deriv) {
    using D = decltype(deriv);
    parallel_for(tiles, n * kBiasTile * activation_cost(act), [&](index_t t0, index_t t1) {
      for (index_t t = t0; t < t1; ++t) {
        const index_t j0 = t * kBiasTile, w = std::min(kBiasTile, out - j0);
        T sum[kBiasTile] = {};
        for (index_t i = 0; i < n; ++i) {
          const T* go = grad_out + i * out + j0;
          if (write_g) {
            const T* yy = y + i * out + j0;
            T* gg = g + i * out + j0;
            for (index_t j = 0; j < w; ++j) {
              const T v = go[j] * D::d(yy[j], slope);
              gg[j] = v;
              sum[j] += v;
            }
          } else {
            for (index_t j = 0; j < w; ++j) sum[j] += go[j];
          }
        }
        if (grad_bias) {
          T* gb = grad_bias + j0;
          if (accumulate) {
            for (index_t j = 0; j < w; ++j) gb[j] += sum[j];
          } else {
            std::memcpy(gb, sum, static_cast<size_t>(w) * sizeof(T));
          }
        }
      }
    });
  });
}

// Backward of linear_forward, given the upstream gradient grad_out (n, out) and, unless act is
// none, the forward output y (n, out), both C-contiguous; x (n, in) and w (out, in) any Eigen views.
//   g = grad_out * act'(y);  grad_input = g W  (n, in);  grad_weight = g^T x  (out, in);
//   grad_bias = sum_rows g  (out).
// Null outputs are skipped. With `accumulate`, grad_weight and grad_bias are added to (+=, the
// layers' contract) instead of overwritten; grad_input is always overwritten. `scratch` holds g
// (n * out elements; may be grad_out itself when the caller no longer needs it; unused when act
// is none). leaky_relu needs slope > 0 (the sign of y must tell the side of zero).
template <class XM, class WM, class T>
void linear_backward(const T* grad_out, const Eigen::MatrixBase<XM>& x, const Eigen::MatrixBase<WM>& w, const T* y,
                     T* grad_input, T* grad_weight, T* grad_bias, T* scratch, Activation act = Activation::none,
                     T slope = T(0.01), bool accumulate = false) {
  const index_t n = x.rows(), in = x.cols(), out = w.rows();
  FASTNN_CHECK(act == Activation::none || (y && scratch), "linear_backward",
               "y and scratch are required for activation " << activation_name(act));
  FASTNN_CHECK(act != Activation::leaky_relu || slope > T(0), "linear_backward",
               "leaky_relu backward needs negative_slope > 0, got " << slope);
  const T* g = act == Activation::none ? grad_out : scratch;
  linear_backward_elementwise(grad_out, y, scratch, grad_bias, n, out, act, slope, accumulate);
  CMatMap<T> gm(g, n, out, Eigen::OuterStride<>(out));
  // grad_input[r0:r1, c0:c1] = g[r0:r1] W[:, c0:c1]
  auto input_block = [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    MatMap<T> gi(grad_input + r0 * in + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(in));
    gemm_detail::gemm_tile(gm.middleRows(r0, r1 - r0), w.derived().middleCols(c0, c1 - c0), gi, false);
  };
  // grad_weight[r0:r1, c0:c1] (+)= g[:, r0:r1]^T x[:, c0:c1]; `+=` is the GEMM's own C += A B, free.
  auto weight_block = [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    MatMap<T> gw(grad_weight + r0 * in + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(in));
    gemm_detail::gemm_tile(gm.middleCols(r0, r1 - r0).transpose(), x.derived().middleCols(c0, c1 - c0), gw,
                           accumulate);
  };
  if (!grad_input && !grad_weight) return;
  if constexpr (linear_detail::rows_addressable<XM>()) {
    // few outputs: the narrow kernel (linear_narrow.h) for grad_weight; grad_input takes this path
    // without it too (a frozen layer), so that its bits do not depend on whether grad_weight is wanted
    if (narrow_linear_fits<T>(out)) {
      if (grad_input) {  // g W: a plain product
        MatMap<T> gi(grad_input, n, in, Eigen::OuterStride<>(in));
        gemm(gm, w.derived(), gi);
      }
      if (grad_weight) {
        const auto rows = linear_detail::row_pointers(x.derived());
        narrow_linear_weight_grad(rows.data(), n, g, out, in, grad_weight, accumulate);
      }
      return;
    }
  }
  // Both products' tiles in one parallel region (no barrier between them: they only read g, W and
  // x). Measured: splitting each product beats running the two whole products side by side on
  // two threads, which contend for the shared cache.
  using gemm_detail::gemm_tiling;
  gemm_detail::run_tiles(grad_input ? gemm_tiling<T>(n, in, out) : gemm_detail::Tiling{}, input_block,
                         grad_weight ? gemm_tiling<T>(out, in, n) : gemm_detail::Tiling{}, weight_block);
}

// Raw-pointer form, all C-contiguous: x (n, in), w (out, in).
template <class T>
void linear_backward(const T* grad_out, const T* x, const T* w, const T* y, T* grad_input, T* grad_weight,
                     T* grad_bias, T* scratch, index_t n, index_t in, index_t out,
                     Activation act = Activation::none, T slope = T(0.01), bool accumulate = false) {
  linear_backward(grad_out, CMatMap<T>(x, n, in, Eigen::OuterStride<>(in)),
                  CMatMap<T>(w, out, in, Eigen::OuterStride<>(in)), y, grad_input, grad_weight, grad_bias, scratch,
                  act, slope, accumulate);
}

}  // namespace fastnn

namespace fastnn {

// Backward of linear_forward_rows (the input given as row pointers; narrow_linear_fits<T>(out)):
// the same outputs and contract as linear_backward. w (out, in) C-contiguous.
template <class T>
void linear_backward_rows(const T* grad_out, const T* const* rows, const T* w, const T* y, T* grad_input,
                          T* grad_weight, T* grad_bias, T* scratch, index_t n, index_t in, index_t out,
                          Activation act = Activation::none, T slope = T(0.01), bool accumulate = false) {
  const T* g = act == Activation::none ? grad_out : scratch;
  linear_backward_elementwise(grad_out, y, scratch, grad_bias, n, out, act, slope, accumulate);
  if (grad_input) {  // g W
    MatMap<T> gi(grad_input, n, in, Eigen::OuterStride<>(in));
    gemm(CMatMap<T>(g, n, out, Eigen::OuterStride<>(out)), CMatMap<T>(w, out, in, Eigen::OuterStride<>(in)), gi);
  }
  if (grad_weight) narrow_linear_weight_grad(rows, n, g, out, in, grad_weight, accumulate);
}

}  // namespace fastnn
