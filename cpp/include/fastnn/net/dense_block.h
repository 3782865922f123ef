// DenseBlock (Huang et al. 2017; torchvision's _DenseBlock): layer i sees the channel
// concatenation of the block input and the outputs of layers 0..i-1, and the block's output is the
// concatenation of all of them. Layer i (torchvision's _DenseLayer) is BN-ReLU-1x1 conv to
// bn_size*k channels, then BN-ReLU-3x3 conv to k (the bottleneck form), or BN-ReLU-3x3 conv alone,
// and inverted dropout on its k new channels while training.
//
// Memory (Pleiss et al. 2017, "Memory-efficient implementation of DenseNets"): one feature buffer
// (N, C0 + L k, H, W) holds the block's input (copied in once) and every layer's k new channels
// (written into their slice); layer i's first BN reads channels [0, C0 + i k) of it in place, with
// the buffer's sample stride (kernels/batchnorm_activation.h x_ld), so the growing concatenation
// is never copied. The backward runs on one gradient buffer of the same shape: layer i reads its new
// channels' gradient from its slice and its first BN adds its input gradient into channels
// [0, C0 + i k), so each earlier slice holds the sum over all its uses when its layer comes.
// The BN-ReLU outputs that the convs read (the first one C0 + i k channels, quadratic in L in
// total) either live in one buffer per kind that all layers share and are recomputed from the
// feature buffer before each layer's backward, bit for bit (shared_scratch, Pleiss et al.'s
// choice), or are kept per layer. Measured on DenseNet-BC's (64, 24, 28, 28), k = 12, 16 layers
// (bench/bench_dense_block.py): recomputing costs ~6% more CPU time per forward+backward (1 thread)
// and saves 400 MB (0.44 instead of 0.84 GB in all), so it is the default. The layers'
// input gradients (conv1's of C0 + i k channels, conv2's, BN2's) are used once, right away: one
// buffer each serves all layers (Conv2d::backward_into), and so does the convs' im2col scratch
// (Conv2d::share_scratch). What stays per layer is linear in L: the bottleneck's conv1 output
// (BN2's input), conv2's output, and the dropout mask.
//
// The R-operator keeps the same layout: R{features} lives in a second buffer of the feature
// buffer's shape, R{grad} in a second gradient buffer, and each layer's BN runs its R-op in place
// on them (batchnorm.h rop_forward_to / rop_backward_to, the samples C_total H W apart). The convs'
// R{input} (the BN-ReLU's R{output}: relu'(z) R{z}) is written to one buffer per kind for all
// layers, and recomputed before each layer's rop_backward, as the BN-ReLU outputs are.
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastnn/kernels/blockwise.h"
#include "fastnn/kernels/dropout.h"
#include "fastnn/kernels/rng.h"
#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/conv.h"
#include "fastnn/layers/layer.h"
#include "fastnn/net/container.h"

namespace fastnn {

template <class T>
class DenseBlock : public Container<T> {
 public:
  struct DenseLayer {
    std::shared_ptr<BatchNorm<T>> norm1;
    LayerPtr<T> conv1;
    std::shared_ptr<BatchNorm<T>> norm2;  // null without the bottleneck (bn_size=None)
    LayerPtr<T> conv2;                    // null without the bottleneck
  };

