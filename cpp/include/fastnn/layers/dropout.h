// Dropout: inverted dropout with a counter-based mask (seed, step, layer salt, element), so the
// mask is reproducible and independent of thread count. Eval mode passes the input through.
#pragma once

#include <cstdint>

#include "fastnn/kernels/dropout.h"
#include "fastnn/kernels/rng.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class Dropout : public Layer<T> {
 public:
  explicit Dropout(double p) : p_(p) {
    FASTNN_CHECK(p >= 0 && p < 1, "Dropout", "p must be in [0, 1), got " << p);
  }
  std::string kind() const override { return "Dropout"; }
  double p() const { return p_; }
  Shape output_shape(const Shape& in) const override { return in; }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    active_ = this->training_in(ctx) && p_ > 0;
    if (!active_) return x;
    View<T> y = out_.get(x.shape);
    mask_.resize(x.size());
    dropout_forward(x.data, y.data, mask_.data(), x.size(), p_, rng::stream_key(ctx.seed, this->salt), ctx.step);
    return y;
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    if (!active_) return g;
    View<T> dx = grad_in_.get(g.shape);
    dropout_backward(g.data, mask_.data(), dx.data, g.size(), p_);
    return dx;
  }

  // The R-operator: linear, with forward's mask.
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    if (!active_ || !rx.data) return rx;
    View<T> ry = r_out_.get(rx.shape);
    dropout_backward(rx.data, mask_.data(), ry.data, rx.size(), p_);
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    if (!active_) return {g, rg};
    View<T> dx = grad_in_.get(g.shape), rdx = r_grad_in_.get(g.shape);
    dropout_backward(g.data, mask_.data(), dx.data, g.size(), p_);
    dropout_backward(rg.data, mask_.data(), rdx.data, rg.size(), p_);
    return {dx, rdx};
  }

 private:
  double p_;
  bool active_ = false;
  std::vector<std::uint8_t> mask_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Dropout)
