// The one pass over the flat buffers that every first-order optimizer runs: penalties, then the
// optimizer's rule, then max-norm, block by block, in parallel over the trainable segments.
#pragma once

#include <algorithm>

#include "fastnn/common.h"
#include "fastnn/optim/penalties.h"
#include "fastnn/optim/segments.h"

namespace fastnn {

// The `cost` (see parallel_for) of one element of the optimizers' single-pass SIMD loops
// (simd.h). They take 0.3-0.6 ns per element on one core, bound by the L2 cache and memory
// bandwidth, which a second core adds to: measured with Adam on 2 cores, two threads pay from
// 12-16K elements (8K: 2.1 us on one thread, 2.5 us on two; 16K: 3.9 vs 3.3; 26.6K: 7.0 vs
// 5.4). With 4, parallel_for goes parallel from 2 * kMinWorkPerThread / 4 = 16K elements.
constexpr index_t kFusedUpdateCost = 4;

// The fused optimizer pass: for every block of every trainable segment, the effective gradient
// is formed (penalties.h) and rule(offset, n, g, param_scale) updates params[offset, offset + n)
// (first p <- p*param_scale: decoupled weight decay) and the state arrays at the same offsets
// from the n values g. With max_norm > 0, the rows of DECAY segments with row_len > 0 are kept
// in one work item and renormed right after their update, while still in cache. `cost` is the
// work of one element; it decides when a second thread pays.
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
        const auto eg = effective_gradient(pen, decays, maximize, lr, params + base + o, grads + base + o, n, scratch);
        rule(base + o, n, eg.grad, eg.param_scale);
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

}  // namespace fastnn