  // layers: per dense layer norm1, conv1, norm2, conv2 (bottleneck) or norm1, conv1, in run order.
  DenseBlock(const std::vector<LayerPtr<T>>& layers, index_t in_channels, index_t growth_rate, bool bottleneck,
             double drop_rate, bool shared_scratch)
      : Container<T>(layers, child_names(layers.size(), bottleneck), "DenseBlock"), C0_(in_channels), k_(growth_rate),
        bottleneck_(bottleneck), p_(drop_rate), shared_(shared_scratch) {
    FASTNN_CHECK(in_channels >= 1 && growth_rate >= 1, "DenseBlock",
                 "in_channels and growth_rate must be >= 1, got " << in_channels << " and " << growth_rate);
    FASTNN_CHECK(drop_rate >= 0 && drop_rate < 1, "DenseBlock", "drop_rate must be in [0, 1), got " << drop_rate);
    const size_t per = bottleneck ? 4 : 2;
    FASTNN_CHECK(!layers.empty() && layers.size() % per == 0, "DenseBlock",
                 "expected " << per << " children per dense layer, got " << layers.size());
    for (size_t i = 0; i < layers.size(); i += per) {
      DenseLayer d;
      d.norm1 = batch_norm(layers[i], i / per, "norm1");
      d.conv1 = layers[i + 1];
      if (bottleneck) d.norm2 = batch_norm(layers[i + 2], i / per, "norm2"), d.conv2 = layers[i + 3];
      FASTNN_CHECK(d.conv1 && (!bottleneck || d.conv2), "DenseBlock", layer_name(layers_.size()) << ": a conv is None");
      const index_t c_in = C0_ + index_t(layers_.size()) * k_;
      FASTNN_CHECK(d.norm1->num_features() == c_in, "DenseBlock",
                   layer_name(layers_.size()) << ".norm1 has " << d.norm1->num_features() << " features, expected "
                                              << c_in);
      layers_.push_back(std::move(d));
    }
    scratch_.resize(layers_.size());
    masks_.resize(layers_.size());
    // The layers run one after the other: their convs' im2col scratch (C0 + i k channels for a
    // 3x3 conv1) is one for all.
    auto conv_scratch = std::make_shared<typename Conv2d<T>::Scratch>();
    for (const auto& d : layers_)
      for (const auto& c : {d.conv1, d.conv2})
        if (auto* conv = dynamic_cast<Conv2d<T>*>(c.get())) conv->share_scratch(conv_scratch);
  }

  std::string kind() const override { return "DenseBlock"; }
  index_t num_layers() const { return index_t(layers_.size()); }
  index_t out_channels() const { return C0_ + num_layers() * k_; }
  bool shared_scratch() const { return shared_; }
  void set_shared_scratch(bool on) { shared_ = on; }
  // Elements of the buffers the block itself holds after a forward+backward at the last shape (the
  // feature and gradient buffers, the BN-ReLU outputs, the gathered and the 1x1 convs' input
  // gradients, the input gradient); its children's own buffers (of bn_size*k or k channels each:
  // linear in the layers) are not counted.
  index_t buffer_elements() const {
    auto size = [](const Shape& s) { return s.empty() ? index_t(0) : numel(s); };  // {}: never allocated
    index_t n = 2 * size(out_shape_) + size(drop_shape_);
    for (const auto& s : scratch_shapes_) n += size(s);
    for (const auto& [ws, elements] : sizes_) n += elements;
    return n;
  }

  Shape output_shape(const Shape& in) const override {
    FASTNN_CHECK(in.size() == 4 && in[1] == C0_, "DenseBlock",
                 "expected input (N, " << C0_ << ", H, W), got " << shape_str(in));
    for (size_t i = 0; i < layers_.size(); ++i) check_new_features(i, layer_output_shape(i, in), in);
    return {in[0], out_channels(), in[2], in[3]};
  }

  View<T> forward(const View<T>& x, const Context& ctx) override {
    output_shape(x.shape);
    const index_t N = x.shape[0], H = x.shape[2], W = x.shape[3], S = H * W, C = out_channels(), ld = C * S;
    out_shape_ = {N, C, H, W};
    View<T> buf = buf_.get(out_shape_);
    parallel_for(N, C0_ * S, [&](index_t n0, index_t n1) {  // the one copy of the block's input
      for (index_t n = n0; n < n1; ++n) std::memcpy(buf.data + n * ld, x.data + n * C0_ * S, sizeof(T) * C0_ * S);
    });
    drop_ = this->training_in(ctx) && p_ > 0;
    const std::uint64_t key = drop_ ? rng::stream_key(ctx.seed, this->salt) : 0;
    recomputed_ = shared_;
    scratch_shapes_.assign(layers_.size(), Shape{});
    // Sized once for the widest layer, so that the addresses the convs keep hold until backward.
    T* shared1 = shared_ ? scratch(scratch1_, {N, C - k_, H, W}) : nullptr;
    T* shared2 = shared_ && bottleneck_ ? scratch(scratch2_, {N, mid(), H, W}) : nullptr;
    for (size_t i = 0; i < layers_.size(); ++i) {
      DenseLayer& d = layers_[i];
      const index_t ci = C0_ + index_t(i) * k_;
      const Shape si{N, ci, H, W};
      T* y1 = shared1;
      if (!y1) y1 = scratch_[i].get(si).data, scratch_shapes_[i] = si;
      d.norm1->forward_relu(View<T>{buf.data, si}, ctx, 0.0, 0, ld, y1);
      View<T> h = d.conv1->forward(View<T>{y1, si}, ctx);
      if (bottleneck_) h = d.conv2->forward(d.norm2->forward_relu(h, ctx, 0.0, 0, 0, shared2), ctx);
      check_new_features(i, h.shape, x.shape);
      if (drop_) {  // inverted dropout on the new features, a stream per layer
        drop_shape_ = h.shape;
        View<T> t = drop_out_.get(h.shape);
        masks_[i].resize(size_t(h.size()));
        dropout_forward(h.data, t.data, masks_[i].data(), h.size(), p_, rng::stream_key(key, i + 1), ctx.step);
        h = t;
      }
      copy_channels(h.data, k_ * S, buf.data + ci * S, ld, N, k_ * S);
    }
    return buf;
  }

