// NumPy <-> C++ boundary: every argument is checked here (type, dtype, ndim, shape, size) and
// mapped without copies. Errors name the op and the argument: "[op] x must be ..., got ...".
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "fastnn/common.h"
#include "fastnn/layers/tensor.h"

namespace fastnn::bind {

namespace py = pybind11;

template <class T> using CArray = py::array_t<T, py::array::c_style>;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The extents of `a`, as new_array and check_shape take them.
inline std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void value_error(const char* op, const std::string& msg) {
  throw py::value_error("[" + std::string(op) + "] " + msg);
}
[[noreturn]] inline void type_error(const char* op, const std::string& msg) {
  throw py::type_error("[" + std::string(op) + "] " + msg);
}
[[noreturn]] inline void memory_error(const char* op, const std::string& msg) {
  PyErr_SetString(PyExc_MemoryError, ("[" + std::string(op) + "] " + msg).c_str());
  throw py::error_already_set();
}

inline std::string bytes_str(double bytes) {
  const char* unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
  return buf;
}

// `h` as a C-contiguous array of element type E: `h` itself when it already is one, else a copy
// (of a strided view, or a cast with py::array::forcecast). pybind11's array_t::ensure returns a
// null handle and clears the error when that copy cannot be allocated, and the kernels then read
// through null: every conversion in the bindings goes through here instead, and a failed
// allocation is a MemoryError naming the op.
template <class E, int Flags = py::array::c_style>
py::array_t<E, Flags> c_array(const py::handle& h, const char* op, const char* name) {
  try {
    return py::array_t<E, Flags>(py::reinterpret_borrow<py::object>(h));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_MemoryError)) throw;
    std::string what = std::string(name) + " needs a C-contiguous copy";
    if (py::isinstance<py::array>(h)) {
      const auto a = py::reinterpret_borrow<py::array>(h);
      what += " of shape " + shape_str(a) + " (" + bytes_str(double(a.size()) * sizeof(E)) + ")";
    }
    memory_error(op, what + ", which could not be allocated");
  }
}

// `h` as an ndarray (TypeError for lists, tensors, scalars: no silent conversion).
inline py::array as_ndarray(const py::handle& h, const char* op, const char* name) {
  if (!py::isinstance<py::array>(h))
    type_error(op, std::string(name) + " must be a numpy.ndarray, got " +
                       py::str(py::type::of(h).attr("__name__")).cast<std::string>());
  return py::reinterpret_borrow<py::array>(h);
}

template <class T> const char* dtype_name() { return sizeof(T) == 4 ? "float32" : "float64"; }

// Calls f(float{}) or f(double{}) by the dtype of `a`; anything else is a TypeError.
template <class F>
decltype(auto) dispatch_float(const py::handle& h, const char* op, const char* name, F&& f) {
  py::array a = as_ndarray(h, op, name);
  if (a.dtype().equal(py::dtype::of<float>())) return f(float{});
  if (a.dtype().equal(py::dtype::of<double>())) return f(double{});
  type_error(op, std::string(name) + " must be float32 or float64, got " + dtype_str(a));
}

inline void check_ndim(const py::array& a, const char* op, const char* name, std::initializer_list<int> allowed,
                       const char* what = nullptr) {
  for (int d : allowed)
    if (a.ndim() == d) return;
  std::string want;
  if (what) {
    want = what;
  } else {
    for (int d : allowed) want += (want.empty() ? "" : " or ") + std::to_string(d) + "-D";
  }
  value_error(op, std::string(name) + " must be " + want + ", got shape " + shape_str(a));
}

// Shape equality; -1 in `want` matches any extent.
inline void check_shape(const py::array& a, const char* op, const char* name, const std::vector<py::ssize_t>& want) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t i = 0; ok && i < want.size(); ++i) ok = want[i] < 0 || a.shape(i) == want[i];
  if (ok) return;
  std::string w = "(";
  for (size_t i = 0; i < want.size(); ++i)
    w += (i ? ", " : "") + (want[i] < 0 ? std::string("*") : std::to_string(want[i]));
  w += want.size() == 1 ? ",)" : ")";
  value_error(op, std::string(name) + " must have shape " + w + ", got " + shape_str(a));
}

inline void check_nonempty(const py::array& a, const char* op, const char* name) {
  if (a.size() == 0) value_error(op, std::string(name) + " is empty (shape " + shape_str(a) + ")");
}

// Output buffers are recycled. A fresh multi-megabyte NumPy array is mmapped by glibc and
// returned to the OS when freed, so every call pays its page faults again (first touch runs at
// ~3 GB/s: 1.5 ms for the two 4 MB arrays of a ReLU forward+backward, 4x the kernels' time).
// Freed output buffers go back to a size-keyed pool instead (bounded), as PyTorch's caching
// allocator does; small arrays use NumPy's allocator.
class BufferPool {
 public:
  static constexpr size_t kMinBytes = 256 * 1024;
  static constexpr size_t kMaxPooledBytes = 256u * 1024 * 1024;

  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();  // never destroyed: capsules may outlive static teardown
    return *pool;
  }
  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        pooled_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void put(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (pooled_ + bytes > kMaxPooledBytes) {
      std::free(p);
      return;
    }
    free_.emplace(bytes, p);
    pooled_ += bytes;
  }
  // Returns every pooled buffer to the system; the number of bytes released.
  size_t release() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    size_t n = pooled_;
    pooled_ = 0;
    return n;
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t pooled_ = 0;
};

