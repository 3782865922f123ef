// Sequential container: children run in order (net/container.h holds what all containers share).
#pragma once

#include <string>
#include <utility>

#include "fastnn/layers/activation.h"
#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/batchnorm_activation.h"
#include "fastnn/layers/conv.h"
#include "fastnn/layers/conv_batchnorm.h"
#include "fastnn/layers/conv_relu.h"
#include "fastnn/layers/dropout.h"
#include "fastnn/layers/layer.h"
#include "fastnn/layers/linear.h"
#include "fastnn/net/container.h"

namespace fastnn {

template <class T>
class Sequential : public Container<T> {
 public:
  explicit Sequential(std::vector<LayerPtr<T>> children) : Container<T>(std::move(children), "Sequential") {
    plan_execution();
  }

  std::string kind() const override { return "Sequential"; }

  // A child that promises only part of its output shape (a layer written in Python) leaves
  // the shapes after it unknown: what follows it is promised nothing, (kAnyDims).
  Shape output_shape(const Shape& in) const override {
    Shape s = in;
    for (const auto& c : children_) {
      if (is_partial(s)) return {kAnyDims};
      s = c->output_shape(s);
    }
    return s;
  }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    replan_if_modes_changed();
    View<T> h = x;
    for (size_t i = 0; i < exec_.size(); ++i) h = run_child(i, h, nullptr, ctx);
    return h;
  }

  bool reads_rows() const override { return !exec_.empty() && exec_[0]->reads_rows(); }
  View<T> forward_rows(const T* const* rows, const Shape& shape, const Context& ctx) override {
    replan_if_modes_changed();
    View<T> h = run_child(0, View<T>{nullptr, shape}, rows, ctx);
    for (size_t i = 1; i < exec_.size(); ++i) h = run_child(i, h, nullptr, ctx);
    return h;
  }

  // When the caller needs no input gradient, the layers below the lowest one with trainable
  // parameters need none either: a frozen bottom (transfer learning) gets no backward at all.
  View<T> backward(const View<T>& grad_out, bool need_input_grad) override {
    size_t lowest = 0;
    if (!need_input_grad) {
      // Decided on the children, not on the planned steps: a fused step trains when a child it
      // runs does, so the step holding the lowest trainable child is the lowest to run.
      size_t child = 0;
      while (child < children_.size() && !children_[child]->trains_params()) ++child;
      while (lowest + 1 < exec_.size() && exec_child_[lowest + 1] <= child) ++lowest;
      if (child == children_.size()) lowest = exec_.size();
    }
    View<T> g = grad_out;
    for (size_t i = exec_.size(); i-- > lowest;) {
      const bool need = i > lowest || need_input_grad;
      g = exec_[i]->backward(g, need);
      if (need) this->check_grad(child_name(i), g, in_shapes_[i]);
    }
    return need_input_grad ? g : View<T>{};
  }