  View<T> backward(const View<T>& g, bool need_input_grad) override {
    const index_t N = out_shape_[0], H = out_shape_[2], W = out_shape_[3], S = H * W, C = out_channels(),
                  ld = C * S;
    View<T> gbuf = gbuf_.get(out_shape_);
    std::memcpy(gbuf.data, g.data, sizeof(T) * gbuf.size());
    T* gk = scratch(gk_, {N, k_, H, W});
    // The layers' input gradients are used once, right away: one buffer each for all layers.
    T* g1 = scratch(g1_, {N, C - k_, H, W});
    T *g2 = bottleneck_ ? scratch(g2_, {N, mid(), H, W}) : nullptr, *g3 = bottleneck_ ? scratch(g3_, {N, mid(), H, W}) : nullptr;
    for (size_t i = layers_.size(); i-- > 0;) {
      DenseLayer& d = layers_[i];
      const index_t ci = C0_ + index_t(i) * k_;
      // the gradient of this layer's new channels: what the block's output and every later layer sent
      copy_channels(gbuf.data + ci * S, ld, gk, k_ * S, N, k_ * S);
      if (drop_) dropout_backward(gk, masks_[i].data(), gk, N * k_ * S, p_);
      if (recomputed_) {  // the convs' inputs again, into the shared buffers they read
        d.norm1->recompute_relu(scratch1_.get({N, C - k_, H, W}).data);
        if (bottleneck_) d.norm2->recompute_relu(scratch2_.get({N, mid(), H, W}).data);
      }
      View<T> h{gk, {N, k_, H, W}};
      if (bottleneck_) {
        h = conv_backward(*d.conv2, h, g2, {N, mid(), H, W}, layer_name(i) + ".conv2");
        d.norm2->backward_relu(h, true, g3);
        h = View<T>{g3, h.shape};
      }
      h = conv_backward(*d.conv1, h, g1, {N, ci, H, W}, layer_name(i) + ".conv1");
      d.norm1->backward_relu(h, false, gbuf.data, true);  // added into channels [0, ci) of the gradient buffer
    }
    if (!need_input_grad) return {};
    View<T> dx{scratch(dx_, {N, C0_, H, W}), {N, C0_, H, W}};
    copy_channels(gbuf.data, ld, dx.data, C0_ * S, N, C0_ * S);
    return dx;
  }

  bool has_rop() const override { return this->children_have_rop(); }

