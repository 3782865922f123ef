// What every container (Sequential, Residual, Concat, DenseBlock) does for its children, in one
// place: named children whose parameters lie back to back in the flat buffer (in child order,
// which is the order they run), prefixed param/state names, the descendants for the model lock,
// gradient-overwrite eligibility, random-stream salts, and the checks of what a child (possibly
// a layer written in Python) returns. A new container passes its children and their names to this
// base and implements kind, output_shape, forward and backward with checked_forward/check_grad.
#pragma once

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fastnn/layers/layer.h"

namespace fastnn {

template <class T>
class Container : public Layer<T> {
 public:
  // Children as they are saved: their parameters and state named "<name>.<param>".
  const std::vector<LayerPtr<T>>& children() const { return children_; }
  const std::vector<std::string>& child_names() const { return names_; }

  std::vector<ParamSpec> param_specs() const override {
    std::vector<ParamSpec> out;
    for (size_t i = 0; i < children_.size(); ++i)
      for (auto p : children_[i]->param_specs()) {
        p.name = names_[i] + "." + p.name;
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
  bool trains_params() const override {
    return std::any_of(children_.begin(), children_.end(), [](const LayerPtr<T>& c) { return c->trains_params(); });
  }

  // The direction of an R-operator pass, sliced as the parameters are (null: unbinds it).
  void bind_direction(const T* v, T* hv) override {
    index_t offset = 0;
    for (auto& c : children_) {
      c->bind_direction(v ? v + offset : nullptr, hv ? hv + offset : nullptr);
      offset += c->num_params();
    }
  }
  // A container has the R-operator when it implements the pair and every child has it.
  bool children_have_rop() const {
    return std::all_of(children_.begin(), children_.end(), [](const LayerPtr<T>& c) { return c->has_rop(); });
  }

  std::vector<StateSpec<T>> state() override {
    std::vector<StateSpec<T>> out;
    for (size_t i = 0; i < children_.size(); ++i)
      for (auto s : children_[i]->state()) {
        s.name = names_[i] + "." + s.name;
        out.push_back(std::move(s));
      }
    return out;
  }

  void collect_layers(std::vector<Layer<T>*>& out) override {
    out.push_back(this);
    for (auto& c : children_) c->collect_layers(out);
  }

  // True when every descendant writes its gradients on request and no layer owning parameters
  // appears twice (a shared layer's gradient is the sum over its uses: it must accumulate).
  bool supports_grad_overwrite() const override {
    std::vector<const Layer<T>*> owners;
    return collect_overwriters(owners);
  }
  void set_grad_overwrite(bool on) override {
    this->overwrite_grads = on;
    for (auto& c : children_) c->set_grad_overwrite(on);
  }

  // Gives every descendant its own random stream.
  void assign_salts(std::uint64_t& next) {
    for (auto& c : children_) {
      c->salt = next++;
      if (auto* s = dynamic_cast<Container<T>*>(c.get())) s->assign_salts(next);
    }
  }

 protected:
  // Children named "0", "1", ... (Sequential, Concat).
  Container(std::vector<LayerPtr<T>> children, const std::string& kind) : children_(std::move(children)) {
    for (size_t i = 0; i < children_.size(); ++i) names_.push_back(std::to_string(i));
    check_children(kind);
  }
  Container(std::vector<LayerPtr<T>> children, std::vector<std::string> names, const std::string& kind)
      : children_(std::move(children)), names_(std::move(names)) {
    check_children(kind);
  }
  void check_children(const std::string& kind) const {
    FASTNN_CHECK(children_.size() == names_.size(), kind, children_.size() << " children but " << names_.size() << " names");
    for (size_t i = 0; i < children_.size(); ++i)
      FASTNN_CHECK(children_[i] != nullptr, kind, "child " << names_[i] << " is None");
  }

  // Runs child c (described as `label` in errors, e.g. "child 2 (Linear+relu)") on x, or on the
  // rows of a batch of shape x.shape, and checks that its output has the shape its output_shape
  // promised for that input, before anything reads it (one comparison of shapes per child and batch).
  View<T> checked_forward(Layer<T>& c, const std::string& label, const View<T>& x, const T* const* rows,
                          const Context& ctx) const {
    const Shape promised = c.output_shape(x.shape);
    View<T> y = rows ? c.forward_rows(rows, x.shape, ctx) : c.forward(x, ctx);
    if (!shape_fits(promised, y.shape)) {
      std::ostringstream os;
      os << "[" << this->kind() << "] " << label << " returned shape " << shape_str(y.shape) << " for an input of shape "
         << shape_str(x.shape);
      if (is_partial(promised) && promised.size() == 2)
        os << ": its output must keep the batch (" << promised[0] << ") as its first dimension";
      else
        os << ", but its output_shape promised " << shape_str(promised);
      throw invalid_argument(os.str());
    }
    return y;
  }

  // A child's input gradient must have the shape of that child's input: whatever reads it next
  // (the child before it, or a sum of gradients) relies on it (a Python module returning more
  // rows made a Linear write out of bounds).
  void check_grad(const std::string& label, const View<T>& g, const Shape& in) const {
    FASTNN_CHECK(g.shape == in, this->kind(),
                 label << " returned an input gradient of shape " << shape_str(g.shape) << ", but its input had shape "
                       << shape_str(in));
  }

  std::vector<LayerPtr<T>> children_;
  std::vector<std::string> names_;

 private:
  bool collect_overwriters(std::vector<const Layer<T>*>& owners) const {
    for (const auto& c : children_) {
      if (auto* s = dynamic_cast<const Container<T>*>(c.get())) {
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
};

// y = a + b, and dst += src: sums of two outputs or gradients of one shape (n values), on the
// threads their size is worth (elementwise: the same bits for any thread count).
template <class T>
void add(const T* a, const T* b, T* y, index_t n) {
  parallel_for(n, 1, [=](index_t begin, index_t end) {
#pragma omp simd
    for (index_t i = begin; i < end; ++i) y[i] = a[i] + b[i];
  });
}
template <class T>
void add_into(T* dst, const T* src, index_t n) {
  add<T>(dst, src, dst, n);
}

// Copies n blocks of `len` values from src (blocks src_ld apart) to dst (blocks dst_ld apart):
// one branch's channels to or from their slice of every sample.
template <class T>
void copy_blocks(const T* src, index_t src_ld, T* dst, index_t dst_ld, index_t n, index_t len) {
  parallel_for(n, len, [=](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) std::memcpy(dst + i * dst_ld, src + i * src_ld, sizeof(T) * len);
  });
}

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::Container)
