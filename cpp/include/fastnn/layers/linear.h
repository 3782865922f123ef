// Linear: y = act(x W^T + b), PyTorch layout (W is (out, in)); bias and an optional activation
// are fused into the pass that follows the GEMM (kernels/linear.h).
#pragma once

#include <limits>

#include "fastnn/kernels/activations_rop.h"
#include "fastnn/kernels/gemm.h"
#include "fastnn/kernels/linear.h"
#include "fastnn/kernels/linear_rop.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class Linear : public Layer<T> {
 public:
  Linear(index_t in_features, index_t out_features, bool bias, Activation act = Activation::none,
         double negative_slope = 0.01)
      : in_(in_features), out_(out_features), has_bias_(bias), act_(act), slope_(static_cast<T>(negative_slope)) {
    FASTNN_CHECK(in_ >= 1 && out_ >= 1, "Linear",
                 "in_features and out_features must be >= 1, got " << in_ << " and " << out_);
    // The parameter count must fit index_t (2**32 x 2**32 wrapped around to 0 weights).
    FASTNN_CHECK(in_ <= (std::numeric_limits<index_t>::max() - out_) / out_, "Linear",
                 "in_features * out_features = " << in_ << " * " << out_ << " weights is too many");
  }

  std::string kind() const override { return "Linear"; }
  std::vector<ParamSpec> param_specs() const override {
    std::vector<ParamSpec> p{{"weight", {out_, in_}, true}};
    if (has_bias_) p.push_back({"bias", {out_}, false});
    return p;
  }
  void bind_params(T* params, T* grads) override {
    w_ = params, dw_ = grads;
    this->params_bound = true;
    b_ = has_bias_ ? params + out_ * in_ : nullptr;
    db_ = has_bias_ ? grads + out_ * in_ : nullptr;
  }

  Shape output_shape(const Shape& in) const override {
    FASTNN_CHECK(in.size() == 2 && in[1] == in_, "Linear",
                 "expected input (N, " << in_ << "), got " << shape_str(in));
    return {in[0], out_};
  }

  View<T> forward(const View<T>& x, const Context& ctx) override { return forward_fused(x, act_, slope_, ctx.rop); }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    return backward_fused(g, need_input_grad, act_, slope_);
  }

  // Forward/backward with `act` applied in the same pass; Sequential uses them to fuse a
  // following activation layer (FusedLinearActivation). With rop (an R-forward follows, and a
  // direction is bound), the same pass also computes the direction's part of R{z}, x V^T + v_b
  // (kernels/linear_rop.h), which rop_forward then uses.
  View<T> forward_fused(const View<T>& x, Activation act, T slope, bool rop = false) {
    x_ = x;
    rows_.clear();
    y_ = out_ws_.get(output_shape(x.shape));
    rz_done_ = rop && vw_ && this->params_trainable;
    if (rz_done_) {
      rz_ = r_pre_.get({x.batch(), out_});
      linear_forward_pair(x.data, w_, b_, vw_, vb_, y_.data, rz_.data, x.batch(), in_, out_, act, slope);
    } else {
      linear_forward(x.data, w_, b_, y_.data, x.batch(), in_, out_, act, slope);
    }
    return y_;
  }

  // Few outputs (linear_narrow.h): the kernels read the input rows where they are.
  bool reads_rows() const override { return narrow_linear_fits<T>(out_); }
  View<T> forward_rows(const T* const* rows, const Shape& shape, const Context&) override {
    return forward_rows_fused(rows, shape, act_, slope_);
  }
  View<T> forward_rows_fused(const T* const* rows, const Shape& shape, Activation act, T slope) {
    FASTNN_CHECK(reads_rows(), "Linear", "row-pointer input needs out_features <= " << 4 * narrow_detail::kP<T>);
    x_ = View<T>{nullptr, shape};
    rz_done_ = false;
    rows_.assign(rows, rows + shape[0]);
    y_ = out_ws_.get(output_shape(shape));
    linear_forward_rows(rows, shape[0], CMatMap<T>(w_, out_, in_, Eigen::OuterStride<>(in_)), b_, y_.data, act,
                        slope);
    return y_;
  }

  View<T> backward_fused(const View<T>& g, bool need_input_grad, Activation act, T slope) {
    const index_t n = g.batch();
    View<T> dx = need_input_grad ? grad_in_.get(x_.shape) : View<T>{};
    T* scratch = act == Activation::none ? nullptr : scratch_.get({n, out_}).data;
    // frozen: no parameter gradient is computed (the flat gradient stays as it is)
    T* dw = this->params_trainable ? dw_ : nullptr;
    T* db = this->params_trainable ? db_ : nullptr;
    const bool accumulate = !this->overwrite_grads;
    if (!rows_.empty())
      linear_backward_rows(g.data, rows_.data(), w_, y_.data, need_input_grad ? dx.data : nullptr, dw, db, scratch, n,
                           in_, out_, act, slope, accumulate);
    else
      linear_backward(g.data, x_.data, w_, y_.data, need_input_grad ? dx.data : nullptr, dw, db, scratch, n, in_,
                      out_, act, slope, accumulate);
    return dx;
  }

  // The R-operator, with z = x W^T + b and y = act(z):
  //   R{z} = x V^T + v_b + R{x} W^T,  R{y} = act'(z) R{z}
  //   g_z = act'(z) g,  R{g_z} = act'(z) R{g} + act''(z) g R{z}
  //   R{dW} = R{g_z}^T x + g_z^T R{x},  R{db} = sum R{g_z},  R{dx} = R{g_z} W + g_z V
  // A frozen Linear (params_trainable false) is a constant: its direction is ignored, its H·v slice stays 0.
  bool has_rop() const override { return true; }
  void bind_direction(const T* v, T* hv) override {
    vw_ = v, hvw_ = hv;
    vb_ = has_bias_ && v ? v + out_ * in_ : nullptr;
    hvb_ = has_bias_ && hv ? hv + out_ * in_ : nullptr;
  }
  View<T> rop_forward(const View<T>& rx, const Context&) override { return rop_forward_fused(rx, act_, slope_); }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    return rop_backward_fused(g, rg, need_input_grad, act_, slope_);
  }

  View<T> rop_forward_fused(const View<T>& rx, Activation act, T slope) {
    FASTNN_CHECK(rows_.empty() && x_.data, "Linear", "rop_forward needs a forward on an array first");
    FASTNN_CHECK(vw_ || !this->params_trainable, "Linear", "rop_forward before bind_direction");
    FASTNN_CHECK(!rx.data || rx.shape == x_.shape, "Linear",
                 "rx must have the input's shape " << shape_str(x_.shape) << ", got " << shape_str(rx.shape));
    rx_ = rx;
    const index_t n = x_.batch();
    if (!rz_done_) {  // x V^T + v_b, unless the forward computed it
      rz_ = r_pre_.get({n, out_});
      if (this->params_trainable) linear_forward(x_.data, vw_, vb_, rz_.data, n, in_, out_);
      else MatMap<T>(rz_.data, n, out_, Eigen::OuterStride<>(out_)).setZero();
    }
    rz_done_ = false;
    MatMap<T> rz(rz_.data, n, out_, Eigen::OuterStride<>(out_));
    if (rx.data)
      gemm(CMatMap<T>(rx.data, n, in_, Eigen::OuterStride<>(in_)),
           CMatMap<T>(w_, out_, in_, Eigen::OuterStride<>(in_)).transpose(), rz, true);
    if (act == Activation::none) return rz_;
    View<T> ry = r_out_.get({n, out_});
    activation_rop_forward(rop_activation(act), y_.data, y_.data, rz_.data, ry.data, n * out_, slope);
    return ry;
  }

  RopGrad<T> rop_backward_fused(const View<T>& g, const View<T>& rg, bool need_input_grad, Activation act, T slope) {
    const index_t n = g.batch();
    const T *gz = g.data, *rgz = rg.data;
    if (act != Activation::none) {
      T* a = r_scratch_.get({2, n, out_}).data;
      activation_rop_backward(rop_activation(act), y_.data, y_.data, g.data, rg.data, rz_.data, a, a + n * out_,
                              n * out_, slope);
      gz = a, rgz = a + n * out_;
    }
    View<T> dx = need_input_grad ? grad_in_.get(x_.shape) : View<T>{};
    View<T> rdx = need_input_grad ? r_grad_in_.get(x_.shape) : View<T>{};
    const bool trainable = this->params_trainable;
    T* dw = trainable ? dw_ : nullptr;  // a frozen Linear's dL/dθ is not computed
    T* db = trainable ? db_ : nullptr;
    const bool accumulate = !this->overwrite_grads;
    const bool skip = this->rop_skips_param_grads;
    linear_backward(gz, x_.data, w_, static_cast<const T*>(nullptr), dx.data, skip ? nullptr : dw,
                    skip ? nullptr : db, static_cast<T*>(nullptr), n, in_, out_, Activation::none, slope, accumulate);
    linear_backward(rgz, x_.data, w_, static_cast<const T*>(nullptr), rdx.data, trainable ? hvw_ : nullptr,
                    trainable ? hvb_ : nullptr, static_cast<T*>(nullptr), n, in_, out_, Activation::none, slope, true);
    CMatMap<T> gzm(gz, n, out_, Eigen::OuterStride<>(out_));
    if (trainable && rx_.data) {  // R{dW} += g_z^T R{x}
      MatMap<T> hw(hvw_, out_, in_, Eigen::OuterStride<>(in_));
      gemm(gzm.transpose(), CMatMap<T>(rx_.data, n, in_, Eigen::OuterStride<>(in_)), hw, true);
    }
    if (trainable && need_input_grad) {  // R{dx} += g_z V
      MatMap<T> rd(rdx.data, n, in_, Eigen::OuterStride<>(in_));
      gemm(gzm, CMatMap<T>(vw_, out_, in_, Eigen::OuterStride<>(in_)), rd, true);
    }
    if (!need_input_grad) return {};
    return {dx, rdx};
  }

  bool supports_grad_overwrite() const override { return true; }
  // The parameters and their gradients in the flat buffers (bias ones null without a bias).
  const T* weight() const { return w_; }
  const T* bias() const { return b_; }
  T* weight_grad() const { return dw_; }
  T* bias_grad() const { return db_; }
  Activation activation() const { return act_; }
  index_t in_features() const { return in_; }
  index_t out_features() const { return out_; }

 private:
  index_t in_, out_;
  bool has_bias_;
  Activation act_;
  T slope_;
  static RopActivation rop_activation(Activation a) {
    switch (a) {
      case Activation::none: return RopActivation::identity;
      case Activation::relu: return RopActivation::relu;
      case Activation::leaky_relu: return RopActivation::leaky_relu;  // slope > 0: y's sign is z's
      case Activation::sigmoid: return RopActivation::sigmoid;
      case Activation::tanh: return RopActivation::tanh;
    }
    return RopActivation::identity;
  }

  T *w_ = nullptr, *dw_ = nullptr, *b_ = nullptr, *db_ = nullptr;
  const T *vw_ = nullptr, *vb_ = nullptr;  // the direction (bind_direction)
  T *hvw_ = nullptr, *hvb_ = nullptr;
  View<T> x_, y_, rx_, rz_;
  bool rz_done_ = false;  // the last forward computed rz_'s x V^T + v_b (forward_fused with rop)
  Workspace<T> r_pre_, r_out_, r_scratch_, r_grad_in_;
  std::vector<const T*> rows_;  // the input rows, when the last forward read row pointers
  Workspace<T> out_ws_, grad_in_, scratch_;
};

