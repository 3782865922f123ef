// The training loop in C++: one call runs a whole epoch (shuffle, batching, forward, loss,
// backward, gradient clipping, optimizer step, metrics) with no Python in between, so small
// models are not dominated by per-op overhead. evaluate() and predict() batch in eval mode.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <numeric>
#include <vector>

#include "fastnn/kernels/augment.h"
#include "fastnn/kernels/rng.h"
#include "fastnn/layers/layer.h"
#include "fastnn/net/dataset.h"
#include "fastnn/net/objective.h"
#include "fastnn/optim/clip.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FASTNN_HAVE_MXCSR 1
#endif

namespace fastnn {

struct EpochOptions {
  index_t batch_size = 32;
  bool shuffle = true;
  std::uint64_t seed = 0;      // shuffling and dropout streams
  std::uint64_t epoch = 0;     // shuffling order of this epoch
  std::uint64_t first_step = 0;  // dropout/RReLU step of the first batch (continues across epochs)
  double clip_norm = 0;        // > 0: clip the global gradient norm (norm_type 2)
  double clip_value = 0;       // > 0: clamp gradients to [-clip_value, clip_value]
  // Data parallelism (fastnn.distributed): a global batch is batch_size * shards samples of the
  // shared order, and this process trains on its slice `shard` of each (shard_begin).
  index_t shard = 0, shards = 1;
  // Skip the last global batch when it is incomplete (torch's DataLoader(drop_last=True)): a tiny
  // last batch gives a noisy step that can undo training of a deep unnormalised net.
  bool drop_last = false;
};

// Optimizer steps of one epoch of n samples: global batches of batch_size * shards samples, the
// last one partial unless dropped (fit counts them the same way: train/parallel.py batches).
inline index_t epoch_batches(index_t n, index_t global_batch, bool drop_last) {
  return n / global_batch + (!drop_last && n % global_batch != 0);  // n + global_batch - 1 may overflow
}

struct EpochStats {
  double loss_sum = 0;        // sum over batches of batch loss * batch samples (mean reduction)
  index_t correct = 0;
  index_t samples = 0;
  index_t batches = 0;        // = optimizer steps taken
  index_t nonfinite_batch = -1;  // first batch whose loss was NaN/inf (the epoch stops there)
  MetricSums metrics;            // top-k accuracy, absolute and squared errors
};

// The model's output for each batch must keep the batch as its first dimension (the outputs are
// matched with the targets and copied out row by row: a model ending in Flatten(0) made predict
// overflow its result and the loss read labels past the batch), with the same shape per sample
// in every batch of one call.
class OutputCheck {
 public:
  explicit OutputCheck(const char* op) : op_(op) {}
  void operator()(const Shape& out, index_t batch) {
    FASTNN_CHECK(!out.empty() && out[0] == batch, op_,
                 "the model's output for a batch of " << batch << (batch == 1 ? " sample" : " samples") << " has shape "
                                                      << shape_str(out) << ": its first dimension must be the batch");
    if (first_.empty()) {
      first_ = out;
      return;
    }
    FASTNN_CHECK(std::equal(out.begin() + 1, out.end(), first_.begin() + 1, first_.end()), op_,
                 "the model's output has shape " << shape_str(out) << " for a batch of " << batch << ", but "
                                                 << shape_str(first_) << " for the first batch: its shape per sample "
                                                                         "must not change between batches");
  }

