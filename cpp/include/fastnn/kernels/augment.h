// Data augmentation of (N, C, H, W) batches: flips, integer shifts, crops with padding, affine
// warps (rotation, translation, scale, shear; bilinear or nearest), Gaussian noise, random
// erasing (torchvision's scale/ratio semantics) and brightness/contrast jitter.
//
// Randomness is counter-based (rng.h): the parameters of op k for image i of draw (seed, step)
// come from rng::bits(image_key(seed, step, i), k * kAugmentSlots + j), so the same seed gives the
// same images for any thread count. Each op first draws kAugmentParams numbers per image
// (draw_augment_params) and then applies them (apply_augment_op); reference/augment.py does both
// steps with NumPy, and functional.augment_apply applies given parameters, so each step is tested.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fastnn/common.h"
#include "fastnn/kernels/rng.h"

namespace fastnn {

enum class AugmentKind { hflip, vflip, shift, affine, crop, noise, erase, jitter };
enum class AugmentBorder { constant, edge };

struct ImageShape {
  index_t c = 0, h = 0, w = 0;
  index_t size() const { return c * h * w; }
  bool operator==(const ImageShape& o) const { return c == o.c && h == o.h && w == o.w; }
};

constexpr int kAugmentParams = 8;   // drawn numbers per image and op (layout: draw_augment_params)
constexpr int kAugmentSlots = 64;   // random 64-bit draws reserved per image and op
constexpr int kEraseAttempts = 10;  // torchvision's RandomErasing.get_params

// One augmentation as configured: ranges, probabilities, fill. The values per image are drawn.
struct AugmentOp {
  AugmentKind kind = AugmentKind::hflip;
  double p = 1.0;                                      // hflip, vflip, erase: probability of applying
  index_t max_dy = 0, max_dx = 0;                      // shift: |dy| <= max_dy, |dx| <= max_dx pixels
  double degrees_lo = 0, degrees_hi = 0;               // affine: counter-clockwise rotation range
  double translate_x = 0, translate_y = 0;             // affine: max |t| as a fraction of W, H
  double scale_lo = 1, scale_hi = 1;                   // affine
  double shear_x_lo = 0, shear_x_hi = 0, shear_y_lo = 0, shear_y_hi = 0;  // affine, degrees
  bool nearest = false;                                // affine: nearest instead of bilinear
  index_t out_h = 0, out_w = 0;                        // crop: output size
  index_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;  // crop
  AugmentBorder border = AugmentBorder::constant;      // shift, crop: fill value or nearest edge pixel
  double fill = 0;                                     // shift, affine, crop: value outside the image
  double mean = 0, sigma = 0;                          // noise
  bool clip = false;                                   // noise: clamp to [0, 1] (torchvision v2)
  double area_lo = 0.02, area_hi = 0.33;               // erase: fraction of H * W
  double log_ratio_lo = -1.2039728043259361, log_ratio_hi = 1.1939224684724346;  // erase: log(0.3), log(3.3)
  bool random_value = false;                           // erase: N(0, 1) values instead of `value`
  double value = 0;                                    // erase
  double brightness_lo = 1, brightness_hi = 1, contrast_lo = 1, contrast_hi = 1;  // jitter factors
  bool clamp = false;                                  // jitter: clamp to [clamp_lo, clamp_hi]
  double clamp_lo = 0, clamp_hi = 1;

  ImageShape output_shape(const ImageShape& in) const {
    return kind == AugmentKind::crop ? ImageShape{in.c, out_h, out_w} : in;
  }

