// The layer contract. Layers are stateful C++ objects over views of the model's flat parameter
// and gradient buffers; Python modules are thin handles on them, so model(x), train_step and the
// C++ epoch loop all run this one implementation.
//
//   forward(x, ctx)  -> output view (owned by the layer, valid until its next forward);
//                       keeps what backward needs (x must stay alive until then).
//   backward(g, need_input_grad) -> grad wrt x (owned by the layer); ACCUMULATES (+=) parameter
//                       gradients into the flat gradient buffer (micrograd's contract; zero_grad resets),
//                       or writes them (=) while overwrite_grads is set (the epoch loop's fast path).
//
// The R-operator pair (Pearlmutter 1994), for exact Hessian-vector products H·v. v is a direction
// over the flat parameter buffer, bound like the parameters (bind_direction); for any quantity f
// of the pass, R{f} = d/dr f(θ + r·v) at r = 0.
//   rop_forward(rx, ctx) -> R{output} (owned by the layer); runs right after forward(x, ctx) on the
//                       same input and keeps what rop_backward needs. rx.data == nullptr means
//                       R{x} = 0 (the model's input does not depend on θ).
//   rop_backward(g, rg, need_input_grad) -> {dL/dx, R{dL/dx}}, given g = dL/dy and rg = R{dL/dy};
//                       ACCUMULATES dL/dθ into the gradient buffer, as backward does, and
//                       R{dL/dθ} (this layer's slice of H·v) into the hv buffer.
// A layer without them answers has_rop() false; fastnn.hvp then differentiates gradients.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastnn/layers/layer_lock.h"
#include "fastnn/layers/tensor.h"

namespace fastnn {

struct ParamSpec {
  std::string name;  // PyTorch's name: "weight", "bias"
  Shape shape;
  bool decay;        // weight decay / L1 / max-norm apply (weights yes, biases and BN no)
};

// Non-trainable state saved with the model (BatchNorm's running statistics).
template <class T>
struct StateSpec {
  std::string name;
  View<T> view;
};

// What one forward pass needs to know besides its input.
struct Context {
  bool training = true;
  std::uint64_t seed = 0;  // randomness (dropout, RReLU) is a function of (seed, step, layer salt, element)
  std::uint64_t step = 0;
  bool force = false;      // every layer runs in `training` mode, whatever its own (evaluate, predict)
  bool rop = false;        // rop_forward follows this forward (a layer may start R{output} in its pass)
};

template <class T>
struct RopGrad {
  View<T> grad;   // dL/dx
  View<T> rgrad;  // R{dL/dx}
};

template <class T>
class Layer {
 public:
  virtual ~Layer() = default;

  // PyTorch class name ("Linear", "ReLU", ...).
  virtual std::string kind() const = 0;

  // Parameters in a fixed order; the model lays them out back to back in its flat buffer.
  virtual std::vector<ParamSpec> param_specs() const { return {}; }
  index_t num_params() const {
    index_t n = 0;
    for (const auto& p : param_specs()) n += numel(p.shape);
    return n;
  }
  // Points the parameters at this layer's slice of the flat buffers (num_params() elements each).
  virtual void bind_params(T* params, T* grads) {
    (void)params;
    (void)grads;
  }
  // Named non-trainable state (running statistics), for state_dict.
  virtual std::vector<StateSpec<T>> state() { return {}; }

  // Output shape for an input shape (including the batch dimension); throws invalid_argument
  // naming the layer when the input does not fit.
  virtual Shape output_shape(const Shape& in) const = 0;

  virtual View<T> forward(const View<T>& x, const Context& ctx) = 0;
  virtual View<T> backward(const View<T>& grad_out, bool need_input_grad) = 0;