 private:
  const char* op_;
  Shape first_;
};

// Deterministic permutation of [0, n) for (seed, epoch): Fisher-Yates on counter-based draws.
inline std::vector<index_t> epoch_order(index_t n, bool shuffle, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<index_t> order(n);
  std::iota(order.begin(), order.end(), index_t(0));
  if (!shuffle) return order;
  const std::uint64_t key = rng::stream_key(seed ^ 0x5eed5eed5eed5eedULL, epoch);
  for (index_t i = n - 1; i > 0; --i) {
    // Lemire's multiply-shift maps 64 random bits to [0, i] without a division.
    const unsigned __int128 m = static_cast<unsigned __int128>(rng::bits(key, i)) * static_cast<std::uint64_t>(i + 1);
    std::swap(order[i], order[static_cast<index_t>(m >> 64)]);
  }
  return order;
}

// Where slice r of `shards` of a global batch of `count` samples begins: equal slices, the first
// count % shards one sample longer (full batches: r * batch_size).
inline index_t shard_begin(index_t count, index_t r, index_t shards) {
  return r * (count / shards) + std::min(r, count % shards);
}

// One batch of samples idx[0..count) of a data set: the targets are copied; the inputs are either
// copied into a contiguous buffer or, for a model that reads row pointers (Layer::reads_rows),
// only pointed at where they lie.
template <class T>
class BatchGather {
 public:
  void gather(const Dataset<T>& d, const index_t* idx, index_t count, bool copy_inputs) {
    const index_t s = d.sample_size();
    Shape shape{count};
    shape.insert(shape.end(), d.sample_shape.begin(), d.sample_shape.end());
    gather_targets(d, idx, count);
    if (augment_) {  // gather and augment in one pass over the rows (kernels/augment.h)
      rows_.clear();
      x_ = xs_.get(shape);
      augment_->run([&](index_t i) { return d.x + idx[i] * s; }, count, x_.data, augment_seed_, augment_step_);
      return;
    }
    if (!copy_inputs) {
      x_ = View<T>{nullptr, shape};
      rows_.resize(count);
      for (index_t i = 0; i < count; ++i) rows_[i] = d.x + idx[i] * s;
      return;
    }
    rows_.clear();
    x_ = xs_.get(shape);
    // Rows come from random places of a large array: memory latency bound, so two threads help,
    // each fetching the rows two copies ahead (one thread: 80 -> 62 us per 128 Fashion-MNIST rows).
    T* dst = x_.data;
    parallel_for(count, s, [&](index_t b, index_t e) {
      constexpr index_t kAhead = 2, kLine = 64 / sizeof(T);
      for (index_t i = b; i < e; ++i) {
        if (i + kAhead < e)
          for (const T *p = d.x + idx[i + kAhead] * s, *end = p + s; p < end; p += kLine) __builtin_prefetch(p);
        std::memcpy(dst + i * s, d.x + idx[i] * s, sizeof(T) * s);
      }
    });
  }

  // Augments the samples of the following gathers with draw (seed, step); nullptr: plain copies.
  // The augmenter keeps the sample size (checked at the binding).
  void set_augment(const Augmenter<T>* augment, std::uint64_t seed, std::uint64_t step) {
    augment_ = augment, augment_seed_ = seed, augment_step_ = step;
  }

  // The model's output for this batch.
  View<T> forward(Layer<T>& model, const Context& ctx) const {
    return rows_.empty() ? model.forward(x_, ctx) : model.forward_rows(rows_.data(), x_.shape, ctx);
  }
  const Targets<T>& y() const { return y_; }
  index_t count() const { return x_.shape[0]; }