  // Backstop of the Python-side validation; `in` is the image shape this op receives.
  void check(const char* op, const ImageShape& in) const {
    FASTNN_CHECK(p >= 0 && p <= 1, op, "p must be in [0, 1], got " << p);
    FASTNN_CHECK(max_dy >= 0 && max_dx >= 0, op, "shift must be >= 0, got (" << max_dy << ", " << max_dx << ")");
    FASTNN_CHECK(std::isfinite(fill) && std::isfinite(value) && std::isfinite(mean) && sigma >= 0 && std::isfinite(sigma),
                 op, "fill, value and mean must be finite and sigma >= 0");
    FASTNN_CHECK(std::isfinite(degrees_lo) && std::isfinite(degrees_hi) && degrees_lo <= degrees_hi, op,
                 "degrees must be a finite range (lo <= hi)");
    FASTNN_CHECK(translate_x >= 0 && translate_x <= 1 && translate_y >= 0 && translate_y <= 1, op,
                 "translate fractions must be in [0, 1]");
    FASTNN_CHECK(scale_lo > 0 && scale_lo <= scale_hi && std::isfinite(scale_hi), op, "scale must be a range of positive numbers");
    for (double s : {shear_x_lo, shear_x_hi, shear_y_lo, shear_y_hi})
      FASTNN_CHECK(s > -90 && s < 90, op, "shear angles must be in (-90, 90) degrees, got " << s);
    FASTNN_CHECK(shear_x_lo <= shear_x_hi && shear_y_lo <= shear_y_hi, op, "shear ranges must have lo <= hi");
    FASTNN_CHECK(area_lo >= 0 && area_lo <= area_hi && area_hi <= 1, op, "erasing scale must be a range in [0, 1]");
    FASTNN_CHECK(std::isfinite(log_ratio_lo) && log_ratio_lo <= log_ratio_hi && std::isfinite(log_ratio_hi), op,
                 "erasing ratio must be a range of positive numbers");
    FASTNN_CHECK(brightness_lo >= 0 && brightness_lo <= brightness_hi && std::isfinite(brightness_hi) &&
                     contrast_lo >= 0 && contrast_lo <= contrast_hi && std::isfinite(contrast_hi),
                 op, "brightness and contrast factors must be ranges of non-negative numbers");
    FASTNN_CHECK(!clamp || clamp_lo <= clamp_hi, op, "value_range must have lo <= hi");
    if (kind == AugmentKind::crop) {
      FASTNN_CHECK(out_h >= 1 && out_w >= 1, op, "crop size must be >= 1, got (" << out_h << ", " << out_w << ")");
      FASTNN_CHECK(pad_top >= 0 && pad_left >= 0 && pad_bottom >= 0 && pad_right >= 0, op, "padding must be >= 0");
      FASTNN_CHECK(out_h <= in.h + pad_top + pad_bottom && out_w <= in.w + pad_left + pad_right, op,
                   "crop size (" << out_h << ", " << out_w << ") is larger than the padded image ("
                                 << in.h + pad_top + pad_bottom << ", " << in.w + pad_left + pad_right << ")");
    }
  }
};

namespace augment_detail {

constexpr std::uint64_t kSalt = 0xa6c35e71d2f94b08ULL;  // keeps augmentation draws apart from dropout's
constexpr double kPi = 3.14159265358979323846;

inline double uniform_in(double u, double lo, double hi) { return lo + (hi - lo) * u; }

// An integer in [lo, hi] from u in [0, 1); the min guards u * n rounding up to n.
inline double randint(double u, index_t lo, index_t hi) {
  return static_cast<double>(std::min(hi, lo + static_cast<index_t>(std::floor(u * static_cast<double>(hi - lo + 1)))));
}

// A 64-bit key stored exactly in two doubles of the parameter record.
inline void put_key(std::uint64_t key, double* out) {
  out[0] = static_cast<double>(key >> 32);
  out[1] = static_cast<double>(key & 0xffffffffULL);
}
inline std::uint64_t get_key(const double* in) {
  return (static_cast<std::uint64_t>(in[0]) << 32) | static_cast<std::uint64_t>(in[1]);
}

// Standard normal number i of a stream: Box-Muller on pairs, cos for even i, sin for odd i.
inline double normal(std::uint64_t key, index_t i) {
  const std::uint64_t q = static_cast<std::uint64_t>(i / 2) * 2;
  const double u1 = (static_cast<double>(rng::bits(key, q) >> 11) + 1.0) * (1.0 / 9007199254740992.0);  // (0, 1]
  const double u2 = rng::uniform<double>(rng::bits(key, q + 1));
  const double r = std::sqrt(-2.0 * std::log(u1));
  return r * ((i % 2 == 0) ? std::cos(2.0 * kPi * u2) : std::sin(2.0 * kPi * u2));
}

// The inverse map (output pixel -> input point) of an affine warp about the image centre
// ((W-1)/2, (H-1)/2): forward p_out = c + t + scale * R(angle) * Shear * (p_in - c), with
// R = [[cos, sin], [-sin, cos]] (counter-clockwise on screen, y pointing down) and
// Shear = [[1, tan sx], [0, 1]] [[1, 0], [tan sy, 1]]. xs = m[0] x + m[1] y + m[2], ys = m[3] x + m[4] y + m[5].
inline void inverse_affine(const double* prm, index_t h, index_t w, double* m) {
  const double th = prm[0] * kPi / 180.0, cs = std::cos(th), sn = std::sin(th);
  const double tx = std::tan(prm[4] * kPi / 180.0), ty = std::tan(prm[5] * kPi / 180.0), s = prm[3];
  const double s00 = 1.0 + tx * ty, s01 = tx, s10 = ty, s11 = 1.0;
  const double a00 = s * (cs * s00 + sn * s10), a01 = s * (cs * s01 + sn * s11);
  const double a10 = s * (-sn * s00 + cs * s10), a11 = s * (-sn * s01 + cs * s11);
  const double det = a00 * a11 - a01 * a10;
  const double i00 = a11 / det, i01 = -a01 / det, i10 = -a10 / det, i11 = a00 / det;
  const double cx = 0.5 * static_cast<double>(w - 1), cy = 0.5 * static_cast<double>(h - 1);
  const double ox = cx + prm[1], oy = cy + prm[2];
  m[0] = i00, m[1] = i01, m[2] = cx - (i00 * ox + i01 * oy);
  m[3] = i10, m[4] = i11, m[5] = cy - (i10 * ox + i11 * oy);
}

// out(y, x) = in(y + oy, x + ox) for out of size (oh, ow); outside `in`: fill, or the nearest edge pixel.
template <class T>
void translate_copy(const T* src, T* dst, const ImageShape& in, index_t oh, index_t ow, index_t oy, index_t ox,
                    AugmentBorder border, T fill) {
  const bool edge = border == AugmentBorder::edge;
  // Columns [x_lo, x_hi) of the output read inside the input row.
  const index_t x_lo = std::clamp<index_t>(-ox, 0, ow), x_hi = std::clamp<index_t>(in.w - ox, x_lo, ow);
  for (index_t c = 0; c < in.c; ++c) {
    const T* sc = src + c * in.h * in.w;
    T* dc = dst + c * oh * ow;
    for (index_t y = 0; y < oh; ++y) {
      T* d = dc + y * ow;
      index_t sy = y + oy;
      if (sy < 0 || sy >= in.h) {
        if (!edge) {
          std::fill(d, d + ow, fill);
          continue;
        }
        sy = std::clamp<index_t>(sy, 0, in.h - 1);
      }
      const T* s = sc + sy * in.w;
      const T left = edge ? s[0] : fill, right = edge ? s[in.w - 1] : fill;
      std::fill(d, d + x_lo, left);
      if (x_hi > x_lo) std::memcpy(d + x_lo, s + x_lo + ox, sizeof(T) * (x_hi - x_lo));
      std::fill(d + x_hi, d + ow, right);
    }
  }
}

// Samples src at the inverse-mapped point of every output pixel. `padded` (C x (H+2) x (W+2)
// scratch) holds src inside a border of fill, so that every point strictly inside (-1, W) x (-1, H)
// reads its four neighbours without bounds checks (measured 6x faster than checking each).
template <class T>
void affine_sample(const T* src, T* dst, const ImageShape& s, const double* m, bool nearest, T fill, T* padded) {
  const index_t hw = s.h * s.w, pw = s.w + 2, ph = s.h + 2;
  for (index_t c = 0; c < s.c; ++c) {
    T* p = padded + c * ph * pw;
    std::fill(p, p + pw, fill);
    std::fill(p + (ph - 1) * pw, p + ph * pw, fill);
    for (index_t y = 0; y < s.h; ++y) {
      T* row = p + (y + 1) * pw;
      row[0] = row[pw - 1] = fill;
      std::memcpy(row + 1, src + c * hw + y * s.w, sizeof(T) * s.w);
    }
  }
  const double W = static_cast<double>(s.w), H = static_cast<double>(s.h), f = static_cast<double>(fill);
  for (index_t c = 0; c < s.c; ++c) {
    const T* p = padded + c * ph * pw;
    T* d = dst + c * hw;
    for (index_t y = 0; y < s.h; ++y) {
      const double bx = m[1] * y + m[2], by = m[4] * y + m[5];
      for (index_t x = 0; x < s.w; ++x) {
        const double xs = m[0] * x + bx, ys = m[3] * x + by;
        double v = f;
        if (nearest) {
          const double xr = std::floor(xs + 0.5), yr = std::floor(ys + 0.5);
          if (xr >= 0 && xr < W && yr >= 0 && yr < H)
            v = p[(static_cast<index_t>(yr) + 1) * pw + static_cast<index_t>(xr) + 1];
        } else if (xs > -1 && xs < W && ys > -1 && ys < H) {  // false for NaN too
          const double xf = std::floor(xs), yf = std::floor(ys), fx = xs - xf, fy = ys - yf;
          const T* q = p + (static_cast<index_t>(yf) + 1) * pw + static_cast<index_t>(xf) + 1;
          const double top = double(q[0]) + fx * (double(q[1]) - double(q[0]));
          const double bottom = double(q[pw]) + fx * (double(q[pw + 1]) - double(q[pw]));
          v = top + fy * (bottom - top);
        }
        d[y * s.w + x] = static_cast<T>(v);
      }
    }
  }
}

template <class T>
T clamp_to(double v, bool clamp, double lo, double hi) {
  return static_cast<T>(clamp ? std::min(std::max(v, lo), hi) : v);
}

// Mean intensity for contrast: torchvision's grayscale weights for 3 channels, else the mean of all values.
template <class T>
double contrast_mean(const T* x, const ImageShape& s) {
  const index_t hw = s.h * s.w;
  double total = 0;
  for (index_t c = 0; c < s.c; ++c) {
    double sum = 0;
    for (index_t i = 0; i < hw; ++i) sum += double(x[c * hw + i]);
    const double weight = s.c == 3 ? (c == 0 ? 0.2989 : c == 1 ? 0.587 : 0.114) : 1.0 / double(s.c);
    total += weight * sum;
  }
  return total / double(hw);
}

}  // namespace augment_detail

// The key of image i's draws; op k's random bits j are rng::bits(key, k * kAugmentSlots + j).
inline std::uint64_t augment_image_key(std::uint64_t seed, std::uint64_t step, index_t i) {
  return rng::bits(rng::stream_key(seed ^ augment_detail::kSalt, step), static_cast<std::uint64_t>(i));
}

// Draws op k's parameters for one image of shape `s` into out[0..kAugmentParams):
//   hflip, vflip: [applied]                 shift: [dy, dx] (pixels move by +dy, +dx)
//   affine: [angle, tx, ty, scale, shear_x, shear_y]   crop: [top, left] in the padded image
//   noise: [key_hi, key_lo]                 erase: [applied, top, left, h, w, key_hi, key_lo]
//   jitter: [brightness, contrast, contrast_first]
inline void draw_augment_params(const AugmentOp& op, const ImageShape& s, std::uint64_t image_key, int k, double* out) {
  using namespace augment_detail;
  std::fill(out, out + kAugmentParams, 0.0);
  const std::uint64_t base = static_cast<std::uint64_t>(k) * kAugmentSlots;
  auto u = [&](int j) { return rng::uniform<double>(rng::bits(image_key, base + j)); };
  const std::uint64_t sub_key = rng::bits(image_key, base + kAugmentSlots - 1);
  switch (op.kind) {
    case AugmentKind::hflip:
    case AugmentKind::vflip:
      out[0] = u(0) < op.p;
      break;
    case AugmentKind::shift:
      out[0] = randint(u(0), -op.max_dy, op.max_dy);
      out[1] = randint(u(1), -op.max_dx, op.max_dx);
      break;
    case AugmentKind::affine: {
      const double max_tx = op.translate_x * double(s.w), max_ty = op.translate_y * double(s.h);
      out[0] = uniform_in(u(0), op.degrees_lo, op.degrees_hi);
      out[1] = std::nearbyint(uniform_in(u(1), -max_tx, max_tx));  // whole pixels, as torchvision
      out[2] = std::nearbyint(uniform_in(u(2), -max_ty, max_ty));
      out[3] = uniform_in(u(3), op.scale_lo, op.scale_hi);
      out[4] = uniform_in(u(4), op.shear_x_lo, op.shear_x_hi);
      out[5] = uniform_in(u(5), op.shear_y_lo, op.shear_y_hi);
      break;
    }
    case AugmentKind::crop:
      out[0] = randint(u(0), 0, s.h + op.pad_top + op.pad_bottom - op.out_h);
      out[1] = randint(u(1), 0, s.w + op.pad_left + op.pad_right - op.out_w);
      break;
    case AugmentKind::noise:
      put_key(sub_key, out);
      break;
    case AugmentKind::erase: {
      if (!(u(0) < op.p)) break;
      const double area = double(s.h) * double(s.w);
      for (int t = 0; t < kEraseAttempts; ++t) {  // torchvision's RandomErasing.get_params
        const double erase_area = area * uniform_in(u(1 + 4 * t), op.area_lo, op.area_hi);
        const double aspect = std::exp(uniform_in(u(2 + 4 * t), op.log_ratio_lo, op.log_ratio_hi));
        const double eh = std::nearbyint(std::sqrt(erase_area * aspect)), ew = std::nearbyint(std::sqrt(erase_area / aspect));
        if (!(eh < double(s.h) && ew < double(s.w))) continue;
        out[0] = 1;
        out[1] = randint(u(3 + 4 * t), 0, s.h - static_cast<index_t>(eh));
        out[2] = randint(u(4 + 4 * t), 0, s.w - static_cast<index_t>(ew));
        out[3] = eh, out[4] = ew;
        put_key(sub_key, out + 5);
        break;
      }
      break;
    }
    case AugmentKind::jitter:
      out[0] = uniform_in(u(0), op.brightness_lo, op.brightness_hi);
      out[1] = uniform_in(u(1), op.contrast_lo, op.contrast_hi);
      out[2] = u(2) < 0.5;  // torchvision applies its adjustments in a random order
      break;
  }
}

// Whether op with these parameters changes the image (a flip or erasing not drawn is skipped).
inline bool augment_op_active(const AugmentOp& op, const double* prm) {
  switch (op.kind) {
    case AugmentKind::hflip:
    case AugmentKind::vflip:
    case AugmentKind::erase:
      return prm[0] != 0;
    case AugmentKind::shift:
      return prm[0] != 0 || prm[1] != 0;
    default:
      return true;
  }
}

// Scratch that apply_augment_op needs for an image of shape s.
inline index_t augment_scratch_size(const ImageShape& s) { return s.c * (s.h + 2) * (s.w + 2); }

// Applies op with drawn parameters to one image: src of shape s, dst of op.output_shape(s); no
// overlap; scratch: augment_scratch_size(s) values.
template <class T>
void apply_augment_op(const AugmentOp& op, const double* prm, const T* src, T* dst, const ImageShape& s, T* scratch) {
  using namespace augment_detail;
  const index_t hw = s.h * s.w, n = s.size();
  const T fill = static_cast<T>(op.fill);
  switch (op.kind) {
    case AugmentKind::hflip:
      for (index_t r = 0; r < s.c * s.h; ++r)
        for (index_t x = 0; x < s.w; ++x) dst[r * s.w + x] = src[r * s.w + s.w - 1 - x];
      break;
    case AugmentKind::vflip:
      for (index_t c = 0; c < s.c; ++c)
        for (index_t y = 0; y < s.h; ++y)
          std::memcpy(dst + c * hw + y * s.w, src + c * hw + (s.h - 1 - y) * s.w, sizeof(T) * s.w);
      break;
    case AugmentKind::shift:
      translate_copy(src, dst, s, s.h, s.w, -static_cast<index_t>(prm[0]), -static_cast<index_t>(prm[1]), op.border,
                     fill);
      break;
    case AugmentKind::crop:
      translate_copy(src, dst, s, op.out_h, op.out_w, static_cast<index_t>(prm[0]) - op.pad_top,
                     static_cast<index_t>(prm[1]) - op.pad_left, op.border, fill);
      break;
    case AugmentKind::affine: {
      double m[6];
      inverse_affine(prm, s.h, s.w, m);
      affine_sample(src, dst, s, m, op.nearest, fill, scratch);
      break;
    }
    case AugmentKind::noise: {
      const std::uint64_t key = get_key(prm);
      for (index_t i = 0; i < n; ++i)
        dst[i] = clamp_to<T>(double(src[i]) + op.mean + op.sigma * normal(key, i), op.clip, 0.0, 1.0);
      break;
    }
    case AugmentKind::erase: {
      std::memcpy(dst, src, sizeof(T) * n);
      const index_t top = static_cast<index_t>(prm[1]), left = static_cast<index_t>(prm[2]);
      const index_t eh = static_cast<index_t>(prm[3]), ew = static_cast<index_t>(prm[4]);
      const std::uint64_t key = get_key(prm + 5);
      const T value = static_cast<T>(op.value);
      for (index_t c = 0; c < s.c; ++c)
        for (index_t y = 0; y < eh; ++y)
          for (index_t x = 0; x < ew; ++x)
            dst[c * hw + (top + y) * s.w + left + x] =
                op.random_value ? static_cast<T>(normal(key, (c * eh + y) * ew + x)) : value;
      break;
    }
    case AugmentKind::jitter: {
      const double b = prm[0], cf = prm[1];
      auto brightness = [&](const T* in) {
        for (index_t i = 0; i < n; ++i) dst[i] = clamp_to<T>(b * double(in[i]), op.clamp, op.clamp_lo, op.clamp_hi);
      };
      auto contrast = [&](const T* in) {
        const double m = (1.0 - cf) * contrast_mean(in, s);
        for (index_t i = 0; i < n; ++i) dst[i] = clamp_to<T>(cf * double(in[i]) + m, op.clamp, op.clamp_lo, op.clamp_hi);
      };
      if (prm[2] != 0) {
        contrast(src);
        brightness(dst);
      } else {
        brightness(src);
        contrast(dst);
      }
      break;
    }
  }
}

// A pipeline of ops on images of one input shape.
template <class T>
class Augmenter {
 public:
  Augmenter(std::vector<AugmentOp> ops, ImageShape in, const char* op) : ops_(std::move(ops)) {
    FASTNN_CHECK(in.c >= 1 && in.h >= 1 && in.w >= 1, op, "image shape must be positive, got (" << in.c << ", " << in.h
                                                                                                  << ", " << in.w << ")");
    shapes_.push_back(in);
    max_size_ = in.size();
    for (const AugmentOp& o : ops_) {
      o.check(op, shapes_.back());
      shapes_.push_back(o.output_shape(shapes_.back()));
      max_size_ = std::max(max_size_, shapes_.back().size());
      op_scratch_ = std::max(op_scratch_, augment_scratch_size(shapes_[shapes_.size() - 2]));
    }
  }

