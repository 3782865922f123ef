// Pooling layers over NCHW feature maps (kernels/pool.h): MaxPool2d (keeps the argmax of each
// window for backward, as int32 plane offsets), AvgPool2d, AdaptiveAvgPool2d, and
// GlobalAvgPool2d ((N, C, H, W) -> (N, C): adaptive (1, 1) pooling and the flatten after it).
// No parameters; the window geometry is validated at construction and against each input shape.
// The R-operator: each pool is linear in its input once MaxPool2d's argmax is fixed (which the
// direction does not change), so R{y} = pool(R{x}) (the kept argmax's gather for MaxPool2d) and
// R{dx} = poolᵀ(R{g}), by the same kernels as forward and backward.
#pragma once

#include <cstdint>
#include <limits>

#include "fastnn/kernels/pool.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

namespace pool_detail {

inline void check_nchw(const Shape& in, const std::string& kind) {
  FASTNN_CHECK(in.size() == 4, kind, "expected input (N, C, H, W), got " << shape_str(in));
}

// R{x} (if given: data null means 0) has the shape of the last forward's input. An R{x} of 0
// gives R{y} = 0, returned as a view without data (layer.h's convention for layers without parameters).
template <class T>
void check_r_input(const View<T>& rx, const Shape& in, const std::string& kind) {
  FASTNN_CHECK(!rx.data || rx.shape == in, kind,
               "rx must have the input's shape " << shape_str(in) << ", got " << shape_str(rx.shape));
}

}  // namespace pool_detail

// The window of MaxPool2d / AvgPool2d and the geometry it has on an input shape.
struct PoolWindow {
  index_t kh, kw, sh, sw, ph, pw, dh, dw;
  bool ceil_mode;

  ConvGeometry on(const Shape& in, const std::string& kind) const {
    pool_detail::check_nchw(in, kind);
    return pool_geometry(in[0], in[1], in[2], in[3], kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, kind.c_str());
  }
};

template <class T>
class MaxPool2d : public Layer<T> {
 public:
  MaxPool2d(index_t kh, index_t kw, index_t sh, index_t sw, index_t ph, index_t pw, index_t dh, index_t dw,
            bool ceil_mode)
      : win_{kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode} {
    check_pool_window(kh, kw, sh, sw, ph, pw, dh, dw, "MaxPool2d");
  }
  std::string kind() const override { return "MaxPool2d"; }
  const PoolWindow& window() const { return win_; }

  Shape output_shape(const Shape& in) const override {
    const ConvGeometry g = win_.on(in, kind());
    return {g.n, g.c, g.p, g.q};
  }

  View<T> forward(const View<T>& x, const Context&) override {
    g_ = win_.on(x.shape, kind());
    FASTNN_CHECK(g_.h * g_.w <= std::numeric_limits<std::int32_t>::max(), kind(),
                 "input planes of " << g_.h << " x " << g_.w << " are too large");
    in_shape_ = x.shape;
    View<T> y = out_.get({g_.n, g_.c, g_.p, g_.q});
    argmax_.resize(static_cast<size_t>(y.size()));
    max_pool2d_forward(x.data, y.data, argmax_.data(), g_);
    return y;
  }
  // Whether its windows on inputs of shape `in` are the 2x2 tiling that a producer can pool in
  // its own output pass (kernels/pool.h is_even_2x2).
  bool tiles_2x2(const Shape& in) const { return pool_detail::is_even_2x2(win_.on(in, kind())); }
  // forward for an input of shape `in` that is never stored: produce(geometry, y, argmax) writes
  // the pooled values and their argmax (BatchNorm2d -> ReLU's output pass, FusedConvBatchNormPool).
  // backward and the R-operator then run as after forward.
  template <class F>
  View<T> forward_produced(const Shape& in, F&& produce) {
    g_ = win_.on(in, kind());
    FASTNN_CHECK(g_.h * g_.w <= std::numeric_limits<std::int32_t>::max(), kind(),
                 "input planes of " << g_.h << " x " << g_.w << " are too large");
    in_shape_ = in;
    View<T> y = out_.get({g_.n, g_.c, g_.p, g_.q});
    argmax_.resize(static_cast<size_t>(y.size()));
    produce(g_, y.data, argmax_.data());
    return y;
  }
  // forward_produced from an input made a block of images at a time: run_blocks(consume) calls
  // consume(n0, n1, h) with images [n0, n1) of the input at h (Conv2d::forward_affine_blocks), and
  // each block is pooled while it is in cache (the eval-mode conv -> ReLU -> pool layers).
  template <class F>
  View<T> forward_blocks(const Shape& in, F&& run_blocks) {
    return forward_produced(in, [&](const ConvGeometry& g, T* y, std::int32_t* argmax) {
      const index_t image = g.c * g.p * g.q;
      run_blocks([&](index_t n0, index_t n1, const T* h) {
        ConvGeometry block = g;
        block.n = n1 - n0;
        max_pool2d_forward(h, y + n0 * image, argmax + n0 * image, block);
      });
    });
  }
  // The last forward's geometry and argmax (the fused backward of BatchNorm2d -> ReLU -> this pool).
  const ConvGeometry& geometry() const { return g_; }
  const std::int32_t* argmax() const { return argmax_.data(); }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(in_shape_);
    max_pool2d_backward(g.data, argmax_.data(), dx.data, g_);
    return dx;
  }

  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    pool_detail::check_r_input(rx, in_shape_, kind());
    if (!rx.data) return View<T>{nullptr, {g_.n, g_.c, g_.p, g_.q}};  // R{y} = 0
    View<T> ry = r_out_.get({g_.n, g_.c, g_.p, g_.q});
    max_pool2d_gather(rx.data, argmax_.data(), ry.data, g_);
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> rdx = r_grad_in_.get(in_shape_);
    max_pool2d_backward(rg.data, argmax_.data(), rdx.data, g_);
    return {backward(g, true), rdx};
  }

 private:
  PoolWindow win_;
  ConvGeometry g_;
  Shape in_shape_;
  std::vector<std::int32_t> argmax_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

