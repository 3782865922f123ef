// A Conv2d followed by a BatchNorm2d (and a ReLU, and the Dropout after it), run as one layer.
// When the BatchNorm runs in eval mode (known only at forward time: its own mode or the caller's)
// with running statistics, its folded affine y = scale * conv + shift and the ReLU are applied in
// the pass that writes the conv's output (kernels/conv.h ConvEpilogue): one pass over the output
// instead of three. When it trains, the conv runs, then the BatchNorm as Sequential would run it
// (with ReLU and Dropout, FusedBatchNormActivation). It owns nothing: parameters, statistics and
// buffers stay the layers'. backward after an eval forward first reruns the layers' own forward
// (the fused pass keeps neither the conv's output nor BN's state), so the gradients are exactly
// theirs, at the price of one more forward only where someone differentiates an eval model.
// The R-operator composes the layers' own (the conv's, then the BatchNorm's with its ReLU and
// Dropout), after rerunning their forward if the last one was folded, as backward does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/batchnorm_activation.h"
#include "fastnn/layers/conv.h"
#include "fastnn/layers/dropout.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class FusedConvBatchNorm : public Layer<T> {
 public:
  // relu: a ReLU follows the BatchNorm; dropout (may be null, only with relu) follows the ReLU.
  FusedConvBatchNorm(std::shared_ptr<Conv2d<T>> conv, std::shared_ptr<BatchNorm<T>> bn, bool relu,
                     std::shared_ptr<Dropout<T>> dropout)
      : conv_(std::move(conv)), bn_(std::move(bn)), relu_(relu) {
    if (relu_) bn_act_ = std::make_shared<FusedBatchNormActivation<T>>(bn_, std::move(dropout));
  }

  std::string kind() const override { return "Conv2d+" + (relu_ ? bn_act_->kind() : bn_->kind()); }
  Shape output_shape(const Shape& in) const override { return bn_->output_shape(conv_->output_shape(in)); }
  bool trains_params() const override { return conv_->trains_params() || bn_->trains_params(); }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    // a BatchNorm collecting its input (recompute_bn_statistics) must see it: the separate layers
    folded_ = !bn_->training_in(ctx) && bn_->track_running_stats() && !bn_->collecting();
    if (!folded_) return after_conv(conv_->forward(x, ctx), ctx);
    output_shape(x.shape);  // the BatchNorm's channels are the conv's
    const index_t C = bn_->num_features();
    scale_.resize(C), shift_.resize(C);
    bn_->eval_affine(scale_.data(), shift_.data());
    x_ = x, ctx_ = ctx;
    return conv_->forward_affine(x, scale_.data(), shift_.data(), relu_);
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (folded_) {  // the layers' own forward, for what their backward reads
      after_conv(conv_->forward(x_, ctx_), ctx_);
      folded_ = false;
    }
    const View<T> dh = relu_ ? bn_act_->backward(g, true) : bn_->backward(g, true);
    return conv_->backward(dh, need_input_grad);
  }

  bool has_rop() const override { return conv_->has_rop() && after_conv_layer().has_rop(); }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    if (folded_) {
      after_conv(conv_->forward(x_, ctx_), ctx_);
      folded_ = false;
    }
    return after_conv_layer().rop_forward(conv_->rop_forward(rx, ctx), ctx);
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    const RopGrad<T> dh = after_conv_layer().rop_backward(g, rg, true);
    return conv_->rop_backward(dh.grad, dh.rgrad, need_input_grad);
  }

 private:
  Layer<T>& after_conv_layer() const {
    if (relu_) return *bn_act_;
    return *bn_;
  }
  View<T> after_conv(const View<T>& h, const Context& ctx) {
    return relu_ ? bn_act_->forward(h, ctx) : bn_->forward(h, ctx);
  }

  std::shared_ptr<Conv2d<T>> conv_;
  std::shared_ptr<BatchNorm<T>> bn_;
  bool relu_;
  std::shared_ptr<FusedBatchNormActivation<T>> bn_act_;  // with relu_: the BatchNorm + ReLU (+ Dropout)
  bool folded_ = false;  // the last forward ran the folded pass
  View<T> x_;
  Context ctx_;
  std::vector<T> scale_, shift_;
};

}  // namespace fastnn