  View<T> rop_forward(const View<T>& rx, const Context& ctx) override {
    const index_t N = out_shape_[0], H = out_shape_[2], W = out_shape_[3], S = H * W, C = out_channels(), ld = C * S;
    const Shape in{N, C0_, H, W};
    FASTNN_CHECK(!rx.data || rx.shape == in, "DenseBlock",
                 "rx must have the input's shape " << shape_str(in) << ", got " << shape_str(rx.shape));
    View<T> rbuf = rbuf_.get(out_shape_);
    if (rx.data)
      copy_channels(rx.data, C0_ * S, rbuf.data, ld, N, C0_ * S);
    else
      parallel_for(N, C0_ * S, [&](index_t n0, index_t n1) {
        for (index_t n = n0; n < n1; ++n) std::fill(rbuf.data + n * ld, rbuf.data + n * ld + C0_ * S, T(0));
      });
    r_mid_.assign(layers_.size(), View<T>{});
    for (size_t i = 0; i < layers_.size(); ++i) {
      DenseLayer& d = layers_[i];
      const index_t ci = C0_ + index_t(i) * k_;
      // the convs' inputs of this layer, into the shared buffers they read (the forward left the last layer's)
      if (recomputed_) d.norm1->recompute_relu(scratch1_.get({N, C - k_, H, W}).data);
      View<T> rh = d.conv1->rop_forward(conv1_r_input(i, rbuf.data), ctx);
      if (bottleneck_) {
        r_mid_[i] = rh;
        if (recomputed_) d.norm2->recompute_relu(scratch2_.get({N, mid(), H, W}).data);
        rh = d.conv2->rop_forward(conv2_r_input(i), ctx);
      }
      FASTNN_CHECK(rh.shape == (Shape{N, k_, H, W}), "DenseBlock",
                   layer_name(i) << " gives R{new features} of shape " << shape_str(rh.shape));
      T* dst = rbuf.data + ci * S;
      if (!rh.data) {  // 0 (a frozen layer of an R{x} = 0)
        parallel_for(N, k_ * S, [&](index_t n0, index_t n1) {
          for (index_t n = n0; n < n1; ++n) std::fill(dst + n * ld, dst + n * ld + k_ * S, T(0));
        });
        continue;
      }
      if (drop_) {  // the same mask and scale (dropout is linear in its input)
        View<T> t = drop_out_.get(rh.shape);
        dropout_backward(rh.data, masks_[i].data(), t.data, rh.size(), p_);
        rh = t;
      }
      copy_channels(rh.data, k_ * S, dst, ld, N, k_ * S);
    }
    return rbuf;
  }

  RopGrad<T> rop_backward(const View<T>& g, const View<T>& rg, bool need_input_grad) override {
    const index_t N = out_shape_[0], H = out_shape_[2], W = out_shape_[3], S = H * W, C = out_channels(),
                  ld = C * S;
    View<T> gbuf = gbuf_.get(out_shape_), rgbuf = rgbuf_.get(out_shape_);
    std::memcpy(gbuf.data, g.data, sizeof(T) * gbuf.size());
    std::memcpy(rgbuf.data, rg.data, sizeof(T) * rgbuf.size());
    const View<T> rbuf = rbuf_.get(out_shape_);
    T *gk = scratch(gk_, {N, k_, H, W}), *rgk = scratch(rgk_, {N, k_, H, W});
    T *g1 = scratch(g1_, {N, C - k_, H, W}), *rg1 = scratch(rg1_, {N, C - k_, H, W});
    T *g2 = nullptr, *rg2 = nullptr, *g3 = nullptr, *rg3 = nullptr;
    if (bottleneck_) {
      g2 = scratch(g2_, {N, mid(), H, W}), rg2 = scratch(rg2_, {N, mid(), H, W});
      g3 = scratch(g3_, {N, mid(), H, W}), rg3 = scratch(rg3_, {N, mid(), H, W});
    }
    // BN1's input gradients, in the feature buffer's layout, before they are added into it
    T *t = scratch(r_t_, out_shape_), *rt = scratch(r_rt_, out_shape_);
    for (size_t i = layers_.size(); i-- > 0;) {
      DenseLayer& d = layers_[i];
      const index_t ci = C0_ + index_t(i) * k_;
      copy_channels(gbuf.data + ci * S, ld, gk, k_ * S, N, k_ * S);
      copy_channels(rgbuf.data + ci * S, ld, rgk, k_ * S, N, k_ * S);
      if (drop_) {
        dropout_backward(gk, masks_[i].data(), gk, N * k_ * S, p_);
        dropout_backward(rgk, masks_[i].data(), rgk, N * k_ * S, p_);
      }
      if (recomputed_) {  // the convs' inputs again, as backward does
        d.norm1->recompute_relu(scratch1_.get({N, C - k_, H, W}).data);
        if (bottleneck_) d.norm2->recompute_relu(scratch2_.get({N, mid(), H, W}).data);
      }
      const Shape si{N, ci, H, W}, sm{N, mid(), H, W}, sk{N, k_, H, W};
      conv1_r_input(i, rbuf.data);  // conv1's R{input} again (rs1_), and relu' (rf1_)
      const T* f1 = rf1_.get(si).data;
      View<T> h{gk, sk}, rh{rgk, sk};
      if (bottleneck_) {
        conv2_r_input(i);
        conv_rop_backward(*d.conv2, h, rh, g2, rg2, sm, layer_name(i) + ".conv2");
        const T* f2 = rf2_.get(sm).data;
        scale_by(g2, f2, numel(sm)), scale_by(rg2, f2, numel(sm));
        d.norm2->rop_backward_to(View<T>{g2, sm}, View<T>{rg2, sm}, g3, rg3);
        h = View<T>{g3, sm}, rh = View<T>{rg3, sm};
      }
      conv_rop_backward(*d.conv1, h, rh, g1, rg1, si, layer_name(i) + ".conv1");
      scale_by(g1, f1, numel(si)), scale_by(rg1, f1, numel(si));
      d.norm1->rop_backward_to(View<T>{g1, si}, View<T>{rg1, si}, t, rt);
      add_channels(t, gbuf.data, ld, N, ci * S);
      add_channels(rt, rgbuf.data, ld, N, ci * S);
    }
    if (!need_input_grad) return {};
    const Shape in{N, C0_, H, W};
    RopGrad<T> r{View<T>{scratch(dx_, in), in}, View<T>{scratch(rdx_, in), in}};
    copy_channels(gbuf.data, ld, r.grad.data, C0_ * S, N, C0_ * S);
    copy_channels(rgbuf.data, ld, r.rgrad.data, C0_ * S, N, C0_ * S);
    return r;
  }

