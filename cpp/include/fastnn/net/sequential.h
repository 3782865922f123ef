// Sequential container: children run in order; their parameters are laid out back to back.
#pragma once

#include <algorithm>
#include <sstream>
#include <string>
#include <utility>

#include "fastnn/layers/activation.h"
#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/batchnorm_activation.h"
#include "fastnn/layers/conv.h"
#include "fastnn/layers/conv_batchnorm.h"
#include "fastnn/layers/dropout.h"
#include "fastnn/layers/layer.h"
#include "fastnn/layers/linear.h"

namespace fastnn {

template <class T>
class Sequential : public Layer<T> {
 public:
  explicit Sequential(std::vector<LayerPtr<T>> children) : children_(std::move(children)) {
    for (size_t i = 0; i < children_.size(); ++i)
      FASTNN_CHECK(children_[i] != nullptr, "Sequential", "child " << i << " is None");
    plan_execution();
  }

  std::string kind() const override { return "Sequential"; }
  const std::vector<LayerPtr<T>>& children() const { return children_; }

  std::vector<ParamSpec> param_specs() const override {
    std::vector<ParamSpec> out;
    for (size_t i = 0; i < children_.size(); ++i)
      for (auto p : children_[i]->param_specs()) {
        p.name = std::to_string(i) + "." + p.name;
        out.push_back(std::move(p));
      }
    return out;
  }

  void bind_params(T* params, T* grads) override {
    index_t offset = 0;
    for (auto& c : children_) {
      c->bind_params(params + offset, grads + offset);
      offset += c->num_params();
    }
  }
  bool lacks_param_buffer() const override { return false; }

  std::vector<StateSpec<T>> state() override {
    std::vector<StateSpec<T>> out;
    for (size_t i = 0; i < children_.size(); ++i)
      for (auto s : children_[i]->state()) {
        s.name = std::to_string(i) + "." + s.name;
        out.push_back(std::move(s));
      }
    return out;
  }

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

  void collect_layers(std::vector<Layer<T>*>& out) override {
    out.push_back(this);
    for (auto& c : children_) c->collect_layers(out);
  }

  bool reads_rows() const override { return !exec_.empty() && exec_[0]->reads_rows(); }
  View<T> forward_rows(const T* const* rows, const Shape& shape, const Context& ctx) override {
    replan_if_modes_changed();
    View<T> h = run_child(0, View<T>{nullptr, shape}, rows, ctx);
    for (size_t i = 1; i < exec_.size(); ++i) h = run_child(i, h, nullptr, ctx);
    return h;
  }

  // Each child's input gradient must have the shape of that child's input: the child before it
  // reads it as its output's gradient (a Python module returning more rows made a Linear write
  // out of bounds).
  View<T> backward(const View<T>& grad_out, bool need_input_grad) override {
    View<T> g = grad_out;
    for (size_t i = exec_.size(); i-- > 0;) {
      const bool need = i > 0 || need_input_grad;
      g = exec_[i]->backward(g, need);
      FASTNN_CHECK(!need || g.shape == in_shapes_[i], "Sequential",
                   child_name(i) << " returned an input gradient of shape " << shape_str(g.shape)
                                 << ", but its input had shape " << shape_str(in_shapes_[i]));
    }
    return g;
  }

  // True when every child writes its gradients on request and no layer owning parameters
  // appears twice (a shared layer's gradient is the sum over its uses: it must accumulate).
  bool supports_grad_overwrite() const override {
    std::vector<const Layer<T>*> owners;
    return collect_overwriters(owners);
  }
  void set_grad_overwrite(bool on) override {
    this->overwrite_grads = on;
    for (auto& c : children_) c->set_grad_overwrite(on);
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
  // in eval mode, applies BN's folded affine and the ReLU in the conv's output pass.
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
        exec_.push_back(std::make_shared<FusedConvBatchNorm<T>>(conv, conv_bn, relu, drop));
        exec_child_.push_back(i);
        i += 1 + relu + (drop ? 1 : 0);
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

  // Gives every descendant its own random stream.
  void assign_salts(std::uint64_t& next) {
    for (auto& c : children_) {
      c->salt = next++;
      if (auto* s = dynamic_cast<Sequential<T>*>(c.get())) s->assign_salts(next);
    }
  }

 private:
  // Runs exec_[i] on x (or on the rows of a batch of shape x.shape) and checks that its output has
  // the shape that its output_shape promised for that input, before the next child reads it (one
  // comparison of shapes per child and batch).
  View<T> run_child(size_t i, const View<T>& x, const T* const* rows, const Context& ctx) {
    Layer<T>& c = *exec_[i];
    const Shape promised = c.output_shape(x.shape);
    View<T> y = rows ? c.forward_rows(rows, x.shape, ctx) : c.forward(x, ctx);
    if (!shape_fits(promised, y.shape)) {
      std::ostringstream os;
      os << "[Sequential] " << child_name(i) << " returned shape " << shape_str(y.shape) << " for an input of shape "
         << shape_str(x.shape);
      if (is_partial(promised) && promised.size() == 2)
        os << ": its output must keep the batch (" << promised[0] << ") as its first dimension";
      else
        os << ", but its output_shape promised " << shape_str(promised);
      throw invalid_argument(os.str());
    }
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

  bool collect_overwriters(std::vector<const Layer<T>*>& owners) const {
    for (const auto& c : children_) {
      if (auto* s = dynamic_cast<const Sequential<T>*>(c.get())) {
        if (!s->collect_overwriters(owners)) return false;
        continue;
      }
      if (!c->supports_grad_overwrite()) return false;
      if (c->num_params() == 0) continue;
      if (std::find(owners.begin(), owners.end(), c.get()) != owners.end()) return false;
      owners.push_back(c.get());
    }
    return true;
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

  std::vector<LayerPtr<T>> children_;
  std::vector<LayerPtr<T>> exec_;  // children_ with fusable pairs merged
  std::vector<size_t> exec_child_;  // index in children_ of each exec_ entry's first child
  std::vector<Shape> in_shapes_;  // each exec_ entry's input shape in the last forward
  std::vector<int> planned_modes_;  // the children's modes when exec_ was planned
};

}  // namespace fastnn