// Average pooling over fixed (AvgPool2d) or adaptive windows: what differs is how the windows of
// each axis are found for an input shape.
template <class T>
class WindowMeanLayer : public Layer<T> {
 public:
  View<T> forward(const View<T>& x, const Context&) override {
    const Shape out = this->output_shape(x.shape);
    if (x.shape != in_shape_) {  // the windows depend on the input's size only
      make_windows(x.shape, &rows_, &cols_);
      in_shape_ = x.shape;
    }
    View<T> y = out_.get(out);
    window_mean_forward(x.data, y.data, x.shape[0] * x.shape[1], x.shape[2], x.shape[3], rows_, cols_,
                        divisor_override_, fixed_);
    return y;
  }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(in_shape_);
    window_mean_backward(g.data, dx.data, in_shape_[0] * in_shape_[1], in_shape_[2], in_shape_[3], rows_, cols_,
                         divisor_override_, fixed_);
    return dx;
  }

  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    pool_detail::check_r_input(rx, in_shape_, this->kind());
    if (!rx.data) return View<T>{nullptr, this->output_shape(in_shape_)};  // R{y} = 0
    View<T> ry = r_out_.get(this->output_shape(in_shape_));
    window_mean_forward(rx.data, ry.data, in_shape_[0] * in_shape_[1], in_shape_[2], in_shape_[3], rows_, cols_,
                        divisor_override_, fixed_);
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> rdx = r_grad_in_.get(in_shape_);
    window_mean_backward(rg.data, rdx.data, in_shape_[0] * in_shape_[1], in_shape_[2], in_shape_[3], rows_, cols_,
                         divisor_override_, fixed_);
    return {backward(g, true), rdx};
  }

 protected:
  virtual void make_windows(const Shape& in, PoolWindows* rows, PoolWindows* cols) = 0;
  index_t divisor_override_ = 0;
  const ConvGeometry* fixed_ = nullptr;  // avg_pool2d's geometry (window_mean_forward), set by make_windows

 private:
  Shape in_shape_;
  PoolWindows rows_, cols_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

template <class T>
class AvgPool2d : public WindowMeanLayer<T> {
 public:
  // divisor_override: 0 for none.
  AvgPool2d(index_t kh, index_t kw, index_t sh, index_t sw, index_t ph, index_t pw, bool ceil_mode,
            bool count_include_pad, index_t divisor_override)
      : win_{kh, kw, sh, sw, ph, pw, 1, 1, ceil_mode}, count_include_pad_(count_include_pad) {
    check_pool_window(kh, kw, sh, sw, ph, pw, 1, 1, "AvgPool2d");
    this->divisor_override_ = divisor_override;
  }
  std::string kind() const override { return "AvgPool2d"; }

  Shape output_shape(const Shape& in) const override {
    const ConvGeometry g = win_.on(in, kind());
    return {g.n, g.c, g.p, g.q};
  }

 protected:
  void make_windows(const Shape& in, PoolWindows* rows, PoolWindows* cols) override {
    g_ = win_.on(in, kind());
    *rows = avg_pool_rows(g_, count_include_pad_), *cols = avg_pool_cols(g_, count_include_pad_);
    this->fixed_ = &g_;
  }

 private:
  PoolWindow win_;
  ConvGeometry g_;
  bool count_include_pad_;
};

// output size (P, Q); 0 on an axis keeps the input's size there (PyTorch's None).
template <class T>
class AdaptiveAvgPool2d : public WindowMeanLayer<T> {
 public:
  AdaptiveAvgPool2d(index_t out_h, index_t out_w) : oh_(out_h), ow_(out_w) {
    FASTNN_CHECK(out_h >= 0 && out_w >= 0 && out_h <= (index_t(1) << 31) && out_w <= (index_t(1) << 31),
                 "AdaptiveAvgPool2d",
                 "output_size must be in [1, 2^31] (or None), got (" << out_h << ", " << out_w << ")");
  }
  std::string kind() const override { return "AdaptiveAvgPool2d"; }

  Shape output_shape(const Shape& in) const override {
    pool_detail::check_nchw(in, kind());
    return {in[0], in[1], oh_ ? oh_ : in[2], ow_ ? ow_ : in[3]};
  }

 protected:
  void make_windows(const Shape& in, PoolWindows* rows, PoolWindows* cols) override {
    *rows = PoolWindows::adaptive(oh_ ? oh_ : in[2], in[2]), *cols = PoolWindows::adaptive(ow_ ? ow_ : in[3], in[3]);
  }

 private:
  index_t oh_, ow_;
};

// Global average pooling: y[n, c] = mean of x[n, c] over (H, W); the output is (N, C).
template <class T>
class GlobalAvgPool2d : public AdaptiveAvgPool2d<T> {
 public:
  GlobalAvgPool2d() : AdaptiveAvgPool2d<T>(1, 1) {}
  std::string kind() const override { return "GlobalAvgPool2d"; }
  Shape output_shape(const Shape& in) const override {
    pool_detail::check_nchw(in, kind());
    return {in[0], in[1]};
  }
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::MaxPool2d)
FASTNN_COMPILED_ONCE(fastnn::WindowMeanLayer)
FASTNN_COMPILED_ONCE(fastnn::AvgPool2d)
FASTNN_COMPILED_ONCE(fastnn::AdaptiveAvgPool2d)
FASTNN_COMPILED_ONCE(fastnn::GlobalAvgPool2d)