  // The R-operator pair (see the top of this file). Containers answer for all their descendants.
  virtual bool has_rop() const { return false; }
  // Points the direction and the H·v accumulator at this layer's slice (num_params() elements each).
  virtual void bind_direction(const T* v, T* hv) {
    (void)v;
    (void)hv;
  }
  virtual View<T> rop_forward(const View<T>& rx, const Context& ctx) {
    (void)rx, (void)ctx;
    throw invalid_argument("[" + kind() + "] has no R-operator (exact Hessian-vector products)");
  }
  virtual RopGrad<T> rop_backward(const View<T>& grad_out, const View<T>& r_grad_out, bool need_input_grad) {
    (void)grad_out, (void)r_grad_out, (void)need_input_grad;
    throw invalid_argument("[" + kind() + "] has no R-operator (exact Hessian-vector products)");
  }

  // Input given as pointers to its rows (a shuffled batch's samples where they lie in the data
  // set, not copied): layers that can read it say so, and the epoch loop skips the gather copy.
  // `shape` is the batch's shape (N, features); the rows must stay alive until backward.
  virtual bool reads_rows() const { return false; }
  virtual View<T> forward_rows(const T* const* rows, const Shape& shape, const Context& ctx) {
    (void)rows, (void)shape, (void)ctx;
    throw invalid_argument("[" + kind() + "] cannot read its input as row pointers");
  }

  // Whether every backward writes all of this layer's trainable parameter gradients, so that
  // with overwrite_grads set the flat gradient need not be zeroed before each batch. Layers that
  // own parameters and honor overwrite_grads override this; containers check their children.
  virtual bool supports_grad_overwrite() const { return num_params() == 0; }
  // Sets overwrite_grads here and in every descendant.
  virtual void set_grad_overwrite(bool on) { overwrite_grads = on; }

  // The layer's own mode, as PyTorch's module.training: -1 follows the caller's (Context::training),
  // 0 eval, 1 training; so one BatchNorm of a training model can run in eval mode.
  int mode = -1;
  bool training_in(const Context& ctx) const { return ctx.force || mode < 0 ? ctx.training : mode == 1; }

  // Distinguishes the random streams of different layers of one model.
  std::uint64_t salt = 0;
  // Frozen layers (all parameters requires_grad=False) skip parameter-gradient work.
  bool params_trainable = true;
  // Whether backward writes any trainable parameter's gradient here or in a layer this one runs
  // (containers and fused layers ask what they run): below the lowest such layer of a Sequential
  // nothing needs a gradient, and its backward stops there (a frozen bottom costs no backward).
  virtual bool trains_params() const { return params_trainable && num_params() > 0; }
  // backward writes (=) parameter gradients instead of adding to them (see supports_grad_overwrite).
  bool overwrite_grads = false;
  // rop_backward may skip dL/dθ (H·v without the gradient: net/curvature.h sets it for the call).
  bool rop_skips_param_grads = false;
  // Set by bind_params: a layer with parameters must not run before they have a buffer.
  bool params_bound = false;
  // Containers answer false: their children are checked one by one (they may be bound singly).
  virtual bool lacks_param_buffer() const { return !params_bound && num_params() > 0; }
  // Shape of the last forward's output, so a Python-level backward can check its gradient.
  Shape last_output_shape;

  // This layer and every layer it runs (containers add their children's), for the lock that
  // entry points take on all of them (layer_lock.h).
  virtual void collect_layers(std::vector<Layer*>& out) { out.push_back(this); }
  // The lock of this layer (a trampoline of a Python-written module shares one per module).
  virtual LayerMutex& mutex() { return mutex_; }

 private:
  LayerMutex mutex_;
};

template <class T> using LayerPtr = std::shared_ptr<Layer<T>>;

}  // namespace fastnn

// Layer classes are compiled once per module, in cpp/instantiate/ (listed there), instead of again
// in every binding file that includes them: their headers end with FASTNN_COMPILED_ONCE(Class),
// which declares the float and double classes instantiated elsewhere (extern template).
#define FASTNN_COMPILED_ONCE(Class)      \
  extern template class Class<float>;    \
  extern template class Class<double>;
FASTNN_COMPILED_ONCE(fastnn::Layer)
// In cpp/instantiate/: the one place the declared classes are compiled.
#define FASTNN_COMPILE_HERE(Class) \
  template class Class<float>;     \
  template class Class<double>;
