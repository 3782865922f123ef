// Data augmentation of (N, C, H, W) batches: flips, integer shifts, crops with padding, affine
// warps (rotation, translation, scale, shear; bilinear or nearest), Gaussian noise, random
// erasing (torchvision's scale/ratio semantics) and brightness/contrast jitter.
//
// Randomness is counter-based (rng.h): the parameters of op k for image i of draw (seed, step)
// come from rng::bits(image_key(seed, step, i), k * kAugmentSlots + j), so the same seed gives the
// same images for any thread count. Each op first draws kAugmentParams numbers per image
// (draw_augment_params) and then applies them; reference/augment.py does both steps with NumPy,
// one op after another, and functional.augment_apply applies given parameters, so each step is tested.
//
// Augmenter::apply composes each run of consecutive geometric ops into as few passes as keep the
// result equal, bit for bit, to one pass per op (apply_augment_op): flips, shifts and crops move
// whole pixels, so a chain of them is one copy through per-axis pixel maps (AxisStep) that keep
// every intermediate op's fill; a chain before an affine warp is copied into the warp's bordered
// input (or, for float images the AVX-512 sampler takes, read through the maps straight from the
// source rows: DirectRows), and one after it maps the warp's output rows and columns. Two warps
// are never merged (bilinear of bilinear is not one bilinear sample). For fit's usual shift +
// flip + rotation on 28 x 28 images that is one pass over the data set rows instead of four.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

// A warp samples its input inside a one-pixel border of its fill, C x (H+2) x (W+2), so that every
// point strictly inside (-1, W) x (-1, H) reads its four neighbours without bounds checks (measured
// 6x faster than checking each). bordered_size: that buffer's values.
inline index_t bordered_size(const ImageShape& s) { return s.c * (s.h + 2) * (s.w + 2); }
constexpr index_t kBorderedSlack = 32;  // values after the bordered buffer that a row read may touch

template <class T>
void fill_border(T* padded, const ImageShape& s, T fill) {
  const index_t pw = s.w + 2, ph = s.h + 2;
  for (index_t c = 0; c < s.c; ++c) {
    T* p = padded + c * ph * pw;
    std::fill(p, p + pw, fill);
    std::fill(p + (ph - 1) * pw, p + ph * pw, fill);
    for (index_t y = 1; y < ph - 1; ++y) p[y * pw] = p[y * pw + pw - 1] = fill;
  }
}

// Where the pixels of one output row sample the bordered image: the offset of the top-left
// neighbour (nearest: of the pixel), the fractions, and keep = 1 where the point lies inside
// (else the pixel is fill). Computed once per row for all channels.
template <class T>
struct SampleTaps {
  std::vector<std::int32_t> offset;
  std::vector<T> fx, fy, keep;
  void resize(index_t w) { offset.resize(w), fx.resize(w), fy.resize(w), keep.resize(w); }
};

// Bilinear taps (the scalar loop; with AVX-512, float images of width <= 30 use
// bilinear_rows_permute). The sampling point is computed in the image's own type, as that loop
// does (16 floats per register instead of 8 doubles; in the scalar loop float is 1.08-1.10x
// faster than double): for float32 images it is off by a few float ulps of its coordinates and,
// bilinear sampling being continuous, the value by that times the image's value span, the bound
// tests/kernels/test_augment.py warp_error_bound checks. A nearest pick is not continuous, so
// nearest_taps stays in double. A point outside (-1, W) x (-1, H) (or NaN) samples at (0, 0),
// kept out by keep = 0.
template <class T>
void bilinear_taps(const double* m, index_t y, const ImageShape& s, SampleTaps<T>& t) {
  const std::int32_t w = static_cast<std::int32_t>(s.w), pw = w + 2;
  const T m0 = T(m[0]), m3 = T(m[3]), bx = T(m[1] * double(y) + m[2]), by = T(m[4] * double(y) + m[5]);
  const T W = T(s.w), H = T(s.h);
  std::int32_t* offset = t.offset.data();
  T *fx = t.fx.data(), *fy = t.fy.data(), *keep = t.keep.data();
  for (std::int32_t x = 0; x < w; ++x) {
    const T xs = m0 * T(x) + bx, ys = m3 * T(x) + by;
    const bool in = xs > T(-1) && xs < W && ys > T(-1) && ys < H;
    const T xc = in ? xs : T(0), yc = in ? ys : T(0);
    const T xf = std::floor(xc), yf = std::floor(yc);
    fx[x] = xc - xf, fy[x] = yc - yf, keep[x] = in ? T(1) : T(0);
    offset[x] = (static_cast<std::int32_t>(yf) + 1) * pw + static_cast<std::int32_t>(xf) + 1;
  }
}

