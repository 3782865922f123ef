// A BatchNorm followed by ReLU (and a Dropout), run as one layer: the ReLU and the dropout mask
// are applied in the pass that writes the normalized output, and their derivatives where BN's
// backward passes read the gradient (kernels/batchnorm_activation.h). It owns nothing: the
// parameters, running statistics and buffers stay the BatchNorm's, the drop probability and random
// stream (salt) the Dropout's, so the numbers are those of the separate layers, bit for bit.
#pragma once

#include <memory>
#include <string>

#include "fastnn/kernels/rng.h"
#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/dropout.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class FusedBatchNormActivation : public Layer<T> {
 public:
  // dropout may be null (BatchNorm -> ReLU).
  FusedBatchNormActivation(std::shared_ptr<BatchNorm<T>> bn, std::shared_ptr<Dropout<T>> dropout)
      : bn_(std::move(bn)), dropout_(std::move(dropout)) {}

  std::string kind() const override { return bn_->kind() + "+relu" + (dropout_ ? "+dropout" : ""); }
  Shape output_shape(const Shape& in) const override { return bn_->output_shape(in); }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    // As Dropout::forward: active only while training with p > 0, on the stream of the Dropout's
    // salt (read now: Sequential assigns salts after planning).
    const bool drop = dropout_ && dropout_->training_in(ctx) && dropout_->p() > 0;
    return bn_->forward_relu(x, ctx, drop ? dropout_->p() : 0.0, drop ? rng::stream_key(ctx.seed, dropout_->salt) : 0);
  }
  View<T> backward(const View<T>& g, bool need_input_grad) override { return bn_->backward_relu(g, need_input_grad); }

 private:
  std::shared_ptr<BatchNorm<T>> bn_;
  std::shared_ptr<Dropout<T>> dropout_;
};

}  // namespace fastnn
