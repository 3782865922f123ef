// BatchNorm1d / BatchNorm2d over kernels/batchnorm.h: training uses batch statistics and updates
// the running ones; eval applies the folded affine (scale = gamma/sqrt(var+eps), shift = beta - mean*scale).
// forward_relu / backward_relu run it with a following ReLU (and dropout) in the same passes
// (kernels/batchnorm_activation.h); Sequential uses them through FusedBatchNormActivation.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>

#include "fastnn/kernels/batchnorm.h"
#include "fastnn/kernels/batchnorm_activation.h"
#include "fastnn/kernels/batchnorm_rop.h"
#include "fastnn/layers/layer.h"

namespace fastnn {

// Thrown by a collecting BatchNorm to end a forward pass early (recompute_bn_statistics).
struct StopForward : std::exception {
  const char* what() const noexcept override { return "forward stopped after a BatchNorm collected its input"; }
};

template <class T>
class BatchNorm : public Layer<T> {
 public:
  // spatial_dims: 0 for BatchNorm1d on (N, C) [or (N, C, L) with 1], 2 for BatchNorm2d on (N, C, H, W).
  BatchNorm(index_t num_features, double eps, double momentum, bool affine, bool track_running_stats, int spatial_dims)
      : C_(num_features), eps_(static_cast<T>(eps)), momentum_(static_cast<T>(momentum)), affine_(affine),
        track_(track_running_stats), spatial_(spatial_dims), running_mean_(num_features, T(0)),
        running_var_(num_features, T(1)), mean_(num_features), invstd_(num_features), scale_(num_features),
        shift_(num_features), dgamma_(num_features), dbeta_(num_features) {
    FASTNN_CHECK(C_ >= 1, kind(), "num_features must be >= 1, got " << C_);
    FASTNN_CHECK(eps > 0 && std::isfinite(eps), kind(), "eps must be positive and finite, got " << eps);
    FASTNN_CHECK(momentum >= 0 && momentum <= 1, kind(), "momentum must be in [0, 1], got " << momentum);
  }

  std::string kind() const override { return spatial_ == 2 ? "BatchNorm2d" : "BatchNorm1d"; }
  std::vector<ParamSpec> param_specs() const override {
    if (!affine_) return {};
    return {{"weight", {C_}, false}, {"bias", {C_}, false}};
  }
  void bind_params(T* params, T* grads) override {
    gamma_ = params, beta_ = params + C_;
    this->params_bound = true;
    dgamma_acc_ = grads, dbeta_acc_ = grads + C_;
  }
  std::vector<StateSpec<T>> state() override {
    if (!track_) return {};
    return {{"running_mean", View<T>{running_mean_.data(), {C_}}}, {"running_var", View<T>{running_var_.data(), {C_}}}};
  }

  Shape output_shape(const Shape& in) const override {
    const bool ok = spatial_ == 2 ? in.size() == 4 : (in.size() == 2 || in.size() == 3);
    FASTNN_CHECK(ok && in[1] == C_, kind(),
                 "expected input " << (spatial_ == 2 ? "(N, C, H, W)" : "(N, C) or (N, C, L)") << " with C = " << C_
                                   << ", got " << shape_str(in));
    return in;
  }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    output_shape(x.shape);
    x_ = x;
    x_ld_ = 0;
    pooled_forward_ = false;
    training_ = this->training_in(ctx) || !track_;  // without running statistics eval also uses the batch's
    const index_t N = x.batch(), S = x.features() / C_;
    View<T> y = out_.get(x.shape);
    if (training_) {
      check_batch(x.shape);
      batch_norm_forward_train(x.data, N, C_, S, gamma_, beta_, eps_, y.data, mean_.data(), invstd_.data(),
                               momentum_, running_mean(ctx), running_var(ctx));
    } else {
      collect_input(x);
      batch_norm_forward_eval(x.data, N, C_, S, gamma_, beta_, running_mean_.data(), running_var_.data(), eps_,
                              y.data, scale_.data(), shift_.data());
      save_running_stats();
    }
    return y;
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    const index_t N = g.batch(), S = g.features() / C_;
    View<T> dx = grad_in_.get(g.shape);
    batch_norm_backward(g.data, x_.data, N, C_, S, gamma_, mean_.data(), invstd_.data(), training_, dx.data,
                        dgamma_.data(), dbeta_.data());
    accumulate_param_grads();
    return need_input_grad ? dx : View<T>{};
  }