// Nearest taps, in double always: rounding at exact halves must match the reference.
template <class T>
void nearest_taps(const double* m, index_t y, const ImageShape& s, SampleTaps<T>& t) {
  const std::int32_t w = static_cast<std::int32_t>(s.w), pw = w + 2;
  const double bx = m[1] * double(y) + m[2], by = m[4] * double(y) + m[5], W = double(s.w), H = double(s.h);
  for (std::int32_t x = 0; x < w; ++x) {
    const double xr = std::floor(m[0] * double(x) + bx + 0.5), yr = std::floor(m[3] * double(x) + by + 0.5);
    const bool in = xr >= 0 && xr < W && yr >= 0 && yr < H;
    t.keep[x] = in ? T(1) : T(0);
    t.offset[x] = in ? (static_cast<std::int32_t>(yr) + 1) * pw + static_cast<std::int32_t>(xr) + 1 : 0;
  }
}

// Whether a float warp of images of shape s uses bilinear_rows_permute.
inline bool permutes_rows(const ImageShape& s, bool nearest) {
#if defined(__AVX512F__)
  return !nearest && s.w <= 30;
#else
  (void)s, (void)nearest;
  return false;
#endif
}

// A warp's bordered input read straight from the image before its whole-pixel chain, without
// the copy (Augmenter::warp_pass decides when): bordered row r is source row rowmap[r] (< 0: all
// fill) of `src`, its column j is entry colmap[j] of that row, 31 meaning the fill.
struct DirectRows {
  const float* src = nullptr;
  index_t plane = 0, row_stride = 0, width = 0;  // width <= 31
  const std::int32_t* rowmap = nullptr;
  alignas(64) std::int32_t colmap[32] = {};
};

