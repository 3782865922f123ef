// The segment table of a flat parameter buffer as an argument: validated once here for the
// optimizer kernels and for the epoch loop's gradient clipping (both index the buffer with it).
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "bindings/arrays.h"
#include "fastnn/optim/segments.h"

namespace fastnn::bind {

using I64Array = py::array_t<std::int64_t, py::array::c_style>;

// The segment table: (k, 3) or (k, 4) int64 rows [offset, size, flags(, row_len)] inside a buffer
// of n elements; segments must not overlap (threads update them concurrently).
struct SegmentArg {
  I64Array keep;
  SegmentTable table;
};

inline SegmentArg segments_arg(const py::handle& h, const char* op, index_t n) {
  py::array a = as_ndarray(h, op, "segments");
  if (!a.dtype().equal(py::dtype::of<std::int64_t>()))
    type_error(op, "segments must be int64, got " + dtype_str(a));
  if (a.ndim() != 2 || (a.shape(1) != 3 && a.shape(1) != 4))
    value_error(op, "segments must have shape (k, 3) or (k, 4) [offset, size, flags(, row_len)], got " + shape_str(a));
  SegmentArg s{c_array<std::int64_t>(a, op, "segments"), {}};
  s.table = SegmentTable{s.keep.data(), static_cast<index_t>(a.shape(0)), static_cast<index_t>(a.shape(1))};
  const SegmentTable& t = s.table;
  std::vector<std::pair<index_t, index_t>> spans;
  for (index_t i = 0; i < t.count; ++i) {
    auto row = [i] { return "segments row " + std::to_string(i) + ": "; };  // built only for an error
    if (t.offset(i) < 0 || t.size(i) < 0 || t.offset(i) > n - t.size(i))
      value_error(op, row() + "[offset " + std::to_string(t.offset(i)) + ", size " + std::to_string(t.size(i)) +
                          "] is outside the buffer of " + std::to_string(n) + " elements");
    if (t.flags(i) < 0 || t.flags(i) > (kSegmentTrainable | kSegmentDecay))
      value_error(op, row() + "flags must be a combination of TRAINABLE=1 and DECAY=2, got " + std::to_string(t.flags(i)));
    if (t.row_len(i) < 0 || (t.row_len(i) > 0 && t.size(i) % t.row_len(i) != 0))
      value_error(op, row() + "row_len " + std::to_string(t.row_len(i)) + " does not divide size " +
                          std::to_string(t.size(i)));
    if (t.size(i) > 0) spans.emplace_back(t.offset(i), t.offset(i) + t.size(i));
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second)
      value_error(op, "segments overlap: [" + std::to_string(spans[i - 1].first) + ", " +
                          std::to_string(spans[i - 1].second) + ") and [" + std::to_string(spans[i].first) + ", " +
                          std::to_string(spans[i].second) + ")");
  return s;
}

}  // namespace fastnn::bind
