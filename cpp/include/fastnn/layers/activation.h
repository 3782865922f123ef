// Activation layers over the kernels in kernels/activations.h, softmax.h and maxout.h.
// Each keeps its input or output (whichever its derivative needs) and reuses its buffers.
#pragma once

#include <cstdint>

#include "fastnn/kernels/activations.h"
#include "fastnn/kernels/activations_rop.h"
#include "fastnn/kernels/maxout.h"
#include "fastnn/kernels/rng.h"
#include "fastnn/kernels/softmax.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

enum class Pointwise { Sigmoid, Tanh, ReLU, LeakyReLU, ELU, SELU };

inline const char* pointwise_name(Pointwise a) {
  switch (a) {
    case Pointwise::Sigmoid: return "Sigmoid";
    case Pointwise::Tanh: return "Tanh";
    case Pointwise::ReLU: return "ReLU";
    case Pointwise::LeakyReLU: return "LeakyReLU";
    case Pointwise::ELU: return "ELU";
    case Pointwise::SELU: return "SELU";
  }
  return "?";
}

// Sigmoid, Tanh, ReLU, LeakyReLU(negative_slope), ELU(alpha), SELU: y = f(x) elementwise.
template <class T>
class PointwiseActivation : public Layer<T> {
 public:
  explicit PointwiseActivation(Pointwise act, double param = 0.0) : act_(act), param_(static_cast<T>(param)) {}
  std::string kind() const override { return pointwise_name(act_); }
  Shape output_shape(const Shape& in) const override { return in; }
  Pointwise act() const { return act_; }
  double param() const { return param_; }

  View<T> forward(const View<T>& x, const Context&) override {
    x_ = x;
    y_ = out_.get(x.shape);
    const index_t n = x.size();
    switch (act_) {
      case Pointwise::Sigmoid: sigmoid_forward(x.data, y_.data, n); break;
      case Pointwise::Tanh: tanh_forward(x.data, y_.data, n); break;
      case Pointwise::ReLU: relu_forward(x.data, y_.data, n); break;
      case Pointwise::LeakyReLU: leaky_relu_forward(x.data, y_.data, n, param_); break;
      case Pointwise::ELU: elu_forward(x.data, y_.data, n, param_); break;
      case Pointwise::SELU: selu_forward(x.data, y_.data, n); break;
    }
    return y_;
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(g.shape);
    const index_t n = g.size();
    switch (act_) {  // sigmoid, tanh and relu differentiate from the output; the others from the input
      case Pointwise::Sigmoid: sigmoid_backward(g.data, y_.data, dx.data, n); break;
      case Pointwise::Tanh: tanh_backward(g.data, y_.data, dx.data, n); break;
      case Pointwise::ReLU: relu_backward(g.data, y_.data, dx.data, n); break;
      case Pointwise::LeakyReLU: leaky_relu_backward(g.data, x_.data, dx.data, n, param_); break;
      case Pointwise::ELU: elu_backward(g.data, x_.data, dx.data, n, param_); break;
      case Pointwise::SELU: selu_backward(g.data, x_.data, dx.data, n); break;
    }
    return dx;
  }

  // The R-operator (kernels/activations_rop.h).
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    rx_ = rx;
    if (!rx.data) return View<T>{nullptr, x_.shape};
    View<T> ry = r_out_.get(rx.shape);
    activation_rop_forward(rop_kind(), x_.data, y_.data, rx.data, ry.data, rx.size(), param_);
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(g.shape), rdx = r_grad_in_.get(g.shape);
    activation_rop_backward(rop_kind(), x_.data, y_.data, g.data, rg.data, rx_.data, dx.data, rdx.data, g.size(),
                            param_);
    return {dx, rdx};
  }

 private:
  RopActivation rop_kind() const {
    switch (act_) {
      case Pointwise::Sigmoid: return RopActivation::sigmoid;
      case Pointwise::Tanh: return RopActivation::tanh;
      case Pointwise::ReLU: return RopActivation::relu;
      case Pointwise::LeakyReLU: return RopActivation::leaky_relu;
      case Pointwise::ELU: return RopActivation::elu;
      case Pointwise::SELU: return RopActivation::selu;
    }
    return RopActivation::identity;
  }

  Pointwise act_;
  T param_;
  View<T> x_, y_, rx_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