#if defined(__AVX512F__)
// bilinear_taps and sample_row in one loop with AVX-512 for float images of width <= 30
// (MNIST-sized: a bordered row fits two registers), 16 pixels per step, every channel of output
// row y at out + c * stride. GCC vectorizes neither loop (its cost model for AMD cores refuses
// the gathers), and written out with gathers (~20 cycles each on Zen 4) the loop was no faster
// than the scalar one, so each source row a block of 16 pixels touches is held in two registers
// and its pixels picked with vpermt2ps; a block of a small rotation touches a few rows. The rows
// come from the bordered buffer (direct == nullptr; read 32 values at a time: the buffer has
// kBorderedSlack values after it) or straight from the image (DirectRows). The coordinates use
// fused multiply-adds, the scalar loop does not: results differ from it by rounding, within the
// same bound. The last, partial step is masked, so every pixel runs the same instructions.
inline void bilinear_rows_permute(const float* padded, const DirectRows* direct, const ImageShape& s, const double* m,
                                  index_t y, float fill, float* out, index_t stride) {
  const __m512 m0 = _mm512_set1_ps(float(m[0])), m3 = _mm512_set1_ps(float(m[3]));
  const __m512 bx = _mm512_set1_ps(float(m[1] * double(y) + m[2])), by = _mm512_set1_ps(float(m[4] * double(y) + m[5]));
  const __m512 W = _mm512_set1_ps(float(s.w)), H = _mm512_set1_ps(float(s.h)), minus1 = _mm512_set1_ps(-1.0f);
  const __m512 vfill = _mm512_set1_ps(fill), iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i one = _mm512_set1_epi32(1);
  index_t plane = (s.h + 2) * (s.w + 2), row_stride = s.w + 2;
  const float* base = padded;
  __mmask16 lo_mask = 0xffff, hi_mask = 0xffff;
  __m512i map_lo = _mm512_setzero_si512(), map_hi = map_lo;
  if (direct) {
    map_lo = _mm512_load_si512(direct->colmap), map_hi = _mm512_load_si512(direct->colmap + 16);
    plane = direct->plane, row_stride = direct->row_stride, base = direct->src;
    lo_mask = direct->width >= 16 ? __mmask16(0xffff) : __mmask16((1u << direct->width) - 1);
    hi_mask = direct->width <= 16 ? __mmask16(0) : __mmask16((1u << (direct->width - 16)) - 1);
  }
  for (index_t x = 0; x < s.w; x += 16) {
    const __mmask16 lanes = s.w - x >= 16 ? __mmask16(0xffff) : __mmask16((1u << (s.w - x)) - 1);
    const __m512 xv = _mm512_add_ps(iota, _mm512_set1_ps(float(x)));
    const __m512 xs = _mm512_fmadd_ps(m0, xv, bx), ys = _mm512_fmadd_ps(m3, xv, by);
    const __mmask16 in = lanes & _mm512_cmp_ps_mask(xs, minus1, _CMP_GT_OQ) & _mm512_cmp_ps_mask(W, xs, _CMP_GT_OQ) &
                         _mm512_cmp_ps_mask(ys, minus1, _CMP_GT_OQ) & _mm512_cmp_ps_mask(H, ys, _CMP_GT_OQ);  // NaN: out
    if (in == 0) {
      for (index_t c = 0; c < s.c; ++c) _mm512_mask_storeu_ps(out + c * stride + x, lanes, vfill);
      continue;
    }
    const __m512 xf = _mm512_maskz_roundscale_ps(in, xs, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 yf = _mm512_maskz_roundscale_ps(in, ys, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 fx = _mm512_maskz_sub_ps(in, xs, xf), fy = _mm512_maskz_sub_ps(in, ys, yf);
    __m512i col = _mm512_add_epi32(_mm512_cvttps_epi32(xf), one), col1 = _mm512_add_epi32(col, one);
    if (direct)
      col = _mm512_permutex2var_epi32(map_lo, col, map_hi), col1 = _mm512_permutex2var_epi32(map_lo, col1, map_hi);
    const __m512i row = _mm512_add_epi32(_mm512_cvttps_epi32(yf), one);  // bordered row of the top neighbours
    const int r_lo = _mm512_mask_reduce_min_epi32(in, row), r_hi = _mm512_mask_reduce_max_epi32(in, row);
    for (index_t c = 0; c < s.c; ++c) {
      const float* p = base + c * plane;
      __m512 q00 = _mm512_setzero_ps(), q01 = q00, q10 = q00, q11 = q00;
      // Bordered row r is the top row of the lanes whose top row is r, and the bottom row of
      // those whose top row is r - 1: two picks serve both.
      __mmask16 above = 0;  // lanes whose top row is r - 1
      for (int r = r_lo; r <= r_hi + 1; ++r) {
        __m512 lo = vfill, hi = vfill;
        const index_t source = direct ? direct->rowmap[r] : r;
        if (source >= 0) {
          lo = _mm512_mask_loadu_ps(vfill, lo_mask, p + source * row_stride);
          hi = _mm512_mask_loadu_ps(vfill, hi_mask, p + source * row_stride + 16);
        }
        const __m512 left = _mm512_permutex2var_ps(lo, col, hi), right = _mm512_permutex2var_ps(lo, col1, hi);
        const __mmask16 here = r <= r_hi ? _mm512_mask_cmpeq_epi32_mask(in, row, _mm512_set1_epi32(r)) : __mmask16(0);
        q00 = _mm512_mask_mov_ps(q00, here, left), q01 = _mm512_mask_mov_ps(q01, here, right);
        q10 = _mm512_mask_mov_ps(q10, above, left), q11 = _mm512_mask_mov_ps(q11, above, right);
        above = here;
      }
      const __m512 top = _mm512_fmadd_ps(fx, _mm512_sub_ps(q01, q00), q00);
      const __m512 bottom = _mm512_fmadd_ps(fx, _mm512_sub_ps(q11, q10), q10);
      const __m512 v = _mm512_fmadd_ps(fy, _mm512_sub_ps(bottom, top), top);
      _mm512_mask_storeu_ps(out + c * stride + x, lanes, _mm512_mask_blend_ps(in, vfill, v));
    }
  }
}
#endif

// One channel's row from the bordered channel p: bilinear as three linear interpolations
// (reference/augment.py _affine), or the nearest pixel.
template <class T>
void sample_row(const T* p, index_t pw, const SampleTaps<T>& t, index_t w, bool nearest, T fill, T* d) {
  const std::int32_t* offset = t.offset.data();
  const T *fx = t.fx.data(), *fy = t.fy.data(), *keep = t.keep.data();
  if (nearest) {
    for (index_t x = 0; x < w; ++x) d[x] = keep[x] != T(0) ? p[offset[x]] : fill;
    return;
  }
  for (index_t x = 0; x < w; ++x) {
    const T* q = p + offset[x];
    const T top = q[0] + fx[x] * (q[1] - q[0]);
    const T bottom = q[pw] + fx[x] * (q[pw + 1] - q[pw]);
    const T v = top + fy[x] * (bottom - top);
    d[x] = keep[x] != T(0) ? v : fill;
  }
}

// Whole-pixel ops (flips, shifts, crops) act on each axis separately: along an axis, op k reads
// input coordinate sign * out + offset, and outside [0, n_in) it fills (constant border) or clamps
// to the edge. Through a chain of them, output coordinate i reads map[i] >= 0, or map[i] =
// fill_code(k): the fill of op k, the last op (in application order) whose input it leaves. A
// pixel is the fill of the later of its row's and its column's op, or input(ymap[y], xmap[x]).
struct AxisStep {
  index_t sign, offset, n_in;
  bool clamp;
};

inline bool moves_whole_pixels(AugmentKind k) {
  return k == AugmentKind::hflip || k == AugmentKind::vflip || k == AugmentKind::shift || k == AugmentKind::crop;
}

// Op `op` (drawn parameters prm, input shape s) along the rows (y) or the columns (x).
inline AxisStep axis_step(const AugmentOp& op, const double* prm, const ImageShape& s, bool rows) {
  const index_t n = rows ? s.h : s.w;
  const bool edge = op.border == AugmentBorder::edge;
  if ((op.kind == AugmentKind::hflip && !rows) || (op.kind == AugmentKind::vflip && rows)) return {-1, n - 1, n, false};
  if (op.kind == AugmentKind::shift) return {1, -static_cast<index_t>(prm[rows ? 0 : 1]), n, edge};  // as translate_copy
  if (op.kind == AugmentKind::crop)
    return {1, static_cast<index_t>(prm[rows ? 0 : 1]) - (rows ? op.pad_top : op.pad_left), n, edge};
  return {1, 0, n, false};  // a flip along the other axis
}

inline std::int32_t fill_code(index_t k) { return static_cast<std::int32_t>(-1 - k); }
inline index_t filled_by(std::int32_t code) { return -1 - static_cast<index_t>(code); }

// map[0..n_out) of the chain of ops ks[0..m) (steps[t]: op ks[t] on this axis), walking back
// from the last op as the sequential ops' reads do.
inline void axis_map(const AxisStep* steps, const index_t* ks, index_t m, index_t n_out, std::int32_t* map) {
  for (index_t i = 0; i < n_out; ++i) {
    index_t c = i, t = m;
    while (t-- > 0) {
      const AxisStep& st = steps[t];
      c = st.sign * c + st.offset;
      if (c >= 0 && c < st.n_in) continue;
      if (!st.clamp) break;
      c = std::clamp<index_t>(c, 0, st.n_in - 1);
    }
    map[i] = t >= 0 ? fill_code(ks[t]) : static_cast<std::int32_t>(c);
  }
}

// The columns of a chain: [lo, hi) holds every column that reads the input row; when they read
// map[lo] + step * (x - lo) with step +-1 (shifts, crops, flips without an edge clamp) a row is a
// copy or a reversed copy; step 0: each reads map[x] (or its fill).
struct ColumnMap {
  const std::int32_t* map = nullptr;
  index_t n = 0, lo = 0, hi = 0;
  int step = 0;
};

inline ColumnMap column_map(const std::int32_t* map, index_t n) {
  ColumnMap cm{map, n, 0, n, 0};
  while (cm.lo < n && map[cm.lo] < 0) ++cm.lo;
  while (cm.hi > cm.lo && map[cm.hi - 1] < 0) --cm.hi;
  for (int step : {1, -1}) {
    bool linear = true;
    for (index_t x = cm.lo; x < cm.hi && linear; ++x) linear = map[x] == map[cm.lo] + step * (x - cm.lo);
    if (linear) {
      cm.step = step;
      break;
    }
  }
  return cm;
}

// One output row from input row s; fills[k]: op k's fill.
template <class T>
void map_row(const T* s, T* d, const ColumnMap& cm, const T* fills) {
  const std::int32_t* map = cm.map;
  for (index_t x = 0; x < cm.lo; ++x) d[x] = fills[filled_by(map[x])];
  for (index_t x = cm.hi; x < cm.n; ++x) d[x] = fills[filled_by(map[x])];
  if (cm.hi == cm.lo) return;
  if (cm.step == 1) {
    std::memcpy(d + cm.lo, s + map[cm.lo], sizeof(T) * (cm.hi - cm.lo));
  } else if (cm.step == -1) {
    const T* e = s + map[cm.lo] + cm.lo;  // d[x] = s[map[lo] - (x - lo)]
    for (index_t x = cm.lo; x < cm.hi; ++x) d[x] = e[-x];
  } else {
    for (index_t x = cm.lo; x < cm.hi; ++x) d[x] = map[x] >= 0 ? s[map[x]] : fills[filled_by(map[x])];
  }
}

// A row that op k fills; a column that a later op fills takes that op's fill.
template <class T>
void filled_row(T* d, const ColumnMap& cm, index_t k, const T* fills) {
  for (index_t x = 0; x < cm.n; ++x) d[x] = fills[std::max(k, cm.map[x] < 0 ? filled_by(cm.map[x]) : index_t(-1))];
}

// A chain on one image of shape `in`: output row y of channel c goes to dst + c * plane + y * stride.
template <class T>
void copy_through_maps(const T* src, const ImageShape& in, const std::int32_t* ymap, index_t oh, const ColumnMap& cols,
                       const T* fills, T* dst, index_t stride, index_t plane) {
  for (index_t c = 0; c < in.c; ++c)
    for (index_t y = 0; y < oh; ++y) {
      T* d = dst + c * plane + y * stride;
      if (ymap[y] < 0)
        filled_row(d, cols, filled_by(ymap[y]), fills);
      else
        map_row(src + (c * in.h + ymap[y]) * in.w, d, cols, fills);
    }
}

// The chain after a warp, applied to the warp's rows as they are sampled.
template <class T>
struct AfterWarp {
  const std::int32_t* ymap;
  index_t oh;
  ColumnMap cols;
  const T* fills;
};

// A warp (inverse map m) of the bordered image `padded` of shape s into dst: the warp's own
// rows, or (after != nullptr) the rows of the chain after it, each warp row sampled once per
// distinct row it feeds. rows: s.c * s.w values of scratch.
template <class T>
void warp(const T* padded, const ImageShape& s, const double* m, bool nearest, T fill, SampleTaps<T>& taps,
          const AfterWarp<T>* after, T* rows, T* dst, const DirectRows* direct = nullptr) {
  const index_t pw = s.w + 2, plane = (s.h + 2) * pw;
  auto sample = [&](index_t y, index_t row_stride, T* out) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (permutes_rows(s, nearest)) {
        bilinear_rows_permute(padded, direct, s, m, y, fill, out, row_stride);
        return;
      }
    }
#endif
    if (nearest)
      nearest_taps(m, y, s, taps);
    else
      bilinear_taps(m, y, s, taps);
    for (index_t c = 0; c < s.c; ++c) sample_row(padded + c * plane, pw, taps, s.w, nearest, fill, out + c * row_stride);
  };
  if (!after) {
    for (index_t y = 0; y < s.h; ++y) sample(y, s.h * s.w, dst + y * s.w);
    return;
  }
  const index_t ow = after->cols.n, out_plane = after->oh * ow;
  index_t sampled = -1;
  for (index_t y = 0; y < after->oh; ++y) {
    const std::int32_t r = after->ymap[y];
    if (r < 0) {
      for (index_t c = 0; c < s.c; ++c) filled_row(dst + c * out_plane + y * ow, after->cols, filled_by(r), after->fills);
      continue;
    }
    if (r != sampled) sample(r, s.w, rows), sampled = r;
    for (index_t c = 0; c < s.c; ++c) map_row(rows + c * s.w, dst + c * out_plane + y * ow, after->cols, after->fills);
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

// Per-thread scratch of Augmenter::apply and apply_augment_op (Augmenter::workspace sizes it).
template <class T>
struct AugmentWorkspace {
  std::vector<T> images;  // two images of the largest stage: the passes' outputs, alternately
  std::vector<T> padded;  // a warp's input inside its border (augment_detail::bordered_size)
  std::vector<T> rows;    // one warped row of every channel, before the chain after the warp
  augment_detail::SampleTaps<T> taps;
  std::vector<std::int32_t> ymap, xmap, rowmap;  // rowmap: augment_detail::DirectRows
  std::vector<augment_detail::AxisStep> ysteps, xsteps;
  std::vector<index_t> before, after;  // op indices of the whole-pixel chains before and after a warp
};

// Applies op with drawn parameters to one image: src of shape s, dst of op.output_shape(s); no
// overlap; ws sized for s (Augmenter::workspace).
template <class T>
void apply_augment_op(const AugmentOp& op, const double* prm, const T* src, T* dst, const ImageShape& s,
                      AugmentWorkspace<T>& ws) {
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
      const index_t pw = s.w + 2;
      T* p = ws.padded.data();
      fill_border(p, s, fill);
      for (index_t c = 0; c < s.c; ++c)
        for (index_t y = 0; y < s.h; ++y)
          std::memcpy(p + (c * (s.h + 2) + y + 1) * pw + 1, src + (c * s.h + y) * s.w, sizeof(T) * s.w);
      warp(p, s, m, op.nearest, fill, ws.taps, static_cast<const AfterWarp<T>*>(nullptr), ws.rows.data(), dst);
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
    for (const AugmentOp& o : ops_) {
      o.check(op, shapes_.back());
      shapes_.push_back(o.output_shape(shapes_.back()));
      fills_.push_back(static_cast<T>(o.fill));
    }
    for (const ImageShape& s : shapes_) {
      // the sampling offsets and pixel maps are 32-bit
      FASTNN_CHECK(s.h < (index_t(1) << 31) && s.w < (index_t(1) << 31) && (s.h + 2) * (s.w + 2) < (index_t(1) << 31), op,
                   "images of " << s.h << " x " << s.w << " pixels are too large (at most 2^31 per channel)");
      max_size_ = std::max(max_size_, s.size());
      max_h_ = std::max(max_h_, s.h), max_w_ = std::max(max_w_, s.w);
    }
    for (index_t k = 0; k < n_ops(); ++k)
      if (ops_[k].kind == AugmentKind::affine)
        max_bordered_ = std::max(max_bordered_, augment_detail::bordered_size(shapes_[k]));
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

  // Scratch for apply() on one thread.
  AugmentWorkspace<T> workspace() const {
    AugmentWorkspace<T> ws;
    ws.images.resize(2 * max_size_);
    ws.padded.resize(max_bordered_ + augment_detail::kBorderedSlack);
    ws.rows.resize(input_shape().c * max_w_);  // no op changes the channels
    ws.taps.resize(max_w_);
    ws.ymap.resize(max_h_), ws.xmap.resize(max_w_), ws.rowmap.resize(max_h_ + 2);
    ws.ysteps.resize(ops_.size()), ws.xsteps.resize(ops_.size());
    ws.before.reserve(ops_.size()), ws.after.reserve(ops_.size());
    return ws;
  }

  // false: one pass per op, as the reference specifies them (for tests and benchmarks).
  void set_compose(bool compose) { compose_ = compose; }

  // One image: src (input shape) -> dst (output shape). Ops not drawn (a flip with probability
  // p) are skipped; they never change the shape. Runs of geometric ops are composed (the comment
  // at the top of this file): one pass per affine warp, or one for a run of whole-pixel ops alone.
  void apply(const double* params, const T* src, T* dst, AugmentWorkspace<T>& ws) const {
    index_t last = -1;
    for (index_t k = 0; k < n_ops(); ++k)
      if (active(params, k)) last = k;
    if (last < 0) {
      std::memcpy(dst, src, sizeof(T) * input_shape().size());
      return;
    }
    const T* in = src;
    int buf = 0;
    // The pass ending with op `end` writes dst if it is the last, else the other scratch image.
    auto output = [&](index_t end) { return end == last ? dst : ws.images.data() + (buf ^= 1) * max_size_; };
    for (index_t k = 0; k <= last;) {
      if (!active(params, k)) {
        ++k;
        continue;
      }
      const AugmentKind kind = ops_[k].kind;
      if (!compose_ || (kind != AugmentKind::affine && !augment_detail::moves_whole_pixels(kind))) {
        T* out = output(k);
        apply_augment_op(ops_[k], params + k * kAugmentParams, in, out, shapes_[k], ws);
        in = out, ++k;
        continue;
      }
      const index_t warp_at = collect_chain(params, k, last, ws.before);
      if (warp_at > last || ops_[warp_at].kind != AugmentKind::affine) {  // whole-pixel ops only
        const index_t end = ws.before.back();
        T* out = output(end);
        chain(params, ws.before, in, out, ws);
        in = out, k = end + 1;
        continue;
      }
      // The whole-pixel ops after the warp join it, unless another warp follows them (they are that one's chain).
      const index_t next = collect_chain(params, warp_at + 1, last, ws.after);
      if (next <= last && ops_[next].kind == AugmentKind::affine) ws.after.clear();
      const index_t end = ws.after.empty() ? warp_at : ws.after.back();
      T* out = output(end);
      warp_pass(params, warp_at, in, out, ws);
      in = out, k = end + 1;
    }
  }

  // count images: image i is read from src(i) and written to dst + i * output size; its draw is
  // image first_index + i of (seed, step). params: given parameters (count x params_per_image), or
  // nullptr to draw them. Parallel over images; the result does not depend on the thread count.
  template <class Src>
  void run(Src&& src, index_t count, T* dst, std::uint64_t seed, std::uint64_t step, const double* params = nullptr,
           index_t first_index = 0) const {
    const index_t out_size = output_shape().size();
    const index_t cost = max_size_ * (4 + 8 * n_ops());
    const index_t in_bytes = input_shape().size() * static_cast<index_t>(sizeof(T));
    parallel_for(count, cost, [&](index_t b, index_t e) {
      AugmentWorkspace<T> ws = workspace();
      std::vector<double> drawn(params ? 0 : params_per_image());
      for (index_t i = b; i < e; ++i) {
        // fit's images are rows of a large array in random order: fetch all of the next one
        // while this one is augmented
        if (i + 1 < e) {
          const char* next = reinterpret_cast<const char*>(src(i + 1));
          for (index_t byte = 0; byte < in_bytes; byte += 64) __builtin_prefetch(next + byte);
        }
        const double* prm = params ? params + i * params_per_image() : drawn.data();
        if (!params) draw(seed, step, first_index + i, drawn.data());
        apply(prm, src(i), dst + i * out_size, ws);
      }
    });
  }

 private:
  bool active(const double* params, index_t k) const {
    return augment_op_active(ops_[k], params + k * kAugmentParams);
  }

  // The active whole-pixel ops from op k on into ks (op indices); returns the index of the first
  // active op after them that is not one (last + 1: none).
  index_t collect_chain(const double* params, index_t k, index_t last, std::vector<index_t>& ks) const {
    ks.clear();
    for (; k <= last; ++k) {
      if (!active(params, k)) continue;
      if (!augment_detail::moves_whole_pixels(ops_[k].kind)) break;
      ks.push_back(k);
    }
    return k;
  }

  // ws.ymap, ws.xmap of the chain ks (empty: the identity) for output shape `out`; its columns.
  augment_detail::ColumnMap chain_maps(const double* params, const std::vector<index_t>& ks, const ImageShape& out,
                                       AugmentWorkspace<T>& ws) const {
    using namespace augment_detail;
    for (std::size_t t = 0; t < ks.size(); ++t) {
      const double* prm = params + ks[t] * kAugmentParams;
      ws.ysteps[t] = axis_step(ops_[ks[t]], prm, shapes_[ks[t]], true);
      ws.xsteps[t] = axis_step(ops_[ks[t]], prm, shapes_[ks[t]], false);
    }
    const index_t m = static_cast<index_t>(ks.size());
    axis_map(ws.ysteps.data(), ks.data(), m, out.h, ws.ymap.data());
    axis_map(ws.xsteps.data(), ks.data(), m, out.w, ws.xmap.data());
    return column_map(ws.xmap.data(), out.w);
  }

  // A chain of whole-pixel ops alone, in one copy.
  void chain(const double* params, const std::vector<index_t>& ks, const T* in, T* out, AugmentWorkspace<T>& ws) const {
    const ImageShape &s = shapes_[ks.front()], &o = shapes_[ks.back() + 1];
    const augment_detail::ColumnMap cols = chain_maps(params, ks, o, ws);
    augment_detail::copy_through_maps(in, s, ws.ymap.data(), o.h, cols, fills_.data(), out, o.w, o.h * o.w);
  }

  // The warp op a with the chains ws.before (copied into its bordered input) and ws.after
  // (applied to its rows as they are sampled).
  void warp_pass(const double* params, index_t a, const T* in, T* out, AugmentWorkspace<T>& ws) const {
    using namespace augment_detail;
    const ImageShape& s = shapes_[a];
    const ImageShape& source = ws.before.empty() ? s : shapes_[ws.before.front()];
    const index_t pw = s.w + 2;
    T* p = ws.padded.data();
    const ColumnMap before = chain_maps(params, ws.before, s, ws);
    DirectRows direct;
    const bool read_direct = reads_rows_directly(a, source, ws.before);
    if (read_direct) {  // the bordered input as maps into `in`
      direct.src = reinterpret_cast<const float*>(in);
      direct.plane = source.h * source.w, direct.row_stride = source.w, direct.width = source.w;
      std::fill(std::begin(direct.colmap), std::end(direct.colmap), 31);
      for (index_t j = 0; j < s.w; ++j) direct.colmap[j + 1] = ws.xmap[j] >= 0 ? ws.xmap[j] : 31;
      ws.rowmap[0] = ws.rowmap[s.h + 1] = -1;
      for (index_t r = 0; r < s.h; ++r) ws.rowmap[r + 1] = std::max(ws.ymap[r], std::int32_t(-1));
      direct.rowmap = ws.rowmap.data();
    } else {
      fill_border(p, s, fills_[a]);
      copy_through_maps(in, source, ws.ymap.data(), s.h, before, fills_.data(), p + pw + 1, pw, (s.h + 2) * pw);
    }
    double m[6];
    inverse_affine(params + a * kAugmentParams, s.h, s.w, m);
    AfterWarp<T> after{ws.ymap.data(), 0, {}, fills_.data()};
    if (!ws.after.empty()) {
      const ImageShape& o = shapes_[ws.after.back() + 1];
      after.oh = o.h, after.cols = chain_maps(params, ws.after, o, ws);
    }
    warp(p, s, m, ops_[a].nearest, fills_[a], ws.taps, ws.after.empty() ? nullptr : &after, ws.rows.data(), out,
         read_direct ? &direct : nullptr);
  }

  // Whether warp a samples its input straight from the image before its chain `before`: only the
  // AVX-512 float sampler that picks from rows does (W <= 30, the source rows <= 31 values plus
  // a fill), and only when every fill the chain makes is the warp's own (one fill lane).
  bool reads_rows_directly(index_t a, const ImageShape& source, const std::vector<index_t>& before) const {
    if (!std::is_same_v<T, float> || !augment_detail::permutes_rows(shapes_[a], ops_[a].nearest) || source.w > 31)
      return false;
    for (index_t k : before) {
      const AugmentOp& o = ops_[k];
      const bool fills = (o.kind == AugmentKind::shift || o.kind == AugmentKind::crop) && o.border == AugmentBorder::constant;
      if (fills && !(fills_[k] == fills_[a])) return false;
    }
    return true;
  }

  std::vector<AugmentOp> ops_;
  std::vector<ImageShape> shapes_;  // shapes_[k]: the input of op k; back(): the output
  std::vector<T> fills_;            // fills_[k]: op k's fill value
  index_t max_size_ = 0, max_h_ = 0, max_w_ = 0, max_bordered_ = 0;
  bool compose_ = true;
};

}  // namespace fastnn