// A new C-contiguous output array (uninitialized), from the pool when it is large.
template <class T>
CArray<T> new_array(const std::vector<py::ssize_t>& shape) {
  // An allocation that fails, or a product of extents that overflows (including the rounding up
  // below), is a MemoryError that says what was asked for.
  auto fail = [&shape](double bytes) {
    const std::string s = fastnn::shape_str(Shape(shape.begin(), shape.end()));
    PyErr_SetString(PyExc_MemoryError, ("cannot allocate an output array of shape " + s + " " + dtype_name<T>() +
                                        " (" + bytes_str(bytes) + ")").c_str());
    throw py::error_already_set();
  };
  size_t n = sizeof(T);
  double approx = sizeof(T);
  for (py::ssize_t d : shape) {
    approx *= static_cast<double>(d);
    if (d < 0 || __builtin_mul_overflow(n, static_cast<size_t>(d), &n)) fail(approx);
  }
  if (n > static_cast<size_t>(PTRDIFF_MAX) - 4096) fail(approx);
  const size_t bytes = (std::max<size_t>(n, 1) + 4095) / 4096 * 4096;
  if (bytes < BufferPool::kMinBytes) return CArray<T>(shape);
  struct Block {
    void* data;
    size_t bytes;
  };
  void* data = nullptr;
  try {
    data = BufferPool::instance().get(bytes);
  } catch (const std::bad_alloc&) {
    fail(static_cast<double>(n));
  }
  auto* block = new Block{data, bytes};
  py::capsule owner(block, [](void* b) {
    auto* blk = static_cast<Block*>(b);
    BufferPool::instance().put(blk->data, blk->bytes);
    delete blk;
  });
  return CArray<T>(shape, static_cast<T*>(block->data), owner);
}

// Input array of dtype T, non-empty, C-contiguous. Strided views are copied once here (the
// kernels read memory linearly); a wrong dtype is a TypeError, never converted.
template <class T>
CArray<T> in(const py::handle& h, const char* op, const char* name, bool allow_empty = false) {
  py::array a = as_ndarray(h, op, name);
  if (!a.dtype().equal(py::dtype::of<T>()))
    type_error(op, std::string(name) + " must be " + dtype_name<T>() + " like the other inputs, got " + dtype_str(a));
  if (!allow_empty) check_nonempty(a, op, name);
  return c_array<T>(a, op, name);
}

// Array updated in place (running statistics, out=): must already be C-contiguous, writeable and
// of dtype T, since a copy would silently drop the update.
template <class T>
CArray<T> inout(const py::handle& h, const char* op, const char* name) {
  py::array a = as_ndarray(h, op, name);
  if (!a.dtype().equal(py::dtype::of<T>()))
    type_error(op, std::string(name) + " must be " + dtype_name<T>() + ", got " + dtype_str(a));
  if (!a.attr("flags").attr("c_contiguous").cast<bool>())
    value_error(op, std::string(name) + " is updated in place and must be C-contiguous");
  if (!a.writeable()) value_error(op, std::string(name) + " is updated in place and must be writeable");
  return py::reinterpret_borrow<CArray<T>>(a);
}

// Scalars that must be finite (and optionally in a range) are checked here, not in the kernels.
inline void check_finite(double v, const char* op, const char* name) {
  if (!std::isfinite(v)) value_error(op, std::string(name) + " must be finite, got " + std::to_string(v));
}

// The bytes [lo, hi) that an array's elements can occupy, from its shape and strides (a strided
// or transposed view spans more than nbytes; negative strides reach below data()). {0, 0} when it
// has no elements.
inline std::pair<std::uintptr_t, std::uintptr_t> byte_extent(const py::array& x) {
  std::uintptr_t lo = reinterpret_cast<std::uintptr_t>(x.data()), hi = lo;
  for (py::ssize_t i = 0; i < x.ndim(); ++i) {
    if (x.shape(i) == 0) return {0, 0};
    const py::ssize_t reach = x.strides(i) * (x.shape(i) - 1);
    if (reach < 0) lo -= static_cast<std::uintptr_t>(-reach);
    else hi += static_cast<std::uintptr_t>(reach);
  }
  return {lo, hi + static_cast<std::uintptr_t>(x.itemsize())};
}

// True if two arrays may share memory (their byte extents intersect): out= and arrays updated in
// place must not alias an input. Conservative, like numpy.may_share_memory: an input that only
// interleaves with `a` (a[:, ::2] and a[:, 1::2]) counts as overlapping.
inline bool overlaps(const py::array& a, const py::array& b) {
  auto [a0, a1] = byte_extent(a);
  auto [b0, b1] = byte_extent(b);
  return a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1;
}

// An existing gradient (grad_weight_out, grad_bias_out) that a kernel adds its result to, in place:
// writable, of `shape`, sharing no memory with the kernel's inputs.
template <class T>
CArray<T> accumulator(const py::handle& h, const char* op, const char* name, const std::vector<py::ssize_t>& shape,
                      std::initializer_list<const py::array*> inputs) {
  CArray<T> a = inout<T>(h, op, name);
  check_shape(a, op, name, shape);
  for (const py::array* other : inputs)
    if (other->size() && overlaps(a, *other)) value_error(op, std::string(name) + " must not share memory with an input");
  return a;
}

// A bool argument (Python or NumPy): "[op] need_bias_grad must be a bool, got int".
inline bool flag_arg(const py::handle& h, const char* op, const char* name) {
  if (PyBool_Check(h.ptr())) return h.ptr() == Py_True;
  const std::string type = py::str(py::type::of(h).attr("__name__")).cast<std::string>();
  if (type != "bool_" && type != "bool") type_error(op, std::string(name) + " must be a bool, got " + type);
  return h.cast<bool>();
}

}  // namespace fastnn::bind