// PReLU: y = x if x > 0 else a[c] x, with learned slopes a (1 shared or one per channel, dim 1).
template <class T>
class PReLU : public Layer<T> {
 public:
  explicit PReLU(index_t num_parameters) : n_(num_parameters) {
    FASTNN_CHECK(n_ >= 1, "PReLU", "num_parameters must be >= 1, got " << n_);
  }
  std::string kind() const override { return "PReLU"; }
  index_t num_parameters() const { return n_; }
  std::vector<ParamSpec> param_specs() const override { return {{"weight", {n_}, false}}; }
  void bind_params(T* params, T* grads) override { w_ = params, dw_ = grads, this->params_bound = true; }
  bool supports_grad_overwrite() const override { return true; }

  Shape output_shape(const Shape& in) const override {
    FASTNN_CHECK(n_ == 1 || (in.size() >= 2 && in[1] == n_), "PReLU",
                 "input " << shape_str(in) << " must have " << n_ << " channels in dimension 1");
    return in;
  }

  View<T> forward(const View<T>& x, const Context&) override {
    output_shape(x.shape);
    x_ = x;
    View<T> y = out_.get(x.shape);
    prelu_forward(x.data, w_, y.data, outer(x), n_, inner(x));
    return y;
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    View<T> dx = grad_in_.get(g.shape);
    tmp_dw_.resize(n_);
    prelu_backward(g.data, x_.data, w_, dx.data, tmp_dw_.data(), outer(g), n_, inner(g));
    if (this->params_trainable)
      for (index_t c = 0; c < n_; ++c) dw_[c] = this->overwrite_grads ? tmp_dw_[c] : dw_[c] + tmp_dw_[c];
    return need_input_grad ? dx : View<T>{};
  }

  // The R-operator (kernels/activations_rop.h); a frozen PReLU's slopes are constants.
  bool has_rop() const override { return true; }
  void bind_direction(const T* v, T* hv) override { va_ = v, hva_ = hv; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    rx_ = rx;
    View<T> ry = r_out_.get(x_.shape);
    prelu_rop_forward(x_.data, w_, this->params_trainable ? va_ : nullptr, rx.data, ry.data, outer(x_), n_, inner(x_));
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    View<T> dx = backward(g, true);
    View<T> rdx = r_grad_in_.get(g.shape);
    r_da_.resize(n_);
    const bool trainable = this->params_trainable && hva_;
    prelu_rop_backward(x_.data, w_, this->params_trainable ? va_ : nullptr, rx_.data, g.data, rg.data, rdx.data,
                       trainable ? r_da_.data() : nullptr, outer(g), n_, inner(g));
    if (trainable)
      for (index_t c = 0; c < n_; ++c) hva_[c] += r_da_[c];
    if (!need_input_grad) return {};
    return {dx, rdx};
  }

 private:
  const T* va_ = nullptr;
  T* hva_ = nullptr;
  View<T> rx_;
  Workspace<T> r_out_, r_grad_in_;
  std::vector<T> r_da_;
  index_t outer(const View<T>& v) const { return n_ == 1 ? 1 : v.batch(); }
  index_t inner(const View<T>& v) const { return n_ == 1 ? v.size() : v.features() / n_; }

  index_t n_;
  T *w_ = nullptr, *dw_ = nullptr;
  View<T> x_;
  Workspace<T> out_, grad_in_;
  std::vector<T> tmp_dw_;
};

// RReLU: slope ~ U[lower, upper] per element while training (counter-based draws), (lower+upper)/2 in eval.
template <class T>
class RReLU : public Layer<T> {
 public:
  RReLU(double lower, double upper) : lower_(lower), upper_(upper) {
    FASTNN_CHECK(0 <= lower && lower <= upper && std::isfinite(upper), "RReLU",
                 "need 0 <= lower <= upper (finite), got lower=" << lower << ", upper=" << upper);
  }
  std::string kind() const override { return "RReLU"; }
  double lower() const { return lower_; }
  double upper() const { return upper_; }
  Shape output_shape(const Shape& in) const override { return in; }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    View<T> y = out_.get(x.shape);
    noise_ = noise_ws_.get(x.shape);
    rrelu_forward(x.data, y.data, noise_.data, x.size(), lower_, upper_, this->training_in(ctx),
                  rng::stream_key(ctx.seed, this->salt), ctx.step);
    return y;
  }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(g.shape);
    rrelu_backward(g.data, noise_.data, dx.data, g.size());
    return dx;
  }

  // The R-operator: linear in x with the slopes sampled by forward (kept in noise_).
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    if (!rx.data) return View<T>{nullptr, noise_.shape};
    View<T> ry = r_out_.get(rx.shape);
    activation_rop_forward(RopActivation::slope, noise_.data, static_cast<const T*>(nullptr), rx.data, ry.data,
                           rx.size(), T(0));
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(g.shape), rdx = r_grad_in_.get(g.shape);
    activation_rop_backward(RopActivation::slope, noise_.data, static_cast<const T*>(nullptr), g.data, rg.data,
                            static_cast<const T*>(nullptr), dx.data, rdx.data, g.size(), T(0));
    return {dx, rdx};
  }

 private:
  double lower_, upper_;
  View<T> noise_;
  Workspace<T> out_, grad_in_, noise_ws_, r_out_, r_grad_in_;
};

