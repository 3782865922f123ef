// Residual container: out = body(x) + shortcut(x), the shortcut the identity when null (ResNet's
// addition shortcut). Backward gives both children the same grad_out; dx = dx_body + dx_shortcut.
// Children "body" and "shortcut"; the body's parameters come first (it is registered first).
// The R-operator likewise: R{out} = R{body(x)} + R{shortcut(x)}, R{dx} = R{dx_body} + R{dx_shortcut}.
#pragma once

#include <string>
#include <utility>

#include "fastnn/net/container.h"

namespace fastnn {

template <class T>
class Residual : public Container<T> {
 public:
  Residual(LayerPtr<T> body, LayerPtr<T> shortcut)
      : Container<T>(shortcut ? std::vector<LayerPtr<T>>{body, shortcut} : std::vector<LayerPtr<T>>{body},
                     shortcut ? std::vector<std::string>{"body", "shortcut"} : std::vector<std::string>{"body"},
                     "Residual") {}

  std::string kind() const override { return "Residual"; }
  Layer<T>& body() const { return *this->children_[0]; }
  Layer<T>* shortcut() const { return this->children_.size() > 1 ? this->children_[1].get() : nullptr; }

  // Both paths must give one shape. A path that promises only part of its shape (a layer written
  // in Python inside it) is checked at run time against the other.
  Shape output_shape(const Shape& in) const override {
    const Shape b = body().output_shape(in);
    const Shape s = shortcut() ? shortcut()->output_shape(in) : in;
    if (is_partial(b) && is_partial(s)) return b.size() >= s.size() ? b : s;  // the longer promise
    check_paths(b, s, in);
    return is_partial(b) ? s : b;
  }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    in_shape_ = x.shape;
    const View<T> yb = this->checked_forward(body(), label(0), x, nullptr, ctx);
    const View<T> ys = shortcut() ? this->checked_forward(*shortcut(), label(1), x, nullptr, ctx) : x;
    check_paths(yb.shape, ys.shape, x.shape);
    View<T> y = out_.get(yb.shape);
    add(yb.data, ys.data, y.data, y.size());
    return y;
  }

  View<T> backward(const View<T>& grad_out, bool need_input_grad) override {
    const View<T> gb = body().backward(grad_out, need_input_grad);
    if (need_input_grad) this->check_grad(label(0), gb, in_shape_);
    const View<T> gs = shortcut() ? shortcut()->backward(grad_out, need_input_grad) : grad_out;
    if (!need_input_grad) return {};
    if (shortcut()) this->check_grad(label(1), gs, in_shape_);
    View<T> dx = grad_in_.get(in_shape_);
    add(gb.data, gs.data, dx.data, dx.size());
    return dx;
  }

  bool has_rop() const override { return this->children_have_rop(); }
  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    // a path's R{y} may be a view without data: 0 (layer.h)
    const View<T> rb = body().rop_forward(rx, ctx);
    const View<T> rs = shortcut() ? shortcut()->rop_forward(rx, ctx) : View<T>{rx.data, in_shape_};
    check_paths(rb.shape, rs.shape, in_shape_);
    if (!rb.data || !rs.data) return rb.data ? rb : rs;
    View<T> ry = r_out_.get(rb.shape);
    add(rb.data, rs.data, ry.data, ry.size());
    return ry;
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    const RopGrad<T> b = body().rop_backward(g, rg, need_input_grad);
    const RopGrad<T> s = shortcut() ? shortcut()->rop_backward(g, rg, need_input_grad) : RopGrad<T>{g, rg};
    if (!need_input_grad) return {};
    this->check_grad(label(0), b.rgrad, in_shape_);
    if (shortcut()) this->check_grad(label(1), s.rgrad, in_shape_);
    RopGrad<T> r{grad_in_.get(in_shape_), r_grad_in_.get(in_shape_)};
    add(b.grad.data, s.grad.data, r.grad.data, r.grad.size());
    add(b.rgrad.data, s.rgrad.data, r.rgrad.data, r.rgrad.size());
    return r;
  }

 private:
  std::string label(size_t i) const { return this->names_[i] + " (" + this->children_[i]->kind() + ")"; }

  void check_paths(const Shape& b, const Shape& s, const Shape& in) const {
    FASTNN_CHECK(shape_fits(b, s) || shape_fits(s, b), kind(),
                 "for an input of shape " << shape_str(in) << " the body gives " << shape_str(b) << " but the "
                                          << (shortcut() ? "shortcut" : "identity shortcut") << " gives "
                                          << shape_str(s) << ": they must have one shape to be added");
  }

  Shape in_shape_;
  Workspace<T> out_, grad_in_, r_out_, r_grad_in_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Residual)