 private:
  void gather_targets(const Dataset<T>& d, const index_t* idx, index_t count) {
    y_ = Targets<T>{};
    if (d.y.sample_weight) {
      weights_.resize(count);
      for (index_t i = 0; i < count; ++i) weights_[i] = d.y.sample_weight[idx[i]];
      y_.sample_weight = weights_.data();
    }
    if (d.y.has_labels()) {
      labels_.resize(count);
      for (index_t i = 0; i < count; ++i) labels_[i] = d.y.labels[idx[i]];
      y_.labels = labels_.data();
    } else if (d.y.values) {
      const index_t w = d.y.width;
      values_.resize(count * w);
      for (index_t i = 0; i < count; ++i) std::memcpy(values_.data() + i * w, d.y.values + idx[i] * w, sizeof(T) * w);
      y_.values = values_.data();
      y_.width = w;
    }
  }
  const Augmenter<T>* augment_ = nullptr;
  std::uint64_t augment_seed_ = 0, augment_step_ = 0;
  Workspace<T> xs_;
  View<T> x_;
  std::vector<const T*> rows_;
  Targets<T> y_;
  std::vector<std::int64_t> labels_;
  std::vector<T> values_;
  std::vector<double> weights_;
};

// Flushes denormal floats to zero (FTZ + DAZ) on the calling thread and the OpenMP pool while it
// lives, like torch.set_flush_denormal(True). Adam's moment estimates of weights that never get a
// gradient (the always-black border pixels of MNIST-like images) decay into denormals, and
// arithmetic on those is ~100x slower: measured, a whole epoch of a small MLP took 2.5x longer.
class FlushDenormals {
 public:
  FlushDenormals() {
#ifdef FASTNN_HAVE_MXCSR
    saved_ = _mm_getcsr();
    set_everywhere(saved_ | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
#endif
  }
  ~FlushDenormals() {
#ifdef FASTNN_HAVE_MXCSR
    set_everywhere(saved_);
#endif
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#ifdef FASTNN_HAVE_MXCSR
  static void set_everywhere(unsigned csr) {
    _mm_setcsr(csr);
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads())
    _mm_setcsr(csr);
#endif
  }
  unsigned saved_ = 0;
#endif
};

// Whether the model reads the data set's samples in place (see BatchGather).
template <class T>
bool reads_rows(const Layer<T>& model, const Dataset<T>& d) {
  return d.sample_shape.size() == 1 && model.reads_rows();
}

// While it lives, the model's backward writes the parameter gradients instead of adding to them
// (when all its layers can), so the flat gradient is zeroed once here instead of before every
// batch: that memset was 4% of a large MLP's batch. Frozen parameters' gradients stay zero.
template <class T>
class GradOverwrite {
 public:
  GradOverwrite(Layer<T>& model, T* grads, index_t n) : model_(model) {
    if (n == 0 || !model.supports_grad_overwrite()) return;
    std::memset(grads, 0, sizeof(T) * n);
    model_.set_grad_overwrite(true);
    on_ = true;
  }
  ~GradOverwrite() {
    if (on_) model_.set_grad_overwrite(false);
  }
  GradOverwrite(const GradOverwrite&) = delete;
  GradOverwrite& operator=(const GradOverwrite&) = delete;

 private:
  Layer<T>& model_;
  bool on_ = false;
};

// One optimizer step: step(k) takes the k-th step of this epoch.
using StepFn = std::function<void(index_t)>;
// Progress report: (batches done, batches in the epoch, running mean loss); called at most ~10 times a second.
using ProgressFn = std::function<void(index_t, index_t, const EpochStats&)>;

// Data-parallel training: after each batch's backward and before clipping and the optimizer steps,
// every rank reports its shard (the batch index, its sample count, its loss and the epoch's
// running sums) to the hook, which averages the flat gradient across ranks in place and returns
// the global batch's loss (not finite: no rank steps, the epoch stops there).
struct ShardReport {
  index_t batch, count;
  double loss;
  index_t correct;
  MetricSums metrics;
};
using GradHook = std::function<double(const ShardReport&)>;

template <class T>
class Trainer {
 public:
  // grads: the model's flat gradient buffer (n_params values), zeroed before every batch.
  // clip_segments: the trainable segments, for gradient clipping (may be empty when not clipping).
  Trainer(Layer<T>& model, T* grads, index_t n_params, SegmentTable clip_segments)
      : model_(model), grads_(grads), n_params_(n_params), clip_segments_(clip_segments) {}

  // One minibatch: forward, loss, backward, (the gradient hook,) clip, steps. Returns the batch
  // loss (the global one when it is not finite). An empty shard (a last global batch smaller than
  // the ranks) contributes a zero gradient.
  double train_batch(const BatchGather<T>& batch, const Objective& obj, const std::vector<StepFn>& steps, index_t k,
                     const Context& ctx, const EpochOptions& o, index_t* correct, MetricSums* metrics = nullptr) {
    const index_t count = batch.count();
    if (n_params_ > 0 && (!model_.overwrite_grads || count == 0)) std::memset(grads_, 0, sizeof(T) * n_params_);
    double loss = 0;
    if (count > 0) {
      View<T> out = batch.forward(model_, ctx);
      check_output_(out.shape, count);
      const Targets<T>& y = batch.y();
      View<T> g = grad_ws_.get(out.shape);
      loss = objective_forward_backward(obj, out, y, g.data, correct, metrics);
      if (!std::isfinite(loss) && !grad_hook_) return loss;  // leave the parameters as they were
      model_.backward(g, false);  // with a hook, also for a non-finite loss: the ranks decide together
    }
    if (grad_hook_) {
      const double global = grad_hook_(ShardReport{k, count, loss, *correct, metrics ? *metrics : MetricSums{}});
      if (!std::isfinite(global)) return global;
    }
    if (o.clip_norm > 0) clip_grad_norm_(clip_segments_, grads_, o.clip_norm, 2.0);
    if (o.clip_value > 0) clip_grad_value_(clip_segments_, grads_, static_cast<T>(o.clip_value));
    for (const auto& step : steps) step(k);
    return loss;
  }