  const ImageShape& input_shape() const { return shapes_.front(); }
  const ImageShape& output_shape() const { return shapes_.back(); }
  index_t n_ops() const { return static_cast<index_t>(ops_.size()); }
  index_t params_per_image() const { return n_ops() * kAugmentParams; }

  // Parameters of image i of draw (seed, step): params_per_image() numbers.
  void draw(std::uint64_t seed, std::uint64_t step, index_t i, double* out) const {
    const std::uint64_t key = augment_image_key(seed, step, i);
    for (index_t k = 0; k < n_ops(); ++k)
      draw_augment_params(ops_[k], shapes_[k], key, static_cast<int>(k), out + k * kAugmentParams);
  }

  // Given parameters (augment_apply) must be ones draw() can make: whole numbers where it draws
  // integers, rectangles inside the image, keys of 32-bit halves.
  void check_params(const double* params, index_t n, const char* op) const {
    auto whole = [](double v, double lo, double hi) { return v == std::floor(v) && v >= lo && v <= hi; };
    for (index_t i = 0; i < n; ++i) {
      for (index_t k = 0; k < n_ops(); ++k) {
        const double* p = params + (i * n_ops() + k) * kAugmentParams;
        const AugmentOp& o = ops_[k];
        const ImageShape& s = shapes_[k];
        bool ok = std::all_of(p, p + kAugmentParams, [](double v) { return std::isfinite(v); });
        switch (o.kind) {
          case AugmentKind::hflip:
          case AugmentKind::vflip:
            ok = ok && (p[0] == 0 || p[0] == 1);
            break;
          case AugmentKind::shift:
            ok = ok && whole(p[0], -1e15, 1e15) && whole(p[1], -1e15, 1e15);  // any shift reads inside
            break;
          case AugmentKind::affine:
            ok = ok && p[3] > 0 && std::fabs(p[4]) < 90 && std::fabs(p[5]) < 90;
            break;
          case AugmentKind::crop:
            ok = ok && whole(p[0], 0, double(s.h + o.pad_top + o.pad_bottom - o.out_h)) &&
                 whole(p[1], 0, double(s.w + o.pad_left + o.pad_right - o.out_w));
            break;
          case AugmentKind::noise:
            ok = ok && whole(p[0], 0, 4294967295.0) && whole(p[1], 0, 4294967295.0);
            break;
          case AugmentKind::erase:
            ok = ok && (p[0] == 0 || (p[0] == 1 && whole(p[3], 0, double(s.h)) && whole(p[4], 0, double(s.w)) &&
                                      whole(p[1], 0, double(s.h) - p[3]) && whole(p[2], 0, double(s.w) - p[4]) &&
                                      whole(p[5], 0, 4294967295.0) && whole(p[6], 0, 4294967295.0)));
            break;
          case AugmentKind::jitter:
            ok = ok && (p[2] == 0 || p[2] == 1);
            break;
        }
        FASTNN_CHECK(ok, op, "params[" << i << ", " << k << "] are not parameters this op draws for images of shape ("
                                        << s.c << ", " << s.h << ", " << s.w << ")");
      }
    }
  }

