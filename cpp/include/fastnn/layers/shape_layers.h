// Layers that only change how the data is seen: Identity and Flatten (no copies).
#pragma once

#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class Identity : public Layer<T> {
 public:
  std::string kind() const override { return "Identity"; }
  Shape output_shape(const Shape& in) const override { return in; }
  View<T> forward(const View<T>& x, const Context&) override { return x; }
  View<T> backward(const View<T>& g, bool) override { return g; }
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override { return rx; }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool) override { return {g, rg}; }
};

// Flattens dimensions start_dim..end_dim (PyTorch defaults 1..-1) into one; the data is not moved.
template <class T>
class Flatten : public Layer<T> {
 public:
  explicit Flatten(int start_dim = 1, int end_dim = -1) : start_(start_dim), end_(end_dim) {}
  std::string kind() const override { return "Flatten"; }

  Shape output_shape(const Shape& in) const override {
    const int nd = static_cast<int>(in.size());
    const int s = start_ < 0 ? start_ + nd : start_, e = end_ < 0 ? end_ + nd : end_;
    FASTNN_CHECK(nd >= 1 && s >= 0 && e < nd && s <= e, "Flatten",
                 "start_dim=" << start_ << ", end_dim=" << end_ << " do not fit an input of shape " << shape_str(in));
    Shape out(in.begin(), in.begin() + s);
    index_t merged = 1;
    for (int i = s; i <= e; ++i) merged *= in[i];
    out.push_back(merged);
    out.insert(out.end(), in.begin() + e + 1, in.end());
    return out;
  }

  View<T> forward(const View<T>& x, const Context&) override {
    in_shape_ = x.shape;
    return View<T>{x.data, output_shape(x.shape)};
  }
  View<T> backward(const View<T>& g, bool) override { return View<T>{g.data, in_shape_}; }
  bool has_rop() const override { return true; }
  View<T> rop_forward(const View<T>& rx, const Context&) override {
    return View<T>{rx.data, output_shape(in_shape_)};
  }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool) override {
    return {View<T>{g.data, in_shape_}, View<T>{rg.data, in_shape_}};
  }

  int start_dim() const { return start_; }
  int end_dim() const { return end_; }

 private:
  int start_, end_;
  Shape in_shape_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Identity)
FASTNN_COMPILED_ONCE(fastnn::Flatten)
