// The finiteness check fit() runs on its data before training: a scan of the whole data set
// (188 MB for Fashion-MNIST in float32), which NumPy does on one thread.
#pragma once

#include <cmath>
#include <vector>

#include "fastnn/common.h"

namespace fastnn {

// Flat index of the first NaN or infinity in x[0..n), or -1. Blocks are tested in parallel with
// one vectorized sum each (x - x is 0 exactly when x is finite, NaN otherwise); only a failing
// block is rescanned element by element.
template <class T>
index_t first_nonfinite(const T* x, index_t n) {
  constexpr index_t kBlock = 1 << 14;
  const index_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<unsigned char> bad(static_cast<size_t>(blocks), 0);
  parallel_for(blocks, kBlock, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const CArrMap<T> a(x + b * kBlock, std::min(kBlock, n - b * kBlock));
      bad[b] = !std::isfinite((a - a).sum());
    }
  });
  for (index_t b = 0; b < blocks; ++b) {
    if (!bad[b]) continue;
    for (index_t i = b * kBlock, e = std::min(n, i + kBlock); i < e; ++i)
      if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace fastnn