  // forward followed by ReLU and inverted dropout with drop probability p (0: none) under the
  // stream key `seed` (what the Dropout layer passes to dropout_forward), in one pass over the output.
  // DenseBlock's form: x (shape (N, C, H, W)) is channels [0, C) of a wider buffer whose samples
  // are x_ld apart (0: contiguous), and y, if not null, is where the output goes (N*C*H*W values).
  View<T> forward_relu(const View<T>& x, const Context& ctx, double p, std::uint64_t seed, index_t x_ld = 0,
                       T* y_out = nullptr) {
    output_shape(x.shape);
    x_ = x;
    x_ld_ = x_ld;
    pooled_forward_ = false;
    training_ = this->training_in(ctx) || !track_;
    FASTNN_CHECK(training_ || p == 0, kind(), "dropout needs training mode");  // eval: the running statistics
    const index_t N = x.batch(), S = x.features() / C_;
    View<T> y = y_out ? View<T>{y_out, x.shape} : out_.get(x.shape);
    fused_p_ = p;
    // Without dropout the backward recomputes where the ReLU passed from x: no mask.
    std::uint8_t* mask = nullptr;
    if (p > 0) {
      mask_.resize(static_cast<size_t>(x.size()));
      mask = mask_.data();
    }
    if (training_) {
      check_batch(x.shape);
      batch_norm_relu_forward_train(x.data, N, C_, S, gamma_, beta_, eps_, y.data, mask, mean_.data(), invstd_.data(),
                                    momentum_, running_mean(ctx), running_var(ctx), p, seed, ctx.step, scale_.data(),
                                    x_ld);
    } else {
      collect_input(x);
      batch_norm_relu_forward_eval(x.data, N, C_, S, gamma_, beta_, running_mean_.data(), running_var_.data(), eps_,
                                   y.data, mask, scale_.data(), shift_.data(), x_ld);
      save_running_stats();
    }
    return y;
  }

  // Training forward_relu without dropout followed by MaxPool2d(2) (pool: its geometry on x's
  // shape, pool.h is_even_2x2), in one output pass that writes only the pooled values y and their
  // argmax (kernels/batchnorm_activation.h), and keeps each window's x at its argmax and code for
  // backward_relu_max_pool: what backward_relu, recompute_relu and the R-operator read is as
  // forward_relu leaves it.
  void forward_relu_max_pool(const View<T>& x, const Context& ctx, const ConvGeometry& pool, T* y,
                             std::int32_t* argmax) {
    output_shape(x.shape);
    FASTNN_CHECK(this->training_in(ctx) || !track_, kind(), "the fused max pool runs in training mode only");
    check_batch(x.shape);
    x_ = x;
    x_ld_ = 0;
    training_ = true;
    fused_p_ = 0;
    const size_t windows = static_cast<size_t>(pool.n * pool.c * pool.p * pool.q);
    x_at_max_.resize(windows), window_codes_.resize(windows);
    batch_norm_relu_max_pool2d_forward_train(x.data, pool, gamma_, beta_, eps_, y, argmax, mean_.data(),
                                             invstd_.data(), momentum_, running_mean(ctx), running_var(ctx),
                                             scale_.data(), x_at_max_.data(), window_codes_.data());
    pooled_ = pool;
    pooled_forward_ = true;
  }

  // Backward of forward_relu: the ReLU and dropout derivatives applied inside BN's backward passes.
  // DenseBlock's form: dx_out, if not null, is where the input gradient goes, with the forward's
  // sample stride x_ld, written or (add) added to what is there.
  View<T> backward_relu(const View<T>& g, bool need_input_grad, T* dx_out = nullptr, bool add = false) {
    const index_t N = g.batch(), S = g.features() / C_;
    View<T> dx = dx_out ? View<T>{dx_out, g.shape} : grad_in_.get(g.shape);
    // z as forward_relu computed it: training (x - mean) * scale + beta, eval scale * x + shift.
    const T* z_mean = training_ ? mean_.data() : nullptr;
    const T* z_shift = training_ ? beta_ : shift_.data();
    batch_norm_relu_backward(g.data, fused_p_ > 0 ? mask_.data() : nullptr, x_.data, N, C_, S, gamma_, mean_.data(),
                             invstd_.data(), training_, fused_p_, dx.data, dgamma_.data(), dbeta_.data(), z_mean,
                             scale_.data(), z_shift, dx_out ? x_ld_ : 0, add);
    accumulate_param_grads();
    return need_input_grad ? dx : View<T>{};
  }

