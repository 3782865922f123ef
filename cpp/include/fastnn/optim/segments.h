// The segment table of a flat parameter buffer and the fused, parallel walk over its trainable
// segments that every first-order optimizer and gradient clipper shares.
//
// A model's parameters are views into one flat array (python/fastnn/nn/parameter.py); the table
// has one row per parameter: [offset, size, flags] or [offset, size, flags, row_len], int64.
// row_len is the length of one row (a unit's incoming weights, prod(shape[1:])) of a parameter
// with ndim >= 2 and 0 otherwise; it is only used by the max-norm constraint.
#pragma once

#include <algorithm>
#include <vector>

#include "fastnn/common.h"

namespace fastnn {

enum SegmentFlags : index_t {
  kSegmentTrainable = 1,  // receives gradients and updates (requires_grad)
  kSegmentDecay = 2,      // weight decay, L1 and max-norm apply (every parameter of a group unless it opted out)
};

// A read-only view of a row-major (count, cols) int64 segment table, cols = 3 or 4.
struct SegmentTable {
  const index_t* data = nullptr;
  index_t count = 0;
  index_t cols = 3;

  index_t offset(index_t i) const { return data[i * cols]; }
  index_t size(index_t i) const { return data[i * cols + 1]; }
  index_t flags(index_t i) const { return data[i * cols + 2]; }
  index_t row_len(index_t i) const { return cols > 3 ? data[i * cols + 3] : 0; }
  bool trainable(index_t i) const { return (flags(i) & kSegmentTrainable) != 0; }
  bool decays(index_t i) const { return (flags(i) & kSegmentDecay) != 0; }
};

// Elements per block: the scratch gradient of one block (a stack array) stays in L1 cache.
constexpr index_t kOptimBlock = 1024;
// Elements per parallel work item: the unit of thread scheduling (and of partial sums). Small
// enough to split a 26K-parameter model evenly over two threads.
constexpr index_t kOptimItem = 4096;

// The trainable segments cut into independent work items of at most kOptimItem elements (at
// least one whole unit). `unit(i)` is the number of elements that must stay in one item (a row
// for max-norm, else 1). Items are numbered in table order, so a reduction that stores one
// partial result per item and adds them in order does not depend on the thread count.
class SegmentPlan {
 public:
  template <class Unit>
  SegmentPlan(const SegmentTable& segs, Unit&& unit)
      : segs_(segs), first_(segs.count + 1, 0), start_(segs.count + 1, 0), per_item_(segs.count, 1) {
    for (index_t i = 0; i < segs.count; ++i) {
      index_t items = 0;
      if (segs.trainable(i) && segs.size(i) > 0) {
        const index_t u = std::max<index_t>(1, unit(i));
        per_item_[i] = u * std::max<index_t>(1, kOptimItem / u);
        items = (segs.size(i) + per_item_[i] - 1) / per_item_[i];
      }
      first_[i + 1] = first_[i] + items;
      start_[i + 1] = start_[i] + (items > 0 ? segs.size(i) : 0);
    }
    elements_ = start_.back();
  }

  index_t items() const { return first_.back(); }
  index_t elements() const { return elements_; }  // in all items

  // Calls visit(item, segment, begin, end) for every item, in parallel over items; [begin, end)
  // is relative to the segment's offset. `cost` is the work of one element: the loop goes
  // parallel when the elements' total work is worth a second thread. The threads share the
  // elements, not the items, equally (small segments make small items), to within half an item:
  // a thread visits the items whose middle is in its share.
  template <class Visit>
  void for_each(index_t cost, Visit&& visit) const {
    if (items() == 0) return;
    constexpr index_t kGrain = 256;  // elements per unit of the split
    const index_t grains = (elements_ + kGrain - 1) / kGrain;
    parallel_for(grains, kGrain * cost, [&](index_t g0, index_t g1) {
      const index_t i0 = first_item_from(g0 * kGrain), i1 = first_item_from(g1 * kGrain);
      if (i0 >= i1) return;
      index_t s = std::upper_bound(first_.begin(), first_.end(), i0) - first_.begin() - 1;
      for (index_t it = i0; it < i1; ++it) {
        while (first_[s + 1] <= it) ++s;
        const index_t begin = (it - first_[s]) * per_item_[s];
        visit(it, s, begin, std::min(segs_.size(s), begin + per_item_[s]));
      }
    });
  }

 private:
  // Twice the middle of item it, counted in the elements of all items in table order.
  index_t twice_middle(index_t it) const {
    const index_t s = std::upper_bound(first_.begin(), first_.end(), it) - first_.begin() - 1;
    const index_t begin = (it - first_[s]) * per_item_[s];
    return 2 * (start_[s] + begin) + std::min(per_item_[s], segs_.size(s) - begin);
  }

  // The first item whose middle is at or after element e (items() if none).
  index_t first_item_from(index_t e) const {
    index_t lo = 0, hi = items();
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (twice_middle(mid) < 2 * e)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }

  SegmentTable segs_;
  std::vector<index_t> first_;     // first_[i]: number of the first item of segment i
  std::vector<index_t> start_;     // start_[i]: elements of the items of segments before i
  std::vector<index_t> per_item_;  // elements per item in segment i
  index_t elements_ = 0;
};

// sum_i f(x[i]) accumulated in Acc over 16 fixed lanes, then in order: the same bits for any
// address alignment and thread count (Eigen's reductions start at the first aligned element, so
// their order depends on where the buffer happens to be allocated).
template <class Acc, class T, class F>
Acc ordered_sum(const T* x, index_t n, F&& f) {
  constexpr index_t kLanes = 16;
  Acc lanes[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (index_t j = 0; j < kLanes; ++j) lanes[j] += f(static_cast<Acc>(x[i + j]));
  Acc total = 0;
  for (index_t j = 0; j < kLanes; ++j) total += lanes[j];
  for (; i < n; ++i) total += f(static_cast<Acc>(x[i]));
  return total;
}

}  // namespace fastnn
