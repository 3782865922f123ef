// A Conv2d followed by a ReLU (and a MaxPool2d), with no BatchNorm between them, run as one layer:
// a model after fold_batchnorm, or one built without BatchNorm. The ReLU is applied in the pass
// that writes the conv's output (kernels/conv.h ConvEpilogue), in training and in eval, so the
// activations are written once instead of written, read and written again; its backward masks the
// upstream gradient by that output (relu_backward, as the ReLU layer does) before the conv's.
// With a MaxPool2d after it, in eval mode the conv's output goes a block of images at a time into a
// buffer that stays in cache and the pool reads it there (Conv2d::forward_affine_blocks, as
// FusedConvBatchNormPool); backward after such a forward first reruns the conv, since the blocks
// keep no output to mask by. The layers own everything (parameters, buffers); outputs and gradients
// are the separate layers', bit for bit. The R-operator is the conv's, then the ReLU layer's on the
// same output (R{y} = R{h} where y > 0; no second-order term).
#pragma once

#include <memory>
#include <string>

#include "fastnn/kernels/activations.h"
#include "fastnn/layers/activation.h"
#include "fastnn/layers/conv.h"
#include "fastnn/layers/layer.h"
#include "fastnn/layers/pool.h"

namespace fastnn {

template <class T>
class FusedConvRelu : public Layer<T> {
 public:
  // relu: the ReLU layer after the conv (its R-operator is used); pool (may be null) after the ReLU.
  FusedConvRelu(std::shared_ptr<Conv2d<T>> conv, std::shared_ptr<PointwiseActivation<T>> relu,
                std::shared_ptr<MaxPool2d<T>> pool)
      : conv_(std::move(conv)), relu_(std::move(relu)), pool_(std::move(pool)) {}

  std::string kind() const override { return "Conv2d+relu" + (pool_ ? "+" + pool_->kind() : std::string()); }
  Shape output_shape(const Shape& in) const override {
    const Shape h = conv_->output_shape(in);
    return pool_ ? pool_->output_shape(h) : h;
  }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    x_ = x;
    blocked_ = false;
    if (pool_ && !conv_->training_in(ctx) && conv_->block_images(x.shape) > 0) {
      blocked_ = true;
      return pool_->forward_blocks(conv_->output_shape(x.shape), [&](auto consume) {
        conv_->forward_affine_blocks(x, nullptr, nullptr, true, consume);
      });
    }
    y_ = conv_->forward_affine(x, nullptr, nullptr, true);
    return pool_ ? pool_->forward(y_, ctx) : y_;
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    const View<T> dy = pool_ ? pool_->backward(g, true) : g;
    rerun_if_blocked();
    View<T> dh = grad_h_.get(y_.shape);
    relu_backward(dy.data, y_.data, dh.data, dh.size());
    return conv_->backward(dh, need_input_grad);
  }

  bool has_rop() const override { return conv_->has_rop() && relu_->has_rop() && (!pool_ || pool_->has_rop()); }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    rerun_if_blocked();
    relu_->forward(y_, ctx);  // the ReLU layer's state: relu(y) = y, and its R-operator reads y > 0
    const View<T> ry = relu_->rop_forward(conv_->rop_forward(rx, ctx), ctx);
    return pool_ ? pool_->rop_forward(ry, ctx) : ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    const RopGrad<T> dy = pool_ ? pool_->rop_backward(g, rg, true) : RopGrad<T>{g, rg};
    const RopGrad<T> dh = relu_->rop_backward(dy.grad, dy.rgrad, true);
    return conv_->rop_backward(dh.grad, dh.rgrad, need_input_grad);
  }

 private:
  // After a forward in blocks: the conv's output (with its ReLU) in full, for the mask.
  void rerun_if_blocked() {
    if (!blocked_) return;
    y_ = conv_->forward_affine(x_, nullptr, nullptr, true);
    blocked_ = false;
  }

  std::shared_ptr<Conv2d<T>> conv_;
  std::shared_ptr<PointwiseActivation<T>> relu_;
  std::shared_ptr<MaxPool2d<T>> pool_;
  bool blocked_ = false;  // the last forward ran in blocks: y_ is not its output
  View<T> x_;  // the input, which a forward in blocks reruns the conv on
  View<T> y_;  // relu(conv(x)): the ReLU's output, which its backward masks by
  Workspace<T> grad_h_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::FusedConvRelu)