  // The R-operator: the pair of every layer as it runs (fused layers have their own), in order
  // forward and in reverse backward, R{x} and R{dL/dx} passed along with x and dL/dx.
  bool has_rop() const override {
    if (!this->children_have_rop()) return false;
    for (const auto& c : exec_)
      if (!c->has_rop()) return false;
    return true;
  }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    View<T> r = rx;
    for (auto& c : exec_) r = c->rop_forward(r, ctx);
    return r;
  }
  RopGrad<T> rop_backward(const View<T>& grad_out, const View<T>& r_grad_out, bool need_input_grad) override {
    RopGrad<T> r{grad_out, r_grad_out};
    for (size_t i = exec_.size(); i-- > 0;) {
      const bool need = i > 0 || need_input_grad;
      RopGrad<T> next = exec_[i]->rop_backward(r.grad, r.rgrad, need);
      if (!need) return {};
      this->check_grad(child_name(i), next.grad, in_shapes_[i]);
      this->check_grad(child_name(i), next.rgrad, in_shapes_[i]);
      r = next;
    }
    return r;
  }

  // Names of the layers as they run (fused ones show as "Linear+relu", "BatchNorm1d+relu+dropout").
  std::vector<std::string> execution_plan() const {
    std::vector<std::string> out;
    for (const auto& c : exec_) out.push_back(c->kind());
    return out;
  }

  // The layers to run: a Linear without activation followed by ReLU, LeakyReLU (slope > 0),
  // Sigmoid or Tanh runs as one fused layer (one pass less over the activations each way), and so
  // does a BatchNorm followed by ReLU, with the Dropout that follows it if any (two passes less).
  // A Conv2d followed by a BatchNorm2d (and those) runs as one layer that, when the BatchNorm is
  // in eval mode, applies BN's folded affine and the ReLU in the conv's output pass; with a ReLU
  // and a MaxPool2d after it, the pool joins it (in training, BN's output pass pools). A Conv2d
  // followed by a ReLU (no BatchNorm: a model after fold_batchnorm) applies the ReLU in its output
  // pass, and a MaxPool2d after them joins too (in eval, pooling blocks of the conv's output in cache).
  void plan_execution() {
    exec_.clear();
    exec_child_.clear();
    auto child = [&](size_t j) { return j < children_.size() ? children_[j] : nullptr; };
    auto relu_at = [&](size_t j) {
      auto a = std::dynamic_pointer_cast<PointwiseActivation<T>>(child(j));
      return a && a->act() == Pointwise::ReLU;
    };
    // The Dropout at j, if it can run fused with the BatchNorm bn before it.
    auto dropout_at = [&](size_t j, const BatchNorm<T>& bn) {
      auto drop = std::dynamic_pointer_cast<Dropout<T>>(child(j));
      return drop && fusable_modes(bn.mode, drop->mode) ? drop : nullptr;
    };
    for (size_t i = 0; i < children_.size(); ++i) {
      auto lin = std::dynamic_pointer_cast<Linear<T>>(children_[i]);
      auto bn = std::dynamic_pointer_cast<BatchNorm<T>>(children_[i]);
      auto conv = std::dynamic_pointer_cast<Conv2d<T>>(children_[i]);
      auto conv_bn = conv ? std::dynamic_pointer_cast<BatchNorm<T>>(child(i + 1)) : nullptr;
      auto act = std::dynamic_pointer_cast<PointwiseActivation<T>>(child(i + 1));
      Activation fused;
      if (lin && act && lin->activation() == Activation::none && fusable(*act, &fused)) {
        exec_.push_back(std::make_shared<FusedLinearActivation<T>>(lin, fused, static_cast<T>(act->param())));
        exec_child_.push_back(i);
        ++i;
      } else if (conv_bn && conv_bn->kind() == "BatchNorm2d") {
        const bool relu = relu_at(i + 2);
        auto drop = relu ? dropout_at(i + 3, *conv_bn) : nullptr;
        auto pool = relu && !drop ? std::dynamic_pointer_cast<MaxPool2d<T>>(child(i + 3)) : nullptr;
        if (pool)
          exec_.push_back(std::make_shared<FusedConvBatchNormPool<T>>(conv, conv_bn, pool));
        else
          exec_.push_back(std::make_shared<FusedConvBatchNorm<T>>(conv, conv_bn, relu, drop));
        exec_child_.push_back(i);
        i += 1 + relu + (drop || pool ? 1 : 0);
      } else if (conv && relu_at(i + 1)) {
        auto pool = std::dynamic_pointer_cast<MaxPool2d<T>>(child(i + 2));
        exec_.push_back(std::make_shared<FusedConvRelu<T>>(
            conv, std::static_pointer_cast<PointwiseActivation<T>>(children_[i + 1]), pool));
        exec_child_.push_back(i);
        i += pool ? 2 : 1;
      } else if (bn && relu_at(i + 1)) {
        auto drop = dropout_at(i + 2, *bn);
        exec_.push_back(std::make_shared<FusedBatchNormActivation<T>>(bn, drop));
        exec_child_.push_back(i);
        i += drop ? 2 : 1;
      } else {
        exec_.push_back(children_[i]);
        exec_child_.push_back(i);
      }
    }
    in_shapes_.assign(exec_.size(), Shape{});
    planned_modes_.clear();
    for (const auto& c : children_) planned_modes_.push_back(c->mode);
  }

 private:
  // Runs exec_[i] on x (or on the rows of a batch of shape x.shape), checked (Container::checked_forward).
  View<T> run_child(size_t i, const View<T>& x, const T* const* rows, const Context& ctx) {
    View<T> y = this->checked_forward(*exec_[i], child_name(i), x, rows, ctx);
    in_shapes_[i] = x.shape;
    return y;
  }

  // "child 2 (Linear+relu)": the index among the children, the kind as it runs.
  std::string child_name(size_t i) const { return "child " + std::to_string(exec_child_[i]) + " (" + exec_[i]->kind() + ")"; }

  // The fusions depend on the children's own modes (Layer::mode), which Python sets at any time.
  void replan_if_modes_changed() {
    for (size_t i = 0; i < children_.size(); ++i)
      if (children_[i]->mode != planned_modes_[i]) return plan_execution();
  }

  // Whether a BatchNorm and the Dropout after it can run as one layer for these modes
  // (Layer::mode): everything but a BatchNorm in eval mode with the Dropout training, which
  // happens when the BatchNorm is set to eval and the Dropout is not, or the Dropout to training
  // and the BatchNorm follows an eval-mode caller.
  static bool fusable_modes(int bn, int dropout) {
    if (bn == 0) return dropout == 0;
    return !(bn < 0 && dropout == 1);
  }

  static bool fusable(const PointwiseActivation<T>& a, Activation* out) {
    switch (a.act()) {
      case Pointwise::ReLU: return *out = Activation::relu, true;
      case Pointwise::LeakyReLU: return a.param() > 0 && (*out = Activation::leaky_relu, true);
      case Pointwise::Sigmoid: return *out = Activation::sigmoid, true;
      case Pointwise::Tanh: return *out = Activation::tanh, true;
      default: return false;
    }
  }

  using Container<T>::children_;
  std::vector<LayerPtr<T>> exec_;  // children_ with fusable pairs merged
  std::vector<size_t> exec_child_;  // index in children_ of each exec_ entry's first child
  std::vector<Shape> in_shapes_;  // each exec_ entry's input shape in the last forward
  std::vector<int> planned_modes_;  // the children's modes when exec_ was planned
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Sequential)
