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
#include "fastnn/layers/pool.h"

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

  View<T> forward(const View<T>& x, const Context& ctx) override {
    folded_ = folds(ctx);
    if (!folded_) return after_conv(conv_->forward(x, ctx), ctx);
    fold(x, ctx);
    return conv_->forward_affine(x, scale_.data(), shift_.data(), relu_);
  }

  // Whether forward runs the folded pass: an eval-mode BatchNorm with running statistics (one
  // collecting its input, recompute_bn_statistics, must see it: the separate layers).
  bool folds(const Context& ctx) const {
    return !bn_->training_in(ctx) && bn_->track_running_stats() && !bn_->collecting();
  }
  // The folded pass in blocks of images (Conv2d::forward_affine_blocks; needs folds(ctx) and
  // conv.block_images(x.shape) > 0): consume(n0, n1, h) reads each block's output. Backward and
  // the R-operator then rerun the layers, as after the folded forward.
  template <class F>
  void forward_folded_blocks(const View<T>& x, const Context& ctx, F&& consume) {
    folded_ = true;
    fold(x, ctx);
    conv_->forward_affine_blocks(x, scale_.data(), shift_.data(), relu_, consume);
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
  // BN's folded affine, and the input and context that backward reruns the layers on.
  void fold(const View<T>& x, const Context& ctx) {
    output_shape(x.shape);  // the BatchNorm's channels are the conv's
    const index_t C = bn_->num_features();
    scale_.resize(C), shift_.resize(C);
    bn_->eval_affine(scale_.data(), shift_.data());
    x_ = x, ctx_ = ctx;
  }
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

// Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d as one layer (the BENCH.md CNN's blocks). The full-size
// ReLU output is neither written nor read back by the pool:
// - in training, when the pool tiles its input 2x2 (kernels/pool.h is_even_2x2), the BatchNorm's
//   output pass also pools (BatchNorm::forward_relu_max_pool);
// - in eval mode (running statistics), the conv applies BN's folded affine and the ReLU in its own
//   output pass, a block of images at a time into a buffer that stays in cache, and the pool reads
//   the block from there (Conv2d::forward_affine_blocks): on the cnn's first block that output is
//   100 KB an image, 100 MB for a batch of 1000, written and read back once each otherwise.
// The backward runs the pool's, BN+ReLU's and the conv's, as the separate layers do: outputs are
// theirs bit for bit, gradients after the pooled training pass to rounding (BN's sums run over the
// pool's windows, from each window's x at its argmax that the forward kept: a quarter of the
// positions, and no read of the conv's output; batch_norm_relu_max_pool2d_backward). The pool's
// full-size gradient is never in memory, and when the conv takes its gradient image by image
// (Conv2d::takes_grad_images: batches of >= 4, no Winograd, no bias: the cnn's first block) BN's
// input gradient isn't either: BN's sums pass runs, then each image's input gradient is made where
// the conv's backward reads it, in cache.
// Measured on the cnn's first block (batch 128, 1 -> 32, 28x28; loaded machine, 1 thread CPU time):
// the step's backward 1.44x faster than with both gradients written out and a GEMM dW, the direct
// conv's dW included (bench/conv1_step.py, bench/README.md). After an eval forward
// FusedConvBatchNorm first reruns the conv and BN+ReLU (the fused pass keeps neither the conv's
// output nor BN's state). Otherwise (a batch under two blocks in eval, other windows in training, a
// BatchNorm collecting its statistics) FusedConvBatchNorm runs, then the pool.
template <class T>
class FusedConvBatchNormPool : public Layer<T> {
 public:
  FusedConvBatchNormPool(std::shared_ptr<Conv2d<T>> conv, std::shared_ptr<BatchNorm<T>> bn,
                         std::shared_ptr<MaxPool2d<T>> pool)
      : conv_(conv), bn_(bn), pool_(std::move(pool)),
        conv_bn_(std::make_shared<FusedConvBatchNorm<T>>(conv, bn, true, nullptr)),
        bn_act_(std::make_shared<FusedBatchNormActivation<T>>(bn, nullptr)) {}

  std::string kind() const override { return conv_bn_->kind() + "+" + pool_->kind(); }
  Shape output_shape(const Shape& in) const override { return pool_->output_shape(conv_bn_->output_shape(in)); }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    const Shape h_shape = conv_->output_shape(x.shape);
    const bool channels_fit = bn_->output_shape(h_shape) == h_shape;
    pooled_ = false;
    if (channels_fit && conv_bn_->folds(ctx) && conv_->block_images(x.shape) > 0)
      return pool_->forward_blocks(h_shape, [&](auto consume) { conv_bn_->forward_folded_blocks(x, ctx, consume); });
    pooled_ = channels_fit && !conv_bn_->folds(ctx) && !bn_->collecting() && pool_->tiles_2x2(h_shape);
    conv_in_shape_ = x.shape;
    if (!pooled_) return pool_->forward(conv_bn_->forward(x, ctx), ctx);
    const View<T> h = conv_->forward(x, ctx);
    return pool_->forward_produced(h.shape, [&](const ConvGeometry& g, T* y, std::int32_t* argmax) {
      bn_->forward_relu_max_pool(h, ctx, g, y, argmax);
    });
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!pooled_) return conv_bn_->backward(pool_->backward(g, true), need_input_grad);
    const ConvGeometry& pool = pool_->geometry();
    if (!conv_->takes_grad_images())  // the pool's and BN+ReLU's backward in BN's passes
      return conv_->backward(bn_->backward_relu_max_pool(g.data), need_input_grad);
    // BN's sums pass, then its input gradient an image at a time where the conv's backward reads
    // it (in cache): the full-size gradient is neither written nor read back
    coef_.resize(static_cast<size_t>(3 * pool.c));
    bn_->backward_relu_max_pool_sums(g.data, coef_.data());
    const index_t image = pool.c * pool.h * pool.w;
    const std::function<const T*(index_t)> grad_image = [&](index_t n) -> const T* {
      thread_local std::vector<T> buf;
      if (buf.size() < static_cast<size_t>(image)) buf.resize(static_cast<size_t>(image));
      bn_->relu_max_pool_grad_image(n, g.data, coef_.data(), buf.data());
      return buf.data();
    };
    View<T> dx = need_input_grad ? grad_in_.get(conv_in_shape_) : View<T>{};
    conv_->backward_images(grad_image, dx.data);
    return dx;
  }

  // The R-operator composes the layers' own, in the order the last forward ran them.
  bool has_rop() const override { return conv_bn_->has_rop() && pool_->has_rop(); }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    if (!pooled_) return pool_->rop_forward(conv_bn_->rop_forward(rx, ctx), ctx);
    return pool_->rop_forward(bn_act_->rop_forward(conv_->rop_forward(rx, ctx), ctx), ctx);
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    const RopGrad<T> dp = pool_->rop_backward(g, rg, true);
    if (!pooled_) return conv_bn_->rop_backward(dp.grad, dp.rgrad, need_input_grad);
    const RopGrad<T> dh = bn_act_->rop_backward(dp.grad, dp.rgrad, true);
    return conv_->rop_backward(dh.grad, dh.rgrad, need_input_grad);
  }

 private:
  std::shared_ptr<Conv2d<T>> conv_;
  std::shared_ptr<BatchNorm<T>> bn_;
  std::shared_ptr<MaxPool2d<T>> pool_;
  std::shared_ptr<FusedConvBatchNorm<T>> conv_bn_;  // conv -> BN -> ReLU (folded in eval, in blocks or not)
  std::shared_ptr<FusedBatchNormActivation<T>> bn_act_;  // BN -> ReLU's backward and R-operator after the pooled pass
  bool pooled_ = false;  // the last forward ran the training pass that pools in BN's output pass
  std::vector<T> coef_;  // BN's input-gradient coefficients (backward_relu_max_pool_sums)
  Shape conv_in_shape_;
  Workspace<T> grad_in_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::FusedConvBatchNorm)
FASTNN_COMPILED_ONCE(fastnn::FusedConvBatchNormPool)
