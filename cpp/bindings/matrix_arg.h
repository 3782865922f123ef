// MatrixArg: a 2-D ndarray argument mapped for Eigen without copying when its layout allows.
#pragma once

#include "bindings/arrays.h"

namespace fastnn::bind {

// A zero-copy view of 2-D `a` for Eigen: row-major when the elements of a row are adjacent
// (C order, column slices), column-major when those of a column are (a.T, Fortran order). Any
// other layout (a[:, ::2], negative strides) is copied to C order here, while we hold the GIL.
template <class T>
struct MatrixArg {
  py::array keep;  // owns the copy, if one was made
  const T* data;
  index_t rows, cols, outer;
  bool col_major;

  MatrixArg(const py::array& a, const char* op, const char* name) : keep(a), rows(a.shape(0)), cols(a.shape(1)) {
    const py::ssize_t sz = sizeof(T);
    const py::ssize_t s0 = rows == 1 ? cols * sz : a.strides(0), s1 = cols == 1 ? sz : a.strides(1);
    if (s1 == sz && s0 > 0 && s0 % sz == 0 && s0 / sz >= cols) {
      col_major = false, outer = s0 / sz;
    } else if (s0 == sz && s1 > 0 && s1 % sz == 0 && s1 / sz >= rows) {
      col_major = true, outer = s1 / sz;
    } else {
      keep = c_array<T>(a, op, name);
      col_major = false, outer = cols;
    }
    data = static_cast<const T*>(keep.data());
  }

  // Calls f(map) with the matching Eigen map; needs no GIL.
  template <class F>
  void visit(F&& f) const {
    if (col_major)
      f(Eigen::Map<const ColMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>(data, rows, cols, Eigen::OuterStride<>(outer)));
    else
      f(CMatMap<T>(data, rows, cols, Eigen::OuterStride<>(outer)));
  }
};

}  // namespace fastnn::bind
