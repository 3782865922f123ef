// Activations between layers: a pointer + shape view, and workspaces that are allocated once per
// batch shape and reused every step (first touch of fresh memory is ~10x slower than reuse).
#pragma once

#include <string>
#include <vector>

#include "fastnn/common.h"

namespace fastnn {

using Shape = std::vector<index_t>;

inline index_t numel(const Shape& s) {
  index_t n = 1;
  for (index_t d : s) n *= d;
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// A row-major tensor view; dimension 0 is the batch.
template <class T>
struct View {
  T* data = nullptr;
  Shape shape;

  index_t size() const { return numel(shape); }
  index_t batch() const { return shape.empty() ? 0 : shape[0]; }
  index_t features() const { return batch() ? size() / batch() : 0; }  // per-sample size
};

// Grows to the largest shape asked for and never shrinks, so steady-state training allocates nothing.
template <class T>
class Workspace {
 public:
  View<T> get(const Shape& shape) {
    const index_t n = numel(shape);
    if (static_cast<index_t>(buf_.size()) < n) buf_.resize(n);
    return View<T>{buf_.data(), shape};
  }

 private:
  std::vector<T> buf_;
};

}  // namespace fastnn
