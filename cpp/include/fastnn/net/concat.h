// Concat container: every branch runs on the same input; their outputs are concatenated along
// dimension 1 (the channels of NCHW, the features of (N, F)): GoogLeNet's Inception block.
// The output is one preallocated buffer, each branch's output copied into its slice; backward
// gives each branch its slice of grad_out and dx is the sum of the branches' dx.
// Children "0", "1", ... in the order they run. The R-operator likewise: R{out} is the branches'
// R{y} concatenated, each branch gets its slices of grad_out and R{grad_out}, and R{dx} is the sum.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "fastnn/net/container.h"

namespace fastnn {

template <class T>
class Concat : public Container<T> {
 public:
  explicit Concat(std::vector<LayerPtr<T>> branches) : Container<T>(std::move(branches), "Concat") {
    FASTNN_CHECK(!this->children_.empty(), "Concat", "needs at least one branch");
    grads_.resize(this->children_.size());
    out_shapes_.resize(this->children_.size());
  }

  std::string kind() const override { return "Concat"; }

  // Unknown (kAnyDims) when a branch promises only part of its shape: checked at run time.
  Shape output_shape(const Shape& in) const override {
    std::vector<Shape> outs;
    for (const auto& b : this->children_) {
      outs.push_back(b->output_shape(in));
      if (is_partial(outs.back())) return {kAnyDims};
    }
    return joined(outs, in);
  }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    in_shape_ = x.shape;
    std::vector<View<T>> ys;
    for (size_t i = 0; i < this->children_.size(); ++i) {
      ys.push_back(this->checked_forward(*this->children_[i], label(i), x, nullptr, ctx));
      out_shapes_[i] = ys.back().shape;
    }
    View<T> y = out_.get(joined(out_shapes_, x.shape));
    // per sample, branch i's C_i * inner values go to channels [off_i, off_i + C_i)
    const index_t N = y.shape[0], row = y.size() / N;
    index_t off = 0;
    for (const auto& yi : ys) {
      const index_t part = yi.size() / N;
      copy_blocks(yi.data, part, y.data + off, row, N, part);
      off += part;
    }
    return y;
  }

  View<T> backward(const View<T>& grad_out, bool need_input_grad) override {
    const index_t N = grad_out.shape[0], row = grad_out.size() / N;
    View<T> dx = need_input_grad ? grad_in_.get(in_shape_) : View<T>{};
    index_t off = 0;
    for (size_t i = 0; i < this->children_.size(); ++i) {
      View<T> gi = grads_[i].get(out_shapes_[i]);
      const index_t part = gi.size() / N;
      copy_blocks(grad_out.data + off, row, gi.data, part, N, part);
      off += part;
      const View<T> d = this->children_[i]->backward(gi, need_input_grad);
      if (!need_input_grad) continue;
      this->check_grad(label(i), d, in_shape_);
      if (i == 0)
        std::copy(d.data, d.data + dx.size(), dx.data);
      else
        add_into(dx.data, d.data, dx.size());
    }
    return dx;
  }

  bool has_rop() const override { return this->children_have_rop(); }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    std::vector<View<T>> rs;
    bool any = false;
    for (size_t i = 0; i < this->children_.size(); ++i) {
      rs.push_back(this->children_[i]->rop_forward(rx, ctx));
      FASTNN_CHECK(rs.back().shape == out_shapes_[i], "Concat",
                   label(i) << " returned R{y} of shape " << shape_str(rs.back().shape)
                            << ", but its output had shape " << shape_str(out_shapes_[i]));
      any |= rs.back().data != nullptr;
    }
    const Shape out = joined(out_shapes_, in_shape_);
    if (!any) return View<T>{nullptr, out};  // every branch's R{y} is 0 (layer.h)
    View<T> ry = r_out_.get(out);
    const index_t N = ry.shape[0], row = ry.size() / N;
    index_t off = 0;
    for (const auto& ri : rs) {
      const index_t part = ri.size() / N;
      if (ri.data)
        copy_blocks(ri.data, part, ry.data + off, row, N, part);
      else
        for (index_t n = 0; n < N; ++n) std::fill(ry.data + n * row + off, ry.data + n * row + off + part, T(0));
      off += part;
    }
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    const index_t N = g.shape[0], row = g.size() / N;
    RopGrad<T> r;
    if (need_input_grad) r = {grad_in_.get(in_shape_), r_grad_in_.get(in_shape_)};
    if (r_grads_.size() != this->children_.size()) r_grads_.resize(this->children_.size());
    index_t off = 0;
    for (size_t i = 0; i < this->children_.size(); ++i) {
      View<T> gi = grads_[i].get(out_shapes_[i]), rgi = r_grads_[i].get(out_shapes_[i]);
      const index_t part = gi.size() / N;
      copy_blocks(g.data + off, row, gi.data, part, N, part);
      copy_blocks(rg.data + off, row, rgi.data, part, N, part);
      off += part;
      const RopGrad<T> d = this->children_[i]->rop_backward(gi, rgi, need_input_grad);
      if (!need_input_grad) continue;
      this->check_grad(label(i), d.grad, in_shape_);
      this->check_grad(label(i), d.rgrad, in_shape_);
      if (i == 0) {
        std::copy(d.grad.data, d.grad.data + r.grad.size(), r.grad.data);
        std::copy(d.rgrad.data, d.rgrad.data + r.rgrad.size(), r.rgrad.data);
      } else {
        add_into(r.grad.data, d.grad.data, r.grad.size());
        add_into(r.rgrad.data, d.rgrad.data, r.rgrad.size());
      }
    }
    return r;
  }

 private:
  std::string label(size_t i) const { return "branch " + this->names_[i] + " (" + this->children_[i]->kind() + ")"; }

  // The concatenation of shapes that agree in every dimension but 1.
  Shape joined(const std::vector<Shape>& outs, const Shape& in) const {
    Shape s = outs[0];
    for (size_t i = 0; i < outs.size(); ++i) {
      const Shape& o = outs[i];
      bool ok = o.size() >= 2 && o.size() == s.size();
      for (size_t d = 0; ok && d < o.size(); ++d) ok = d == 1 || o[d] == s[d];
      if (!ok) {
        std::string all;
        for (size_t j = 0; j < outs.size(); ++j) all += (j ? ", " : "") + shape_str(outs[j]);
        throw invalid_argument("[Concat] for an input of shape " + shape_str(in) + " the branches give " + all +
                               ": they must agree in every dimension but 1 (the channels) to be concatenated");
      }
      if (i > 0) s[1] += o[1];
    }
    return s;
  }

  Shape in_shape_;
  std::vector<Shape> out_shapes_;  // each branch's output shape in the last forward
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
  std::vector<Workspace<T>> grads_;  // each branch's slice of grad_out, contiguous
  std::vector<Workspace<T>> r_grads_;  // and of R{grad_out}
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Concat)
