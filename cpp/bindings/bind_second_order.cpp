// The second-order methods (L-BFGS, nonlinear CG, BFGS, Newton, Hessian-free), the strong-Wolfe
// line search and the full-batch training objective as Python functions. Python
// (fastnn.optim.minimize and the LBFGS/... optimizer classes) owns and validates the state arrays;
// the loops run here, calling back into Python only for an objective written in Python.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/model_lock.h"
#include "bindings/segments_arg.h"
#include "bindings/train_args.h"
#include "fastnn/net/full_batch.h"
#include "fastnn/optim/bfgs.h"
#include "fastnn/optim/conjugate_gradient.h"
#include "fastnn/optim/hessian_free.h"
#include "fastnn/optim/lbfgs.h"
#include "fastnn/optim/newton.h"

namespace fastnn::bind {
namespace {

// A FullBatchObjective with the arrays it points into.
template <class T>
struct FullBatch {
  std::vector<py::object> keep;
  py::object model;
  std::unique_ptr<ModelLock<T>> lock;  // held only while a method runs
  std::unique_ptr<FullBatchObjective<T>> fn;
  const T* params = nullptr;
  T* grads = nullptr;
};

template <class T>
CArray<T> vec_arg(const py::handle& h, const char* op, const char* name, index_t n) {
  CArray<T> a = inout<T>(h, op, name);
  if (a.size() != n)
    value_error(op, std::string(name) + " must have " + std::to_string(n) + " elements like x, got shape " + shape_str(a));
  return a;
}
template <class E>
py::array_t<E, py::array::c_style> state_arg(const py::handle& h, const char* op, const char* name, index_t size) {
  py::array a = as_ndarray(h, op, name);
  if (!a.dtype().equal(py::dtype::of<E>()))
    type_error(op, std::string(name) + " must be " + py::str(py::dtype::of<E>()).cast<std::string>() + ", got " +
                       dtype_str(a));
  if (!a.attr("flags").attr("c_contiguous").cast<bool>() || !a.writeable() || a.size() != size)
    value_error(op, std::string(name) + " must be a writeable C-contiguous array of " + std::to_string(size) +
                        " elements, got shape " + shape_str(a));
  return py::reinterpret_borrow<py::array_t<E, py::array::c_style>>(a);
}

// The objective as Problem::eval: a FullBatch (runs without the GIL; Ctrl-C is seen between
// evaluations) or a Python callable f() -> loss that has written the gradient into g.
template <class T>
std::function<double()> objective_arg(const py::object& obj, const T* x, const T* g, const char* op) {
  if (py::isinstance<FullBatch<T>>(obj)) {
    FullBatch<T>* fb = obj.cast<FullBatch<T>*>();
    if (fb->params != x || fb->grads != g)
      value_error(op, "x and g must be the model's flat parameters and gradients the objective was made for");
    return [fb] {
      const double f = (*fb->fn)();
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      return f;
    };
  }
  if (py::hasattr(obj, "evaluations") && py::hasattr(obj, "set_step"))
    type_error(op, std::string("the full-batch objective is for ") + (sizeof(T) == 4 ? "float64" : "float32") +
                       " parameters, x is " + dtype_name<T>());
  if (!PyCallable_Check(obj.ptr()))
    type_error(op, "the objective must be callable, got " + py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  return [obj, op] {
    py::gil_scoped_acquire gil;
    py::object r = obj();
    try {
      return r.cast<double>();
    } catch (const py::cast_error&) {
      type_error(op, "the closure must return the loss as a real number, got " +
                         py::str(py::type::of(r).attr("__name__")).cast<std::string>());
    }
  };
}

// The full-batch objective when it has exact curvature products (every layer has an R-operator),
// else null (a Python closure, or a layer written in Python: finite differences of gradients).
template <class T>
FullBatchObjective<T>* exact_curvature(const py::object& obj) {
  if (!py::isinstance<FullBatch<T>>(obj)) return nullptr;
  FullBatchObjective<T>* fb = obj.cast<FullBatch<T>*>()->fn.get();
  return fb->has_curvature() ? fb : nullptr;
}

// options["callback"](iteration, loss) -> bool|None (False stops) as Problem::on_iteration.
template <class T>
void callback_arg(Problem<T>& p, const py::dict& options) {
  if (!options.contains("callback") || options["callback"].is_none()) return;
  py::object cb = options["callback"];
  p.on_iteration = [cb](index_t it, double loss) {
    py::gil_scoped_acquire gil;
    py::object r = cb(it, loss);
    return r.is_none() || r.cast<bool>();
  };
}

// Runs `body` without the GIL, holding the full-batch objective's model lock meanwhile.
template <class T, class F>
auto run_locked(const py::object& obj, const char* op, F&& body) {
  std::unique_ptr<ModelLock<T>> lock;
  if (py::isinstance<FullBatch<T>>(obj)) {
    FullBatch<T>* fb = obj.cast<FullBatch<T>*>();
    lock = std::make_unique<ModelLock<T>>(fb->model.template cast<Layer<T>&>(), op, true);
  }
  py::gil_scoped_release nogil;
  return body();
}

py::dict report_dict(const Report& r) {
  py::dict d;
  d["status"] = static_cast<int>(r.status);
  d["message"] = status_message(r.status);
  d["iterations"] = r.iterations;
  d["evaluations"] = r.evaluations;
  d["first_loss"] = r.first_loss;
  d["loss"] = r.loss;
  return d;
}

double opt(const py::dict& o, const char* key, double fallback) {
  return o.contains(key) ? o[key].cast<double>() : fallback;
}
index_t opt_int(const py::dict& o, const char* key, index_t fallback) {
  return o.contains(key) ? o[key].cast<index_t>() : fallback;
}

// The stopping rules every method's options share (LBFGSOptions, DescentOptions, HessianFreeOptions);
// a key the dict lacks keeps the struct's default.
template <class Options>
Options limits_options(const py::dict& o) {
  Options d;
  d.max_iter = opt_int(o, "max_iter", d.max_iter);
  d.max_eval = opt_int(o, "max_eval", d.max_eval);
  d.tolerance_grad = opt(o, "tolerance_grad", d.tolerance_grad);
  d.tolerance_change = opt(o, "tolerance_change", d.tolerance_change);
  return d;
}

DescentOptions descent_options(const py::dict& o) {
  DescentOptions d = limits_options<DescentOptions>(o);
  d.lr = opt(o, "lr", d.lr);
  d.c2 = opt(o, "c2", d.c2);
  return d;
}

template <class T>
void bind_full_batch(py::module_& m, const char* name) {
  py::class_<FullBatch<T>>(m, name, "The loss + L2 over a whole data set and its gradient, evaluated in C++ in batches.")
      .def(py::init([](const py::object& model, const py::handle& X, const py::handle& y, const std::string& loss,
                       const std::string& reduction, const py::handle& params, const py::handle& grads,
                       index_t batch_size, double l2, const py::handle& segments, std::uint64_t seed) {
             const char* op = "FullBatchObjective";
             auto fb = std::make_unique<FullBatch<T>>();
             Layer<T>* layer = &layer_arg<T>(model, op);
             const Dataset<T> d = dataset_arg<T>(X, y, op, fb->keep);
             CArray<T> p = inout<T>(params, op, "params");
             CArray<T> g = vec_arg<T>(grads, op, "grads", p.size());
             SegmentArg segs = segments_arg(segments, op, p.size());
             if (batch_size < 1) value_error(op, "batch_size must be >= 1, got " + std::to_string(batch_size));
             if (!(l2 >= 0) || !std::isfinite(l2)) value_error(op, "l2 must be finite and >= 0, got " + std::to_string(l2));
             const Objective obj = plain_objective_arg(loss, reduction, op);
             fb->keep.insert(fb->keep.end(), {p, g, segs.keep});
             fb->model = model;
             fb->params = p.data();
             fb->grads = g.mutable_data();
             fb->fn = std::make_unique<FullBatchObjective<T>>(*layer, d, obj, p.data(), g.mutable_data(),
                                                              static_cast<index_t>(p.size()), batch_size, l2,
                                                              segs.table, seed);
             return fb;
           }),
           py::arg("model"), py::arg("X"), py::arg("y"), py::arg("loss"), py::arg("reduction"), py::arg("params"),
           py::arg("grads"), py::arg("batch_size"), py::arg("l2"), py::arg("segments"), py::arg("seed"))
      .def("set_step", [](FullBatch<T>& fb, std::uint64_t step) { fb.fn->set_step(step); }, py::arg("step"))
      .def_property_readonly("evaluations", [](const FullBatch<T>& fb) { return fb.fn->evaluations(); })
      .def_property_readonly("correct", [](const FullBatch<T>& fb) { return fb.fn->correct(); })
      .def_property_readonly("products", [](const FullBatch<T>& fb) { return fb.fn->products(); },
                             "curvature products (H v or G v) so far")
      .def_property_readonly("has_curvature", [](const FullBatch<T>& fb) { return fb.fn->has_curvature(); },
                             "whether every layer has an R-operator (exact curvature products)")
      .def(
          "curvature",
          [](py::object self, const py::handle& v, bool gauss_newton) {
            FullBatch<T>& fb = self.cast<FullBatch<T>&>();
            const char* op = "FullBatchObjective.curvature";
            if (!fb.fn->has_curvature()) value_error(op, "the model has a layer without an R-operator");
            CArray<T> va = in<T>(v, op, "v");
            const index_t n = fb.fn->size();
            if (va.ndim() != 1 || va.size() != n)
              value_error(op, "v must be a flat vector of " + std::to_string(n) + " values, got shape " + shape_str(va));
            CArray<T> out = new_array<T>({static_cast<py::ssize_t>(n)});
            run_locked<T>(self, op, [&] { fb.fn->curvature(va.data(), out.mutable_data(), gauss_newton); });
            return out;
          },
          py::arg("v"), py::arg("gauss_newton") = true,
          "B v at the current parameters: G v (gauss_newton) or H v of the objective, the l2 term included")
      .def("__call__", [](py::object self) {
        FullBatch<T>& fb = self.cast<FullBatch<T>&>();
        return run_locked<T>(self, "FullBatchObjective", [&] { return (*fb.fn)(); });
      });
}

}  // namespace

void bind_second_order(py::module_& m) {
  bind_full_batch<float>(m, "FullBatchObjective_float32");
  bind_full_batch<double>(m, "FullBatchObjective_float64");

  m.def(
      "lbfgs_two_loop",
      [](const py::handle& s, const py::handle& y, const py::handle& rho, const py::handle& ring, double gamma,
         const py::handle& q) {
        const char* op = "lbfgs_two_loop";
        return dispatch_float(q, op, "q", [&](auto tag) {
          using T = decltype(tag);
          CArray<T> qa = in<T>(q, op, "q");
          const index_t n = qa.size();
          CArray<T> sa = in<T>(s, op, "s"), ya = in<T>(y, op, "y");
          if (sa.ndim() != 2 || sa.shape(1) != n || ya.ndim() != 2 || ya.shape(0) != sa.shape(0) || ya.shape(1) != n)
            value_error(op, "s and y must be (m, " + std::to_string(n) + "), got " + shape_str(sa) + " and " +
                                shape_str(ya));
          const index_t m = sa.shape(0);
          auto rh = c_array<double>(as_ndarray(rho, op, "rho"), op, "rho");
          auto rg = c_array<std::int64_t>(as_ndarray(ring, op, "ring"), op, "ring");
          if (rh.size() != m) value_error(op, "rho must have m = " + std::to_string(m) + " values");
          if (rg.size() != 2 || rg.at(0) < 0 || rg.at(1) < 0 || rg.at(1) > m || (m > 0 && rg.at(0) >= m))
            value_error(op, "ring must be [start, count] with 0 <= start < m and 0 <= count <= m");
          CArray<T> r = new_array<T>({static_cast<py::ssize_t>(n)});
          std::vector<std::int64_t> ring_copy{rg.at(0), rg.at(1)};
          LBFGSHistory<T> h{const_cast<T*>(sa.data()), const_cast<T*>(ya.data()), const_cast<double*>(rh.data()),
                            ring_copy.data(), m, n};
          std::vector<double> alpha(static_cast<size_t>(std::max<index_t>(m, 1)));
          lbfgs_two_loop(h, gamma, qa.data(), r.mutable_data(), alpha.data());
          return py::array(r);
        });
      },
      py::arg("s"), py::arg("y"), py::arg("rho"), py::arg("ring"), py::arg("gamma"), py::arg("q"));

  m.def(
      "strong_wolfe",
      [](const py::object& objective, const py::handle& x, const py::handle& g, const py::handle& d, double t,
         double f0, const py::handle& g0, double c1, double c2, double tolerance_change, index_t max_evals) {
        const char* op = "strong_wolfe";
        return dispatch_float(x, op, "x", [&](auto tag) {
          using T = decltype(tag);
          CArray<T> xa = inout<T>(x, op, "x");
          const index_t n = xa.size();
          CArray<T> ga = vec_arg<T>(g, op, "g", n);
          CArray<T> da = in<T>(d, op, "d"), g0a = in<T>(g0, op, "g0");
          if (da.size() != n || g0a.size() != n) value_error(op, "d and g0 must have as many elements as x");
          if (max_evals < 1) value_error(op, "max_evals must be >= 1");
          std::vector<T> x0(xa.data(), xa.data() + n);
          Problem<T> p{xa.mutable_data(), ga.mutable_data(), n, objective_arg<T>(objective, xa.data(), ga.data(), op)};
          LineSearchOptions o{c1, c2, tolerance_change, max_evals};
          const double gtd = vec_dot(g0a.data(), da.data(), n);
          if (!(gtd < 0)) value_error(op, "d is not a descent direction (g0.d = " + std::to_string(gtd) + " >= 0)");
          LineSearchResult r = run_locked<T>(objective, op, [&] { return strong_wolfe(p, x0.data(), da.data(), t, f0, g0a.data(), gtd, o); });
          py::dict out;
          out["t"] = r.t, out["f"] = r.f, out["evals"] = r.evals, out["wolfe"] = r.wolfe;
          out["nonfinite"] = r.nonfinite, out["budget_out"] = r.budget_out;
          return out;
        });
      },
      py::arg("objective"), py::arg("x"), py::arg("g"), py::arg("d"), py::arg("t"), py::arg("f0"), py::arg("g0"),
      py::arg("c1") = 1e-4, py::arg("c2") = 0.9, py::arg("tolerance_change") = 1e-9, py::arg("max_evals") = 25);

  m.def(
      "lbfgs_step",
      [](const py::object& objective, const py::handle& x, const py::handle& g, const py::handle& s,
         const py::handle& y, const py::handle& rho, const py::handle& ring, const py::handle& d,
         const py::handle& prev_g, const py::handle& scalars, const py::handle& counters, const py::dict& options) {
        const char* op = "LBFGS.step";
        return dispatch_float(x, op, "x", [&](auto tag) {
          using T = decltype(tag);
          CArray<T> xa = inout<T>(x, op, "x");
          const index_t n = xa.size();
          CArray<T> ga = vec_arg<T>(g, op, "g", n), da = vec_arg<T>(d, op, "d", n), pg = vec_arg<T>(prev_g, op, "prev_g", n);
          CArray<T> sa = inout<T>(s, op, "s"), ya = inout<T>(y, op, "y");
          if (sa.ndim() != 2 || sa.shape(1) != n || sa.shape(0) < 1 || ya.ndim() != 2 || ya.shape(0) != sa.shape(0) ||
              ya.shape(1) != n)
            value_error(op, "the history must be two (m, " + std::to_string(n) + ") arrays, m >= 1");
          const index_t m = sa.shape(0);
          auto rh = state_arg<double>(rho, op, "rho", m);
          auto rg = state_arg<std::int64_t>(ring, op, "ring", 2);
          auto sc = state_arg<double>(scalars, op, "scalars", 3);
          auto ct = state_arg<std::int64_t>(counters, op, "counters", 2);
          if (rg.at(0) < 0 || rg.at(0) >= m || rg.at(1) < 0 || rg.at(1) > m)
            value_error(op, "ring must be [start, count] with 0 <= start < m and 0 <= count <= m");
          LBFGSOptions o = limits_options<LBFGSOptions>(options);
          o.lr = opt(options, "lr", o.lr);
          o.strong_wolfe = options.contains("strong_wolfe") && options["strong_wolfe"].cast<bool>();
          LBFGSHistory<T> h{sa.mutable_data(), ya.mutable_data(), rh.mutable_data(), rg.mutable_data(), m, n};
          LBFGSState<T> st{da.mutable_data(), pg.mutable_data(), sc.mutable_data(), ct.mutable_data()};
          Problem<T> p{xa.mutable_data(), ga.mutable_data(), n, objective_arg<T>(objective, xa.data(), ga.data(), op)};
          callback_arg(p, options);
          return report_dict(run_locked<T>(objective, op, [&] { return lbfgs_step(p, h, st, o); }));
        });
      },
      py::arg("objective"), py::arg("x"), py::arg("g"), py::arg("s"), py::arg("y"), py::arg("rho"), py::arg("ring"),
      py::arg("d"), py::arg("prev_g"), py::arg("scalars"), py::arg("counters"), py::arg("options"));

  // method: "cg" (state d_prev, g_prev: (n,); scalars: (4,)), "bfgs" (M: (n, n); scalars: (1,)),
  // "newton" (H: (n, n) workspace; scalars: (2,); hessian(H) fills it).
  m.def(
      "descent_minimize",
      [](const std::string& method, const py::object& objective, const py::handle& x, const py::handle& g,
         const py::dict& state, const py::dict& options, const py::object& hessian) {
        const std::string name = method == "cg" ? "ConjugateGradient" : method == "bfgs" ? "BFGS" : "Newton";
        const char* op = name == "ConjugateGradient" ? "ConjugateGradient.step" : name == "BFGS" ? "BFGS.step" : "Newton.step";
        if (method != "cg" && method != "bfgs" && method != "newton")
          value_error("descent_minimize", "method must be 'cg', 'bfgs' or 'newton', got '" + method + "'");
        return dispatch_float(x, op, "x", [&](auto tag) -> py::dict {
          using T = decltype(tag);
          CArray<T> xa = inout<T>(x, op, "x");
          const index_t n = xa.size();
          CArray<T> ga = vec_arg<T>(g, op, "g", n);
          Problem<T> p{xa.mutable_data(), ga.mutable_data(), n, objective_arg<T>(objective, xa.data(), ga.data(), op)};
          callback_arg(p, options);
          const DescentOptions o = descent_options(options);
          if (method == "cg") {
            CArray<T> dp = vec_arg<T>(state["d_prev"], op, "d_prev", n), gp = vec_arg<T>(state["g_prev"], op, "g_prev", n);
            auto sc = state_arg<double>(state["scalars"], op, "scalars", 4);
            ConjugateGradient<T> cg{n, dp.mutable_data(), gp.mutable_data(), sc.mutable_data()};
            const std::string formula = options.contains("formula") ? options["formula"].cast<std::string>() : "pr+";
            cg.formula = formula == "fr" ? CGFormula::fletcher_reeves : CGFormula::polak_ribiere;
            cg.restart = opt_int(options, "restart", 0);
            return report_dict(run_locked<T>(objective, op, [&] { return descent_minimize(p, cg, o, op); }));
          }
          if (method == "bfgs") {
            CArray<T> M = vec_arg<T>(state["M"], op, "M", n * n);
            auto sc = state_arg<double>(state["scalars"], op, "scalars", 1);
            BFGS<T> b{n, M.mutable_data(), sc.mutable_data(), {}};
            return report_dict(run_locked<T>(objective, op, [&] { return descent_minimize(p, b, o, op); }));
          }
          CArray<T> H = vec_arg<T>(state["H"], op, "H", n * n);
          auto sc = state_arg<double>(state["scalars"], op, "scalars", 2);
          if (!hessian.is_none() && !PyCallable_Check(hessian.ptr()))
            type_error(op, "hess must be None or a callable filling an (n, n) array");
          Newton<T> nw;
          nw.n = n;
          nw.H = H.mutable_data();
          nw.scalars = sc.mutable_data();
          nw.damping = opt(options, "damping", 0.0);
          py::object Harr = py::reinterpret_borrow<py::object>(state["H"]);
          if (FullBatchObjective<T>* fb = exact_curvature<T>(objective); hessian.is_none() && fb) {
            nw.hessian = [fb](T* h) { fb->hessian(h); };  // n exact H e_j (net/curvature.h)
          } else if (hessian.is_none()) {
            nw.hessian = [&p](T* h) { finite_difference_hessian(p, h); };
          } else {
            nw.hessian = [hessian, Harr](T*) {
              py::gil_scoped_acquire gil;
              hessian(Harr);
            };
          }
          return report_dict(run_locked<T>(objective, op, [&] { return descent_minimize(p, nw, o, op); }));
        });
      },
      py::arg("method"), py::arg("objective"), py::arg("x"), py::arg("g"), py::arg("state"), py::arg("options"),
      py::arg("hessian") = py::none());

  m.def(
      "hessian_free_minimize",
      [](const py::object& objective, const py::handle& x, const py::handle& g, const py::handle& p_prev,
         const py::handle& scalars, const py::object& curvature, const py::dict& options) {
        const char* op = "HessianFree.step";
        return dispatch_float(x, op, "x", [&](auto tag) {
          using T = decltype(tag);
          CArray<T> xa = inout<T>(x, op, "x");
          const index_t n = xa.size();
          CArray<T> ga = vec_arg<T>(g, op, "g", n), pp = vec_arg<T>(p_prev, op, "p_prev", n);
          auto sc = state_arg<double>(scalars, op, "scalars", 2);
          Problem<T> p{xa.mutable_data(), ga.mutable_data(), n, objective_arg<T>(objective, xa.data(), ga.data(), op)};
          callback_arg(p, options);
          HessianFreeOptions o = limits_options<HessianFreeOptions>(options);
          o.max_cg = opt_int(options, "max_cg", o.max_cg);
          o.adapt_damping = !options.contains("adapt_damping") || options["adapt_damping"].cast<bool>();
          CurvatureFn<T> cv;
          const bool gauss_newton = !options.contains("curvature") || options["curvature"].cast<std::string>() != "hessian";
          if (FullBatchObjective<T>* fb = exact_curvature<T>(objective); curvature.is_none() && fb) {
            cv = [fb, gauss_newton](const T* v, T* out) { fb->curvature(v, out, gauss_newton); };
          } else if (curvature.is_none()) {
            cv = [&p](const T* v, T* out) { finite_difference_hvp(p, v, out); };
          } else {
            if (!PyCallable_Check(curvature.ptr())) type_error(op, "hvp must be callable hvp(v, out)");
            cv = [curvature, n, op](const T* v, T* out) {
              py::gil_scoped_acquire gil;
              CArray<T> va = new_array<T>({static_cast<py::ssize_t>(n)});
              std::memcpy(va.mutable_data(), v, sizeof(T) * n);
              CArray<T> oa = new_array<T>({static_cast<py::ssize_t>(n)});
              curvature(va, oa);
              std::memcpy(out, oa.data(), sizeof(T) * n);
              (void)op;
            };
          }
          return report_dict(run_locked<T>(objective, op, [&] { return hessian_free_minimize(p, cv, pp.mutable_data(), sc.mutable_data(), o); }));
        });
      },
      py::arg("objective"), py::arg("x"), py::arg("g"), py::arg("p_prev"), py::arg("scalars"),
      py::arg("curvature") = py::none(), py::arg("options") = py::dict());
}

}  // namespace fastnn::bind
