// The one pass over the flat buffers that every first-order optimizer runs: penalties, then the
// optimizer's rule, then max-norm, block by block, in parallel over the trainable segments.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "fastnn/common.h"
#include "fastnn/optim/exact_sqrt.h"
#include "fastnn/optim/penalties.h"
#include "fastnn/optim/segments.h"

namespace fastnn {

// The fused optimizer pass: for every block of every trainable segment, the effective gradient
// is formed (penalties.h) and rule(offset, n, g) updates params[offset, offset + n) and the state
// arrays at the same offsets from the n values g. With max_norm > 0, the rows of DECAY segments
// with row_len > 0 are kept in one work item and renormed right after their update, while still
// in cache. `cost` is the work of one element in cycles, roughly, as measured single-threaded (Adam
// ~2: the loop is bound by memory, sqrt and division); it decides when a second thread pays.
template <class T, class Rule>
void fused_update(const SegmentTable& segs, T* params, const T* grads, const Penalties& pen, bool maximize, double lr,
                  index_t cost, Rule&& rule) {
  const bool renorm = pen.max_norm > 0;
  auto row_of = [&](index_t s) { return renorm && segs.decays(s) ? segs.row_len(s) : index_t(0); };
  const SegmentPlan plan(segs, row_of);
  plan.for_each(cost, [&](index_t, index_t s, index_t begin, index_t end) {
    T scratch[kOptimBlock];
    const index_t base = segs.offset(s);
    const bool decays = segs.decays(s);
    auto update = [&](index_t from, index_t to) {  // [from, to) relative to base, in blocks
      for (index_t o = from; o < to; o += kOptimBlock) {
        const index_t n = std::min(kOptimBlock, to - o);
        const T* g = effective_gradient(pen, decays, maximize, lr, params + base + o, grads + base + o, n, scratch);
        rule(base + o, n, g);
      }
    };
    const index_t row = row_of(s);
    if (row > 0) {
      for (index_t r = begin; r < end; r += row) {
        update(r, r + row);
        renorm_row(params + base + r, row, static_cast<T>(pen.max_norm));
      }
    } else {
      update(begin, end);
    }
  });
}

// a <- torch.lerp(a, b, w) = a + w (b - a), computed as PyTorch does (aten/src/ATen/native/Lerp.h):
// from the nearer end, so that w = 1 gives exactly b.
template <class A, class B>
void lerp_(A&& a, const B& b, double weight) {
  using T = typename std::decay_t<A>::Scalar;
  const T w = static_cast<T>(weight);
  if (std::abs(weight) < 0.5)
    a += w * (b - a);
  else
    a = b - (b - a) * (T(1) - w);
}

}  // namespace fastnn

