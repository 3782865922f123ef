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

  // The R-operator: BatchNorm's, with the ReLU and dropout factor d = dy/dz applied (linear pieces:
  // R{y} = d R{z}, R{g_z} = d R{g}).
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    View<T> rz = bn_->rop_forward(rx, ctx);
    factors_ = factor_ws_.get(rz.shape);
    bn_->relu_factors(factors_.data);
    View<T> ry = r_out_.get(rz.shape);
    scale(rz.data, ry.data, ry.size());
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    T* gz = r_grad_ws_.get({2, g.size()}).data;
    scale(g.data, gz, g.size());
    scale(rg.data, gz + g.size(), g.size());
    return bn_->rop_backward(View<T>{gz, g.shape}, View<T>{gz + g.size(), g.shape}, need_input_grad);
  }

 private:
  void scale(const T* a, T* out, index_t n) const {
    const T* f = factors_.data;
    parallel_for(n, 1, [=](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) out[i] = f[i] * a[i];
    });
  }

  std::shared_ptr<BatchNorm<T>> bn_;
  std::shared_ptr<Dropout<T>> dropout_;
  View<T> factors_;
  Workspace<T> factor_ws_, r_out_, r_grad_ws_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::FusedBatchNormActivation)
