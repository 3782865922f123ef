// Conv2d: y = conv2d(x, W) + b over kernels/conv.h (NCHW, PyTorch's weight layout (O, C/G, kh, kw)).
// The kernels' scratch (conv2d_workspace_size: a function of the input shape) is kept by the layer
// and reused every step; backward recomputes the patches from the x that forward kept.
// The R-operator (layer.h): the conv is bilinear in (x, W), so with V, V_b the direction's slices
//   R{y}  = conv(R{x}, W) + conv(x, V) + V_b,
//   R{dx} = convT(R{g}, W) + convT(g, V),  R{dW} = corr(R{x}, g) + corr(x, R{g}),  R{db} = sum R{g},
// each term one call of the forward or backward kernels (no other loops). A frozen layer's
// direction is taken as 0 (H·v over the trainable parameters) and its hv slice is left alone.
#pragma once

#include <algorithm>
#include <functional>
#include <limits>
#include <memory>

#include "fastnn/kernels/blockwise.h"
#include "fastnn/kernels/conv.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class Conv2d : public Layer<T> {
 public:
  Conv2d(index_t in_channels, index_t out_channels, index_t kh, index_t kw, index_t stride_h, index_t stride_w,
         index_t pad_h, index_t pad_w, index_t dil_h, index_t dil_w, index_t groups, bool bias)
      : C_(in_channels), O_(out_channels), kh_(kh), kw_(kw), sh_(stride_h), sw_(stride_w), ph_(pad_h), pw_(pad_w),
        dil_h_(dil_h), dil_w_(dil_w), G_(groups), has_bias_(bias) {
    FASTNN_CHECK(C_ >= 1 && O_ >= 1, "Conv2d",
                 "in_channels and out_channels must be >= 1, got " << C_ << " and " << O_);
    FASTNN_CHECK(G_ >= 1, "Conv2d", "groups must be >= 1, got " << G_);
    FASTNN_CHECK(C_ % G_ == 0, "Conv2d", "in_channels " << C_ << " is not divisible by groups=" << G_);
    FASTNN_CHECK(O_ % G_ == 0, "Conv2d", "out_channels " << O_ << " is not divisible by groups=" << G_);
    FASTNN_CHECK(kh_ >= 1 && kw_ >= 1, "Conv2d", "kernel_size must be >= 1, got (" << kh_ << ", " << kw_ << ")");
    FASTNN_CHECK(sh_ >= 1 && sw_ >= 1, "Conv2d", "stride must be >= 1, got (" << sh_ << ", " << sw_ << ")");
    FASTNN_CHECK(ph_ >= 0 && pw_ >= 0, "Conv2d", "padding must be >= 0, got (" << ph_ << ", " << pw_ << ")");
    FASTNN_CHECK(dil_h_ >= 1 && dil_w_ >= 1, "Conv2d",
                 "dilation must be >= 1, got (" << dil_h_ << ", " << dil_w_ << ")");
    constexpr index_t kMax = index_t(1) << 31;  // ConvGeometry's limit, checked here once for the weight count
    FASTNN_CHECK(C_ <= kMax && O_ <= kMax && kh_ <= kMax && kw_ <= kMax, "Conv2d", "sizes must be <= 2^31");
    FASTNN_CHECK(double(O_) * double(C_ / G_) * double(kh_) * double(kw_) < 0x1p60, "Conv2d",
                 "the weight (" << O_ << ", " << C_ / G_ << ", " << kh_ << ", " << kw_ << ") is too large");
  }

  std::string kind() const override { return "Conv2d"; }
  std::vector<ParamSpec> param_specs() const override {
    std::vector<ParamSpec> p{{"weight", {O_, C_ / G_, kh_, kw_}, true}};
    if (has_bias_) p.push_back({"bias", {O_}, false});
    return p;
  }
  void bind_params(T* params, T* grads) override {
    w_ = params, gw_ = grads;
    this->params_bound = true;
    b_ = has_bias_ ? params + weight_size() : nullptr;
    gb_ = has_bias_ ? grads + weight_size() : nullptr;
  }

  // (N, O, P, Q) for (N, C, H, W); ValueError naming the layer and the shapes otherwise.
  Shape output_shape(const Shape& in) const override {
    const Conv2dShape s = make_shape(in);
    return {s.geom.n, O_, s.geom.p, s.geom.q};
  }

  // The kernels' shape for input shape `in` (validated), kept until the next call with another shape.
  const Conv2dShape& shape_for(const Shape& in) {
    if (in != shape_in_) {
      shape_ = make_shape(in);
      shape_in_ = in;
    }
    return shape_;
  }

  View<T> forward(const View<T>& x, const Context&) override { return forward_affine(x, nullptr, nullptr, false); }

  // forward with a per-channel affine y = y * scale[o] + shift[o] (both null: none) and a ReLU
  // applied in the pass that writes the output (FusedConvBatchNorm: an eval-mode BatchNorm's
  // folded affine). Its result is not what backward differentiates: run forward again first.
  View<T> forward_affine(const View<T>& x, const T* scale, const T* shift, bool relu) {
    const Conv2dShape& s = shape_for(x.shape);
    x_ = x;
    // the fused pass's output has its own buffer: the R-operator reruns the plain forward after it
    // (FusedConvBatchNorm), which must not overwrite what the next layer read
    y_ = (scale || relu ? fused_ws_ : out_ws_).get({s.geom.n, O_, s.geom.p, s.geom.q});
    conv2d_forward(x.data, w_, epilogue(scale, shift, relu), y_.data, s, workspace(s));
    return y_;
  }

  // Images per block for forward_affine_blocks on input shape `in`: as many as keep a block's output
  // within kBlockBytes (at least kFusedMinImages, at most kMaxBlockImages), by the shape alone. 0
  // when blocks don't pay: a batch of fewer than two blocks, or a conv of more than kBlockMaxTaps
  // multiply-adds an output, whose output pass is not bound by memory.
  index_t block_images(const Shape& in) {
    const Conv2dShape& s = shape_for(in);
    if (s.group_taps() > kBlockMaxTaps) return 0;
    const index_t image = O_ * s.geom.p * s.geom.q * static_cast<index_t>(sizeof(T));
    const index_t b = std::max(conv_detail::kFusedMinImages, std::min(kMaxBlockImages, kBlockBytes / image));
    return s.geom.n >= 2 * b ? b : 0;
  }

  // forward_affine's output block by block, so that it never goes to memory in full: images
  // [n0, n1) of x go through the conv and its epilogue into one block buffer (in cache), which
  // consume(n0, n1, h) then reads (FusedConvBatchNormPool: the eval-mode pool). Blocks are
  // block_images(x.shape) images, the last one taking the rest: every block is at least
  // kFusedMinImages images, so it takes the image-by-image path the whole batch takes, image for
  // image the same bits. Needs block_images(x.shape) > 0. Like forward_affine, its result is not
  // what backward differentiates: run forward again first.
  template <class F>
  void forward_affine_blocks(const View<T>& x, const T* scale, const T* shift, bool relu, F&& consume) {
    const index_t b = block_images(x.shape), n = x.shape[0];
    FASTNN_CHECK(b > 0, "Conv2d", "forward_affine_blocks needs at least two blocks of images");
    x_ = x;
    const ConvEpilogue<T> epi = epilogue(scale, shift, relu);
    const index_t last = n - (n / b - 1) * b;  // the last block's images: b .. 2b - 1
    const ConvGeometry whole = shape_for(x.shape).geom;
    const index_t image_in = whole.c * whole.h * whole.w, image_out = O_ * whole.p * whole.q;
    T* h = block_ws_.get({(2 * b - 1) * image_out}).data;
    Shape block = x.shape;
    for (index_t n0 = 0; n0 < n;) {
      const index_t n1 = n - n0 == last ? n : n0 + b;
      block[0] = n1 - n0;
      const Conv2dShape s = make_shape(block);
      conv2d_forward(x.data + n0 * image_in, w_, epi, h, s, workspace(s));
      consume(n0, n1, static_cast<const T*>(h));
      n0 = n1;
    }
  }

  // dx (unless !need_input_grad); dW and db added to the flat gradient (written while
  // overwrite_grads), or left alone when the layer is frozen.
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    View<T> dx = need_input_grad ? grad_in_.get(x_.shape) : View<T>{};
    backward_into(g, dx.data);
    return dx;
  }
  // backward with the input gradient (the forward input's shape) written to dx, none if null:
  // DenseBlock gives its layers' 1x1 convs one shared buffer instead of one each.
  void backward_into(const View<T>& g, T* dx) {
    const Conv2dShape& s = shape_for(x_.shape);
    const bool grads = this->params_trainable;
    if (!grads && !dx) return;
    const bool accumulate = !this->overwrite_grads;
    conv2d_backward(g.data, x_.data, w_, dx, grads ? gw_ : nullptr, grads ? gb_ : nullptr, s, workspace(s), accumulate,
                    accumulate);
  }

  // Whether backward_images can run on the last forward's input: the kernels' image-by-image passes
  // (conv2d_grad_images), and no bias gradient (it sums the whole gradient).
  bool takes_grad_images() {
    return conv2d_grad_images(shape_for(x_.shape)) && !(has_bias_ && this->params_trainable);
  }
  // backward_into with the upstream gradient made an image at a time by grad_image(n) (conv2d_backward's
  // grad_image): FusedConvBatchNormPool's BN input gradient, never in memory in full. Needs takes_grad_images().
  void backward_images(const std::function<const T*(index_t)>& grad_image, T* dx) {
    const Conv2dShape& s = shape_for(x_.shape);
    const bool grads = this->params_trainable;
    if (!grads && !dx) return;
    const bool accumulate = !this->overwrite_grads;
    conv2d_backward(static_cast<const T*>(nullptr), x_.data, w_, dx, grads ? gw_ : nullptr, static_cast<T*>(nullptr),
                    s, workspace(s), accumulate, accumulate, &grad_image);
  }

  bool has_rop() const override { return true; }
  void bind_direction(const T* v, T* hv) override { v_ = v, hv_ = hv; }

  View<T> rop_forward(const View<T>& rx, const Context&) override {
    const Conv2dShape& s = shape_for(x_.shape);
    check_r_input(rx);
    rx_ = rx;
    const bool dir = direction_active();
    if (!rx.data && !dir) return View<T>{nullptr, {s.geom.n, O_, s.geom.p, s.geom.q}};  // a constant of R{x} = 0
    View<T> ry = r_out_.get({s.geom.n, O_, s.geom.p, s.geom.q});
    const T* vb = dir && has_bias_ ? v_ + weight_size() : nullptr;
    if (rx.data) {
      conv2d_forward(rx.data, w_, vb, ry.data, s, workspace(s));  // conv(R{x}, W) + V_b
      if (dir) {
        View<T> t = own_scratch().r_terms.get(ry.shape);
        conv2d_forward(x_.data, v_, static_cast<const T*>(nullptr), t.data, s, workspace(s));  // + conv(x, V)
        blockwise::map_plain(ry.data, ry.size(), [](T a, T b) { return a + b; }, ry.data, t.data);
      }
    } else {
      conv2d_forward(x_.data, v_, vb, ry.data, s, workspace(s));
    }
    return ry;
  }

  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) {
      rop_backward_into(g, rg, nullptr, nullptr);
      return {};
    }
    RopGrad<T> r{grad_in_.get(x_.shape), r_grad_in_.get(x_.shape)};
    rop_backward_into(g, rg, r.grad.data, r.rgrad.data);
    return r;
  }
  // rop_backward with dx and R{dx} (the forward input's shape) written to dx, rdx (both or neither
  // null), as backward_into.
  void rop_backward_into(const View<T>& g, const View<T>& rg, T* dx, T* rdx) {
    const Conv2dShape& s = shape_for(x_.shape);
    backward_into(g, dx);  // dx, and dW, db as backward gives them
    const bool dir = direction_active();
    T* hw = dir ? hv_ : nullptr;
    T* hb = dir && has_bias_ ? hv_ + weight_size() : nullptr;
    // R{dx} = convT(R{g}, W); R{dW} += corr(x, R{g}); R{db} += sum R{g}
    if (rdx || dir) conv2d_backward(rg.data, x_.data, w_, rdx, hw, hb, s, workspace(s), true, true);
    // R{dx} += convT(g, V); R{dW} += corr(R{x}, g)
    T* hw_rx = rx_.data ? hw : nullptr;
    if (dir && (rdx || hw_rx)) {
      T* t = rdx ? own_scratch().r_terms.get(x_.shape).data : nullptr;
      conv2d_backward(g.data, rx_.data, v_, t, hw_rx, static_cast<T*>(nullptr), s, workspace(s), true, true);
      if (t) blockwise::map_plain(rdx, numel(x_.shape), [](T a, T b) { return a + b; }, rdx, t);
    }
  }

  // The kernels' scratch lives only within one forward or backward call, so convs that never run
  // at the same time (a DenseBlock's layers) can share one instead of each keeping its own.
  struct Scratch {
    Workspace<T> cols, rows, partial;
    Workspace<T> r_terms;  // the R-operator's second term (conv(x, V), convT(g, V)) before it is added
  };
  void share_scratch(std::shared_ptr<Scratch> s) { shared_ = std::move(s); }

  bool supports_grad_overwrite() const override { return true; }
  index_t in_channels() const { return C_; }
  index_t out_channels() const { return O_; }
  index_t groups() const { return G_; }
  bool has_bias() const { return has_bias_; }

 private:
  index_t weight_size() const { return O_ * (C_ / G_) * kh_ * kw_; }
  // The output pass's epilogue: the bias, then the affine and the ReLU when given.
  ConvEpilogue<T> epilogue(const T* scale, const T* shift, bool relu) const {
    ConvEpilogue<T> epi;
    epi.bias = b_, epi.scale = scale, epi.shift = shift, epi.relu = relu;
    return epi;
  }
  // forward_affine_blocks: a block's output within L2 (512 KiB a core on Zen 2) with both threads'
  // halves together. Measured on the cnn's eval pass, batch 1000, 2 threads (Zen 2): its first
  // block (1 -> 32 channels, 9 taps; 100 KB an image) 1.27x faster in blocks of 10 images (and of
  // 64), its second (32 -> 64, 288 taps, Winograd) 0.95x: only convs
  // of few taps per output take blocks.
  static constexpr index_t kBlockBytes = index_t(1) << 20;
  static constexpr index_t kBlockMaxTaps = 64;
  static constexpr index_t kMaxBlockImages = 64;

  // The direction's terms apply to a trainable layer with a bound direction.
  bool direction_active() const {
    FASTNN_CHECK(!this->params_trainable || v_, "Conv2d", "the R-operator needs a direction: call bind_direction first");
    return this->params_trainable;
  }
  // R{x} (if given) has the shape of the forward's input.
  void check_r_input(const View<T>& rx) const {
    FASTNN_CHECK(!rx.data || rx.shape == x_.shape, "Conv2d",
                 "rx must have the input's shape " << shape_str(x_.shape) << ", got " << shape_str(rx.shape));
  }

  Conv2dShape make_shape(const Shape& in) const {
    FASTNN_CHECK(in.size() == 4 && in[1] == C_, "Conv2d",
                 "expected input (N, " << C_ << ", H, W), got " << shape_str(in));
    const index_t eh = dil_h_ * (kh_ - 1) + 1, ew = dil_w_ * (kw_ - 1) + 1;  // the dilated kernel
    FASTNN_CHECK(in[2] + 2 * ph_ >= eh && in[3] + 2 * pw_ >= ew, "Conv2d",
                 "the (dilated) kernel (" << eh << ", " << ew << ") is larger than the padded input ("
                                          << in[2] + 2 * ph_ << ", " << in[3] + 2 * pw_ << ") of input "
                                          << shape_str(in) << " with padding (" << ph_ << ", " << pw_ << ")");
    const ConvGeometry g =
        ConvGeometry::make(in[0], in[1], in[2], in[3], kh_, kw_, sh_, sw_, ph_, pw_, dil_h_, dil_w_, "Conv2d");
    return Conv2dShape::make(g, O_, G_, "Conv2d");
  }

  Scratch& own_scratch() { return shared_ ? *shared_ : scratch_; }
  ConvWorkspace<T> workspace(const Conv2dShape& s) {
    const ConvWorkspaceSize n = conv2d_workspace_size(s);
    Scratch& own = own_scratch();
    ConvWorkspace<T> ws;
    if (n.cols) ws.cols = own.cols.get({n.cols}).data;
    if (n.rows) ws.rows = own.rows.get({n.rows}).data;
    if (n.partial) ws.partial = own.partial.get({n.partial}).data;
    return ws;
  }

  index_t C_, O_, kh_, kw_, sh_, sw_, ph_, pw_, dil_h_, dil_w_, G_;
  bool has_bias_;
  T *w_ = nullptr, *gw_ = nullptr, *b_ = nullptr, *gb_ = nullptr;  // parameters, their gradients
  Shape shape_in_;
  Conv2dShape shape_;
  View<T> x_, y_;
  Workspace<T> out_ws_, fused_ws_, grad_in_, block_ws_;
  const T* v_ = nullptr;  // the direction's slice (bind_direction), and the H·v accumulator's
  T* hv_ = nullptr;
  View<T> rx_;  // the last rop_forward's R{x} (data null: 0)
  Workspace<T> r_out_, r_grad_in_;
  Scratch scratch_;
  std::shared_ptr<Scratch> shared_;  // share_scratch's, else null
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Conv2d)