  // Scratch values apply() needs: two images of the largest stage, and an op's own scratch.
  index_t scratch_size() const { return 2 * max_size_ + op_scratch_; }

  // One image: src (input shape) -> dst (output shape), with scratch_size() values of scratch.
  void apply(const double* params, const T* src, T* dst, T* scratch) const {
    // Ops not drawn (a flip with probability p) are skipped; they never change the shape. The
    // last op that changes the image writes straight into dst.
    int last = -1;
    for (index_t k = 0; k < n_ops(); ++k)
      if (augment_op_active(ops_[k], params + k * kAugmentParams)) last = int(k);
    if (last < 0) {
      std::memcpy(dst, src, sizeof(T) * input_shape().size());
      return;
    }
    const T* in = src;
    int buf = 0;
    for (int k = 0; k <= last; ++k) {
      const double* prm = params + k * kAugmentParams;
      if (!augment_op_active(ops_[k], prm)) continue;
      T* out = k == last ? dst : scratch + buf * max_size_;
      apply_augment_op(ops_[k], prm, in, out, shapes_[k], scratch + 2 * max_size_);
      in = out;
      buf ^= 1;
    }
  }

  // count images: image i is read from src(i) and written to dst + i * output size; its draw is
  // image first_index + i of (seed, step). params: given parameters (count x params_per_image), or
  // nullptr to draw them. Parallel over images; the result does not depend on the thread count.
  template <class Src>
  void run(Src&& src, index_t count, T* dst, std::uint64_t seed, std::uint64_t step, const double* params = nullptr,
           index_t first_index = 0) const {
    const index_t out_size = output_shape().size();
    const index_t cost = std::max(input_shape().size(), max_size_) * (4 + 8 * n_ops());
    parallel_for(count, cost, [&](index_t b, index_t e) {
      std::vector<T> scratch(scratch_size());
      std::vector<double> drawn(params ? 0 : params_per_image());
      for (index_t i = b; i < e; ++i) {
        if (i + 1 < e) __builtin_prefetch(src(i + 1));
        const double* prm = params ? params + i * params_per_image() : drawn.data();
        if (!params) draw(seed, step, first_index + i, drawn.data());
        apply(prm, src(i), dst + i * out_size, scratch.data());
      }
    });
  }

 private:
  std::vector<AugmentOp> ops_;
  std::vector<ImageShape> shapes_;  // shapes_[k]: the input of op k; back(): the output
  index_t max_size_ = 0;
  index_t op_scratch_ = 0;
};

}  // namespace fastnn
