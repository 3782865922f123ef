// Activations between layers: a pointer + shape view, and workspaces that are allocated once per
// batch shape and reused every step (first touch of fresh memory is ~10x slower than reuse).
#pragma once

#include <algorithm>
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

// A promised shape (Layer::output_shape) may end with kAnyDims: any number (0 or more) of
// trailing dimensions of any extent follow. A layer written in Python promises only its batch,
// (N, kAnyDims), and a container after it can promise nothing, (kAnyDims).
constexpr index_t kAnyDims = -1;

inline bool is_partial(const Shape& s) { return !s.empty() && s.back() == kAnyDims; }

// Whether `actual` is a shape that `promised` allows.
inline bool shape_fits(const Shape& promised, const Shape& actual) {
  if (!is_partial(promised)) return promised == actual;
  const size_t fixed = promised.size() - 1;
  return actual.size() >= fixed && std::equal(promised.begin(), promised.begin() + fixed, actual.begin());
}

inline std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + (s[i] == kAnyDims ? "..." : std::to_string(s[i]));
  return out + (s.size() == 1 && s[0] != kAnyDims ? ",)" : ")");
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