  // Backward of forward_relu_max_pool from the pool's gradient g_pool: backward_relu of the pool's
  // backward, to rounding (batch_norm_relu_max_pool2d_backward: its sums run over the windows, from
  // what the forward kept, without the pool's full-size gradient or x). Returns the input gradient.
  View<T> backward_relu_max_pool(const T* g_pool) {
    check_pooled_forward();
    View<T> dx = grad_in_.get(x_.shape);
    batch_norm_relu_max_pool2d_backward(g_pool, window_codes_.data(), x_at_max_.data(), pooled_, x_.data, gamma_,
                                        mean_.data(), invstd_.data(), dx.data, dgamma_.data(), dbeta_.data());
    accumulate_param_grads();
    return dx;
  }

  // backward_relu_max_pool's parameter gradients alone, with the coefficients (coef, 3 C values)
  // from which relu_max_pool_grad_image then makes its input gradient an image at a time.
  void backward_relu_max_pool_sums(const T* g_pool, T* coef) {
    check_pooled_forward();
    batch_norm_relu_max_pool2d_backward_sums(g_pool, window_codes_.data(), x_at_max_.data(), pooled_, gamma_,
                                             mean_.data(), invstd_.data(), dgamma_.data(), dbeta_.data(), coef);
    accumulate_param_grads();
  }
  // Image n of backward_relu_max_pool's input gradient, (C, H, W) into dxn, after backward_relu_max_pool_sums.
  void relu_max_pool_grad_image(index_t n, const T* g_pool, const T* coef, T* dxn) const {
    batch_norm_relu_max_pool2d_grad_image(n, g_pool, window_codes_.data(), pooled_, x_.data, mean_.data(), coef, dxn);
  }

  // forward_relu's output (without dropout) again, bit for bit, into y: from the x it read and the
  // coefficients it kept.
  void recompute_relu(T* y) const {
    FASTNN_CHECK(fused_p_ == 0, kind(), "recompute_relu needs a forward without dropout");
    const index_t N = x_.batch(), S = x_.features() / C_;
    if (training_)
      batch_norm_relu_recompute(x_.data, N, C_, S, true, mean_.data(), scale_.data(), beta_, y, x_ld_);
    else
      batch_norm_relu_recompute(x_.data, N, C_, S, false, static_cast<const T*>(nullptr), scale_.data(),
                                shift_.data(), y, x_ld_);
  }

  // recompute_bn_statistics: while collecting, every eval-mode forward also adds its input's
  // per-channel count, sum and sum of squares, in float64 and about the running mean at the start
  // (a shift that keeps the sums from cancelling). A fused layer that bypasses forward/forward_relu
  // in eval mode (conv -> BN) must run them instead while collecting() is set.
  // stop: once it has added its input, the forward ends with StopForward (nothing after this
  // BatchNorm is needed for its statistics).
  void collect(bool on, bool stop = false) {
    collecting_ = on;
    collect_stop_ = on && stop;
    if (!on) return;
    collect_count_ = 0;
    collect_tick_ = 0;
    collect_shift_.assign(running_mean_.begin(), running_mean_.end());
    collect_sum_.assign(C_, 0.0);
    collect_sumsq_.assign(C_, 0.0);
  }
  bool collecting() const { return collecting_; }
  // When it first saw data while collecting (a process-wide count): the order the BatchNorms ran in.
  std::uint64_t collected_tick() const { return collect_tick_; }
  // The values seen per channel, and the sums of (x - shift) and (x - shift)^2 per channel.
  double collected_count() const { return collect_count_; }
  const std::vector<double>& collected_shift() const { return collect_shift_; }
  const std::vector<double>& collected_sum() const { return collect_sum_; }
  const std::vector<double>& collected_sumsq() const { return collect_sumsq_; }

