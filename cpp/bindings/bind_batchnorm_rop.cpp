// batch_norm_rop_forward / batch_norm_rop_backward (kernels/batchnorm_rop.h) on NumPy arrays
// (N, C, ...): the kernels behind BatchNorm's R-operator, for fastnn.functional.batchnorm_rop.
#include "bindings/arrays.h"
#include "fastnn/kernels/batchnorm_rop.h"

namespace fastnn::bind {
namespace {

// An optional per-channel array (None: null) of C values.
template <class T>
const T* channel_arg(const py::handle& h, index_t C, const char* op, const char* name, std::vector<py::object>& keep) {
  if (h.is_none()) return nullptr;
  CArray<T> a = in<T>(h, op, name);
  if (a.ndim() != 1 || a.size() != C)
    value_error(op, std::string(name) + " must have shape (" + std::to_string(C) + ",), got " + shape_str(a));
  keep.push_back(a);
  return a.data();
}

template <class T>
const T* like_arg(const py::handle& h, const CArray<T>& x, const char* op, const char* name,
                  std::vector<py::object>& keep) {
  if (h.is_none()) return nullptr;
  CArray<T> a = in<T>(h, op, name);
  if (std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()) !=
      std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()))
    value_error(op, std::string(name) + " must have the shape of x " + shape_str(x) + ", got " + shape_str(a));
  keep.push_back(a);
  return a.data();
}

template <class T>
CArray<T> x_arg(const py::handle& h, const char* op) {
  CArray<T> x = in<T>(h, op, "x");
  if (x.ndim() < 2) value_error(op, "x must be (N, C, ...), got shape " + shape_str(x));
  return x;
}

}  // namespace

void bind_batchnorm_rop(py::module_& m) {
  m.def(
      "batch_norm_rop_forward",
      [](const py::handle& x, const py::handle& rx, const py::handle& mean, const py::handle& invstd,
         const py::handle& gamma, const py::handle& vgamma, const py::handle& vbeta, bool training) {
        const char* op = "batch_norm_rop_forward";
        return dispatch_float(x, op, "x", [&](auto tag) -> py::object {
          using T = decltype(tag);
          std::vector<py::object> keep;
          CArray<T> xa = x_arg<T>(x, op);
          const index_t N = xa.shape(0), C = xa.shape(1), S = xa.size() / (N * C);
          const T* rxp = like_arg<T>(rx, xa, op, "rx", keep);
          const T* mp = channel_arg<T>(mean, C, op, "mean", keep);
          const T* sp = channel_arg<T>(invstd, C, op, "invstd", keep);
          if (!mp || !sp) value_error(op, "mean and invstd are required");
          const T* gp = channel_arg<T>(gamma, C, op, "gamma", keep);
          const T* vgp = channel_arg<T>(vgamma, C, op, "vgamma", keep);
          const T* vbp = channel_arg<T>(vbeta, C, op, "vbeta", keep);
          CArray<T> ry = new_array<T>(shape_of(xa)), rm = new_array<T>({C}), rc = new_array<T>({C});
          {
            py::gil_scoped_release nogil;
            batch_norm_rop_forward(xa.data(), rxp, N, C, S, mp, sp, gp, vgp, vbp, training, ry.mutable_data(),
                                   rm.mutable_data(), rc.mutable_data());
          }
          return py::make_tuple(ry, rm, rc);
        });
      },
      py::arg("x"), py::arg("rx"), py::arg("mean"), py::arg("invstd"), py::arg("gamma") = py::none(),
      py::arg("vgamma") = py::none(), py::arg("vbeta") = py::none(), py::arg("training") = true);
  m.def(
      "batch_norm_rop_backward",
      [](const py::handle& g, const py::handle& rg, const py::handle& x, const py::handle& rx,
         const py::handle& mean, const py::handle& invstd, const py::handle& gamma, const py::handle& vgamma,
         const py::handle& r_mean, const py::handle& r_cov, bool training) {
        const char* op = "batch_norm_rop_backward";
        return dispatch_float(x, op, "x", [&](auto tag) -> py::object {
          using T = decltype(tag);
          std::vector<py::object> keep;
          CArray<T> xa = x_arg<T>(x, op);
          const index_t N = xa.shape(0), C = xa.shape(1), S = xa.size() / (N * C);
          const T* gp = like_arg<T>(g, xa, op, "g", keep);
          const T* rgp = like_arg<T>(rg, xa, op, "rg", keep);
          if (!gp || !rgp) value_error(op, "g and rg are required");
          const T* rxp = like_arg<T>(rx, xa, op, "rx", keep);
          const T* mp = channel_arg<T>(mean, C, op, "mean", keep);
          const T* sp = channel_arg<T>(invstd, C, op, "invstd", keep);
          const T* rmp = channel_arg<T>(r_mean, C, op, "r_mean", keep);
          const T* rcp = channel_arg<T>(r_cov, C, op, "r_cov", keep);
          if (!mp || !sp || !rmp || !rcp) value_error(op, "mean, invstd, r_mean and r_cov are required");
          const T* gam = channel_arg<T>(gamma, C, op, "gamma", keep);
          const T* vg = channel_arg<T>(vgamma, C, op, "vgamma", keep);
          CArray<T> dx = new_array<T>(shape_of(xa)), rdx = new_array<T>(shape_of(xa));
          std::vector<CArray<T>> pg;
          for (int i = 0; i < 4; ++i) pg.push_back(new_array<T>({C}));
          {
            py::gil_scoped_release nogil;
            batch_norm_rop_backward(gp, rgp, xa.data(), rxp, N, C, S, mp, sp, gam, vg, rmp, rcp, training,
                                    dx.mutable_data(), rdx.mutable_data(), gam ? pg[0].mutable_data() : nullptr,
                                    gam ? pg[1].mutable_data() : nullptr, gam ? pg[2].mutable_data() : nullptr,
                                    gam ? pg[3].mutable_data() : nullptr);
          }
          if (!gam) return py::make_tuple(dx, rdx, py::none(), py::none(), py::none(), py::none());
          return py::make_tuple(dx, rdx, pg[0], pg[1], pg[2], pg[3]);
        });
      },
      py::arg("g"), py::arg("rg"), py::arg("x"), py::arg("rx"), py::arg("mean"), py::arg("invstd"),
      py::arg("gamma"), py::arg("vgamma"), py::arg("r_mean"), py::arg("r_cov"), py::arg("training") = true);
}

}  // namespace fastnn::bind