  void set_grad_hook(GradHook hook) { grad_hook_ = std::move(hook); }

  // Training batches are augmented by `augment` (not owned; nullptr: none), drawn per (seed, step).
  void set_augment(const Augmenter<T>* augment) { augment_ = augment; }

  EpochStats train_epoch(const Dataset<T>& d, const Objective& obj, const std::vector<StepFn>& steps,
                         const EpochOptions& o, const ProgressFn& progress) {
    FlushDenormals ftz;
    GradOverwrite overwrite(model_, grads_, n_params_);
    EpochStats st;
    const std::vector<index_t> order = epoch_order(d.n, o.shuffle, o.seed, o.epoch);
    const index_t global_batch = o.batch_size * o.shards;  // the binding checks that it fits
    const index_t nb = epoch_batches(d.n, global_batch, o.drop_last);
    const bool copy_inputs = augment_ || !reads_rows(model_, d);
    // Dropout masks and augmentations differ between ranks (shard 0 draws what one process draws).
    const std::uint64_t draws = o.shard == 0 ? o.seed : rng::stream_key(o.seed, static_cast<std::uint64_t>(o.shard));
    auto last_report = std::chrono::steady_clock::now();
    for (index_t b = 0; b < nb; ++b) {
      const index_t global_start = b * global_batch, global_count = std::min(global_batch, d.n - global_start);
      const index_t start = global_start + shard_begin(global_count, o.shard, o.shards);
      const index_t count = global_start + shard_begin(global_count, o.shard + 1, o.shards) - start;
      gather_.set_augment(augment_, draws, o.first_step + static_cast<std::uint64_t>(b));
      gather_.gather(d, order.data() + start, count, copy_inputs);
      Context ctx{true, draws, o.first_step + static_cast<std::uint64_t>(b)};
      const double loss = train_batch(gather_, obj, steps, b, ctx, o, &st.correct, &st.metrics);
      if (!std::isfinite(loss)) {
        st.nonfinite_batch = b;
        return st;
      }
      st.loss_sum += loss * (obj.reduction == Reduction::mean ? count : 1);
      st.samples += count;
      st.batches = b + 1;
      if (progress) {
        const auto now = std::chrono::steady_clock::now();
        if (b + 1 == nb || now - last_report > std::chrono::milliseconds(100)) {
          progress(b + 1, nb, st);
          last_report = now;
        }
      }
    }
    return st;
  }

 private:
  Layer<T>& model_;
  T* grads_;
  index_t n_params_;
  SegmentTable clip_segments_;
  BatchGather<T> gather_;
  const Augmenter<T>* augment_ = nullptr;
  GradHook grad_hook_;
  Workspace<T> grad_ws_;
  OutputCheck check_output_{"train"};
};

// Loss and correct predictions over a data set in eval mode (no parameter changes).
template <class T>
EpochStats evaluate(Layer<T>& model, const Dataset<T>& d, const Objective& obj, index_t batch_size) {
  EpochStats st;
  Workspace<T> scratch;
  BatchGather<T> gather;
  OutputCheck check_output("evaluate");
  std::vector<index_t> order(d.n);
  std::iota(order.begin(), order.end(), index_t(0));
  const bool copy_inputs = !reads_rows(model, d);
  for (index_t start = 0; start < d.n; start += batch_size) {
    const index_t count = std::min(batch_size, d.n - start);
    gather.gather(d, order.data() + start, count, copy_inputs);
    View<T> out = gather.forward(model, Context{false, 0, 0, true});
    check_output(out.shape, count);
    const double loss =
        objective_forward(obj, out, gather.y(), scratch.get(out.shape).data, &st.correct, &st.metrics);
    st.loss_sum += loss * (obj.reduction == Reduction::mean ? count : 1);
    st.samples += count;
    st.batches += 1;
  }
  return st;
}

}  // namespace fastnn