  // The R-operator (kernels/batchnorm_rop.h): training mode differentiates through the batch
  // statistics, eval mode is the running statistics' affine. They follow forward or forward_relu
  // (which keep the statistics used); the ReLU/dropout part of forward_relu is the caller's
  // (FusedBatchNormActivation, relu_factors).
  bool has_rop() const override { return true; }
  void bind_direction(const T* v, T* hv) override {
    vgamma_ = affine_ ? v : nullptr, vbeta_ = affine_ && v ? v + C_ : nullptr;
    hv_ = affine_ ? hv : nullptr;
  }
  View<T> rop_forward(const View<T>& rx, const Context&) override { return rop_forward_to(rx, nullptr); }
  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    FASTNN_CHECK(x_ld_ == 0, kind(), "rop_backward of a strided forward needs rop_backward_to");
    if (!need_input_grad) return rop_backward_to(g, rg, nullptr, nullptr), RopGrad<T>{};
    View<T> dx = grad_in_.get(g.shape), rdx = r_grad_in_.get(g.shape);
    rop_backward_to(g, rg, dx.data, rdx.data);
    return {dx, rdx};
  }
  // DenseBlock's forms: rx has x's layout (samples x_ld apart, as forward_relu read x); ry, if not
  // null, is where R{y} goes (contiguous). rop_backward_to writes (=) dx and rdx with x's layout.
  View<T> rop_forward_to(const View<T>& rx, T* ry_out) {
    FASTNN_CHECK(rx.data == nullptr || rx.shape == x_.shape, kind(),
                 "rop_forward: rx must have the input's shape " << shape_str(x_.shape) << ", got " << shape_str(rx.shape));
    rx_ = rx;
    const index_t N = x_.batch(), S = x_.features() / C_;
    View<T> ry = ry_out ? View<T>{ry_out, x_.shape} : r_out_.get(x_.shape);
    r_mean_.resize(C_), r_cov_.resize(C_);
    const bool dir = this->params_trainable;  // a frozen BatchNorm's parameters are constants
    batch_norm_rop_forward(x_.data, rx.data, N, C_, S, mean_.data(), invstd_.data(), gamma_, dir ? vgamma_ : nullptr,
                           dir ? vbeta_ : nullptr,
                           training_, ry.data, r_mean_.data(), r_cov_.data(), x_ld_);
    return ry;
  }
  void rop_backward_to(const View<T>& g, const View<T>& rg, T* dx, T* rdx) {
    const index_t N = g.batch(), S = g.features() / C_;
    r_dgamma_.resize(C_), r_dbeta_.resize(C_);
    const bool params = affine_ && gamma_;
    batch_norm_rop_backward(g.data, rg.data, x_.data, rx_.data, N, C_, S, mean_.data(), invstd_.data(), gamma_,
                            this->params_trainable ? vgamma_ : nullptr, r_mean_.data(), r_cov_.data(), training_, dx, rdx,
                            params ? dgamma_.data() : nullptr, params ? dbeta_.data() : nullptr,
                            params ? r_dgamma_.data() : nullptr, params ? r_dbeta_.data() : nullptr, x_ld_);
    if (!params) return;
    accumulate_param_grads();
    if (hv_ && this->params_trainable)
      for (index_t c = 0; c < C_; ++c) hv_[c] += r_dgamma_[c], hv_[C_ + c] += r_dbeta_[c];
  }
  // forward_relu's derivative d relu(z) * keep / (1 - p) / dz per element of its output (x's shape, contiguous).
  void relu_factors(T* f) {
    const index_t n = x_.size();
    if (fused_p_ > 0) {
      const T scale = static_cast<T>(1.0 / (1.0 - fused_p_));
      for (index_t i = 0; i < n; ++i) f[i] = (mask_[i] & kReluPass) && (mask_[i] & kKept) ? scale : T(0);
      return;
    }
    recompute_relu(f);
    for (index_t i = 0; i < n; ++i) f[i] = f[i] > T(0) ? T(1) : T(0);
  }

  bool supports_grad_overwrite() const override { return true; }
  // The eval-mode affine y = scale * x + shift from the running statistics (C values each), as
  // forward computes it in eval mode (FusedConvBatchNorm applies it in the conv's output pass).
  void eval_affine(T* scale, T* shift) const {
    batch_norm_fold(gamma_, beta_, running_mean_.data(), running_var_.data(), C_, eps_, scale, shift);
  }
  index_t num_features() const { return C_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  bool track_running_stats() const { return track_; }
  // The shape of the last forward's input (fit checks before training that no batch leaves one
  // value per channel).
  const Shape& last_input_shape() const { return x_.shape; }

 private:
  void check_pooled_forward() const {
    FASTNN_CHECK(pooled_forward_ && x_.data, kind(), "backward_relu_max_pool needs forward_relu_max_pool first");
  }
  void check_batch(const Shape& in) const {
    FASTNN_CHECK(numel(in) / C_ > 1, kind(), "Expected more than 1 value per channel when training, got input "
                                                 << shape_str(in));
  }
  void collect_input(const View<T>& x) {
    if (!collecting_) return;
    static std::atomic<std::uint64_t> ticks{0};
    if (collect_tick_ == 0) collect_tick_ = ++ticks;
    const index_t N = x.batch(), S = x.features() / C_, ld = x_ld_ ? x_ld_ : C_ * S;
    for (index_t c = 0; c < C_; ++c) {
      const double m = collect_shift_[c];
      double s1 = 0, s2 = 0;
      for (index_t n = 0; n < N; ++n) {
        const T* p = x.data + n * ld + c * S;
        for (index_t k = 0; k < S; ++k) {
          const double d = static_cast<double>(p[k]) - m;
          s1 += d, s2 += d * d;
        }
      }
      collect_sum_[c] += s1, collect_sumsq_[c] += s2;
    }
    collect_count_ += static_cast<double>(N * S);
    if (collect_stop_) throw StopForward();
  }
  // The running statistics to update: only when tracked and the model trains.
  T* running_mean(const Context& ctx) { return track_ && this->training_in(ctx) ? running_mean_.data() : nullptr; }
  T* running_var(const Context& ctx) { return track_ && this->training_in(ctx) ? running_var_.data() : nullptr; }
  // Eval mode: the statistics backward differentiates with are the running ones.
  void save_running_stats() {
    std::copy(running_mean_.begin(), running_mean_.end(), mean_.begin());
    batch_norm_invstd(running_var_.data(), C_, eps_, invstd_.data());
  }
  void accumulate_param_grads() {
    if (!affine_ || !this->params_trainable) return;
    if (this->overwrite_grads) {
      std::copy(dgamma_.begin(), dgamma_.end(), dgamma_acc_);
      std::copy(dbeta_.begin(), dbeta_.end(), dbeta_acc_);
    } else {
      for (index_t c = 0; c < C_; ++c) dgamma_acc_[c] += dgamma_[c], dbeta_acc_[c] += dbeta_[c];
    }
  }

  index_t C_;
  T eps_, momentum_;
  bool affine_, track_;
  int spatial_;
  bool training_ = true;
  double fused_p_ = 0;  // forward_relu's drop probability, for backward_relu
  T *gamma_ = nullptr, *beta_ = nullptr, *dgamma_acc_ = nullptr, *dbeta_acc_ = nullptr;
  // scale_/shift_: eval's folded affine; forward_relu in training keeps its gamma * invstd in scale_.
  std::vector<T> running_mean_, running_var_, mean_, invstd_, scale_, shift_, dgamma_, dbeta_;
  bool collecting_ = false, collect_stop_ = false;
  double collect_count_ = 0;
  std::uint64_t collect_tick_ = 0;
  std::vector<double> collect_shift_, collect_sum_, collect_sumsq_;
  std::vector<std::uint8_t> mask_;  // forward_relu's mask bytes (kReluPass | kKept), with dropout
  // forward_relu_max_pool's pool geometry, and each window's x at its argmax and code
  ConvGeometry pooled_;
  bool pooled_forward_ = false;  // the last forward was forward_relu_max_pool
  std::vector<T> x_at_max_;
  std::vector<std::uint8_t> window_codes_;
  View<T> x_, rx_;
  const T *vgamma_ = nullptr, *vbeta_ = nullptr;  // the direction (bind_direction)
  T* hv_ = nullptr;
  std::vector<T> r_mean_, r_cov_, r_dgamma_, r_dbeta_;
  Workspace<T> r_out_, r_grad_in_;
  index_t x_ld_ = 0;  // forward_relu's sample distance of x (0: contiguous)
  Workspace<T> out_, grad_in_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::BatchNorm)