// A Linear followed by an activation layer, run as one layer: the activation is applied in the
// pass that adds the bias, and its derivative in the pass that sums the bias gradient. The
// parameters stay the Linear's; the activation layer itself is skipped.
template <class T>
class FusedLinearActivation : public Layer<T> {
 public:
  FusedLinearActivation(std::shared_ptr<Linear<T>> linear, Activation act, T slope)
      : linear_(std::move(linear)), act_(act), slope_(slope) {}
  std::string kind() const override { return "Linear+" + std::string(activation_name(act_)); }
  Shape output_shape(const Shape& in) const override { return linear_->output_shape(in); }
  View<T> forward(const View<T>& x, const Context& ctx) override {
    return linear_->forward_fused(x, act_, slope_, ctx.rop);
  }
  bool reads_rows() const override { return linear_->reads_rows(); }
  View<T> forward_rows(const T* const* rows, const Shape& shape, const Context&) override {
    return linear_->forward_rows_fused(rows, shape, act_, slope_);
  }
  View<T> backward(const View<T>& g, bool need_input_grad) override {
    return linear_->backward_fused(g, need_input_grad, act_, slope_);
  }
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override { return linear_->rop_forward_fused(rx, act_, slope_); }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    return linear_->rop_backward_fused(g, rg, need_input_grad, act_, slope_);
  }

 private:
  std::shared_ptr<Linear<T>> linear_;
  Activation act_;
  T slope_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Linear)
FASTNN_COMPILED_ONCE(fastnn::FusedLinearActivation)