// Softmax / LogSoftmax over the last dimension.
template <class T>
class Softmax : public Layer<T> {
 public:
  explicit Softmax(bool log) : log_(log) {}
  std::string kind() const override { return log_ ? "LogSoftmax" : "Softmax"; }
  Shape output_shape(const Shape& in) const override { return in; }

  View<T> forward(const View<T>& x, const Context&) override {
    y_ = out_.get(x.shape);
    const index_t cols = x.shape.back(), rows = x.size() / cols;
    (log_ ? log_softmax_forward<T> : softmax_forward<T>)(x.data, y_.data, rows, cols);
    return y_;
  }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(g.shape);
    const index_t cols = g.shape.back(), rows = g.size() / cols;
    (log_ ? log_softmax_backward<T> : softmax_backward<T>)(g.data, y_.data, dx.data, rows, cols);
    return dx;
  }

  // The R-operator (kernels/activations_rop.h).
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    if (!rx.data) return ry_ = View<T>{nullptr, y_.shape};
    ry_ = r_out_.get(y_.shape);
    const index_t cols = y_.shape.back(), rows = y_.size() / cols;
    softmax_rop_forward(log_, y_.data, rx.data, ry_.data, rows, cols);
    return ry_;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(g.shape), rdx = r_grad_in_.get(g.shape);
    const index_t cols = g.shape.back(), rows = g.size() / cols;
    softmax_rop_backward(log_, y_.data, ry_.data, g.data, rg.data, dx.data, rdx.data, rows, cols);
    return {dx, rdx};
  }

 private:
  bool log_;
  View<T> y_, ry_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

// Maxout: (N, C * pieces) -> (N, C), the max of each group of `pieces` consecutive features.
template <class T>
class Maxout : public Layer<T> {
 public:
  explicit Maxout(index_t pieces) : pieces_(pieces) {
    FASTNN_CHECK(pieces >= 1, "Maxout", "pieces must be >= 1, got " << pieces);
  }
  std::string kind() const override { return "Maxout"; }
  index_t pieces() const { return pieces_; }
  Shape output_shape(const Shape& in) const override {
    FASTNN_CHECK(in.size() == 2 && in[1] % pieces_ == 0, "Maxout",
                 "input must be (N, C * " << pieces_ << "), got " << shape_str(in));
    return {in[0], in[1] / pieces_};
  }
  View<T> forward(const View<T>& x, const Context&) override {
    in_shape_ = x.shape;
    View<T> y = out_.get(output_shape(x.shape));
    argmax_.resize(y.size());
    maxout_forward(x.data, y.data, argmax_.data(), y.size(), pieces_);
    return y;
  }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(in_shape_);
    maxout_backward(g.data, argmax_.data(), dx.data, g.size(), pieces_);
    return dx;
  }

  // The R-operator: the winning piece's direction forward, scattered back as the gradient is.
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    const Shape out = output_shape(in_shape_);
    if (!rx.data) return View<T>{nullptr, out};
    View<T> ry = r_out_.get(out);
    maxout_rop_forward(rx.data, argmax_.data(), ry.data, ry.size(), pieces_);
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    if (!need_input_grad) return {};
    View<T> dx = grad_in_.get(in_shape_), rdx = r_grad_in_.get(in_shape_);
    maxout_backward(g.data, argmax_.data(), dx.data, g.size(), pieces_);
    maxout_backward(rg.data, argmax_.data(), rdx.data, rg.size(), pieces_);
    return {dx, rdx};
  }

 private:
  index_t pieces_;
  Shape in_shape_;
  std::vector<std::int64_t> argmax_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::PointwiseActivation)
FASTNN_COMPILED_ONCE(fastnn::PReLU)
FASTNN_COMPILED_ONCE(fastnn::RReLU)
FASTNN_COMPILED_ONCE(fastnn::Softmax)
FASTNN_COMPILED_ONCE(fastnn::Maxout)