 private:
  static std::shared_ptr<BatchNorm<T>> batch_norm(const LayerPtr<T>& l, size_t i, const char* name) {
    auto bn = std::dynamic_pointer_cast<BatchNorm<T>>(l);
    FASTNN_CHECK(bn != nullptr, "DenseBlock",
                 layer_name(i) << "." << name << " must be a BatchNorm2d, got " << (l ? l->kind() : "None"));
    return bn;
  }
  static std::string layer_name(size_t i) { return "denselayer" + std::to_string(i + 1); }

  // torchvision's names of the children, in run order: denselayer1.norm1, denselayer1.conv1, ...
  static std::vector<std::string> child_names(size_t n, bool bottleneck) {
    std::vector<std::string> names;
    const size_t per = bottleneck ? 4 : 2;
    for (size_t i = 0; i < n; ++i) {
      const char* parts[] = {"norm1", "conv1", "norm2", "conv2"};
      names.push_back(layer_name(i / per) + "." + parts[i % per]);
    }
    return names;
  }

  index_t mid() const { return bottleneck_ ? layers_[0].norm2->num_features() : 0; }

  // ws's buffer for `shape`, counted in buffer_elements.
  T* scratch(Workspace<T>& ws, const Shape& shape) {
    sizes_[&ws] = numel(shape);
    return ws.get(shape).data;
  }

  // A conv's backward with its input gradient (of shape `in`) written to dx (a Conv2d), or
  // returned and checked (another layer).
  View<T> conv_backward(Layer<T>& conv, const View<T>& g, T* dx, const Shape& in, const std::string& label) {
    if (auto* c = dynamic_cast<Conv2d<T>*>(&conv)) {
      c->backward_into(g, dx);
      return View<T>{dx, in};
    }
    View<T> h = conv.backward(g, true);
    this->check_grad(label, h, in);
    return h;
  }

  // Layer i's conv1 R{input} = relu'(z1) R{z1}, R{z1} = BN1's R-op on channels [0, ci) of R{features}
  // rbuf, into the buffer all layers share (rs1_), with relu' kept in rf1_ for the backward.
  View<T> conv1_r_input(size_t i, const T* rbuf) {
    const index_t N = out_shape_[0], H = out_shape_[2], W = out_shape_[3];
    const Shape si{N, C0_ + index_t(i) * k_, H, W};
    T* r = scratch(rs1_, {N, out_channels() - k_, H, W});
    T* f = scratch(rf1_, {N, out_channels() - k_, H, W});
    layers_[i].norm1->rop_forward_to(View<T>{const_cast<T*>(rbuf), si}, r);
    layers_[i].norm1->relu_factors(f);
    scale_by(r, f, numel(si));
    return View<T>{r, si};
  }
  // The same for conv2 from R{conv1 output} (r_mid_[i]), into rs2_ (relu' into rf2_).
  View<T> conv2_r_input(size_t i) {
    const index_t N = out_shape_[0], H = out_shape_[2], W = out_shape_[3];
    const Shape sm{N, mid(), H, W};
    T *r = scratch(rs2_, sm), *f = scratch(rf2_, sm);
    layers_[i].norm2->rop_forward_to(r_mid_[i], r);
    layers_[i].norm2->relu_factors(f);
    scale_by(r, f, numel(sm));
    return View<T>{r, sm};
  }
  // y[i] *= f[i] (the ReLU's derivative, its second one being 0).
  static void scale_by(T* y, const T* f, index_t n) {
    parallel_for(n, 1, [=](index_t b, index_t e) {
      blockwise::map_plain(y + b, e - b, [](T a, T c) { return a * c; }, y + b, f + b);
    });
  }
  // dst's first len values of each of N samples (ld apart) += src's (len apart).
  static void add_channels(const T* src, T* dst, index_t ld, index_t N, index_t len) {
    parallel_for(N, len, [&](index_t n0, index_t n1) {
      for (index_t n = n0; n < n1; ++n)
        blockwise::map_plain(dst + n * ld, len, [](T a, T b) { return a + b; }, dst + n * ld, src + n * ld);
    });
  }
  // A conv's rop_backward with dx and R{dx} (of shape `in`) written to dx, rdx (a Conv2d), or
  // returned, checked and copied (another layer).
  void conv_rop_backward(Layer<T>& conv, const View<T>& g, const View<T>& rg, T* dx, T* rdx, const Shape& in,
                         const std::string& label) {
    if (auto* c = dynamic_cast<Conv2d<T>*>(&conv)) return c->rop_backward_into(g, rg, dx, rdx);
    const RopGrad<T> r = conv.rop_backward(g, rg, true);
    this->check_grad(label, r.grad, in);
    this->check_grad(label, r.rgrad, in);
    std::memcpy(dx, r.grad.data, sizeof(T) * numel(in));
    std::memcpy(rdx, r.rgrad.data, sizeof(T) * numel(in));
  }

  // The shape of layer i's new features for the block input shape `in`.
  Shape layer_output_shape(size_t i, const Shape& in) const {
    const DenseLayer& d = layers_[i];
    Shape s = d.norm1->output_shape({in[0], C0_ + index_t(i) * k_, in[2], in[3]});
    s = d.conv1->output_shape(s);
    if (bottleneck_ && !is_partial(s)) s = d.conv2->output_shape(d.norm2->output_shape(s));
    return s;
  }
  void check_new_features(size_t i, const Shape& s, const Shape& in) const {
    const Shape want{in[0], k_, in[2], in[3]};
    FASTNN_CHECK(is_partial(s) ? shape_fits(s, want) : s == want, "DenseBlock",
                 layer_name(i) << " gives new features of shape " << shape_str(s) << " for the block input "
                               << shape_str(in) << ", expected " << shape_str(want));
  }

  // N rows of `len` values from src (rows src_ld apart) to dst (rows dst_ld apart).
  static void copy_channels(const T* src, index_t src_ld, T* dst, index_t dst_ld, index_t N, index_t len) {
    parallel_for(N, len, [&](index_t n0, index_t n1) {
      for (index_t n = n0; n < n1; ++n) std::memcpy(dst + n * dst_ld, src + n * src_ld, sizeof(T) * len);
    });
  }

  index_t C0_, k_;
  bool bottleneck_;
  double p_;
  bool shared_;
  bool drop_ = false;  // the last forward applied dropout
  std::vector<DenseLayer> layers_;
  bool recomputed_ = true;  // the last forward wrote the BN-ReLU outputs into the shared buffers
  Workspace<T> buf_, gbuf_, scratch1_, scratch2_, gk_, g1_, g2_, g3_, dx_, drop_out_;
  // the R-operator's: R{features}, R{grad}, the convs' R{inputs} and relu', R{g} of each stage
  Workspace<T> rbuf_, rgbuf_, rs1_, rs2_, rf1_, rf2_, rgk_, rg1_, rg2_, rg3_, r_t_, r_rt_, rdx_;
  std::vector<View<T>> r_mid_;  // per layer: R{conv1 output} (the bottleneck's BN2 input)
  std::vector<Workspace<T>> scratch_;  // the BN1-ReLU outputs kept per layer (without shared scratch)
  std::map<const Workspace<T>*, index_t> sizes_;  // what scratch() handed out
  std::vector<std::vector<std::uint8_t>> masks_;
  Shape out_shape_, drop_shape_;
  std::vector<Shape> scratch_shapes_;
};

}  // namespace fastnn

// Compiled in cpp/instantiate/ (see FASTNN_COMPILED_ONCE in layers/layer.h).
FASTNN_COMPILED_ONCE(fastnn::DenseBlock)
