// The loss of a linear model (softmax, logistic or linear regression) and its gradient in one
// pass over the data (and, with the stacked weights [W; V], its curvature products H v = G v):
//   z = x W^T + b,  L = sum of the blocks' losses of z,  g = dL/dz,  dW = g^T x,  db = sum_rows g.
// Each block of rows runs forward, loss and weight gradient while its rows are in L2, so x is read
// from memory once per evaluation instead of twice (a forward over all rows, then a backward):
// for L-BFGS on 60000 x 784 float32 images (188 MB) those reads are what an evaluation costs.
//
// Rows are split into a fixed number of stripes (a function of n only), each summed in row order
// into its own partial gradient; the partials are added in stripe order, so the result does not
// depend on the thread count.
#pragma once

#include <exception>
#include <vector>

#include "fastnn/kernels/linear.h"
#include "fastnn/kernels/linear_narrow.h"

namespace fastnn {
namespace linear_loss_detail {

using narrow_detail::kP;
using narrow_detail::kRegs;
using narrow_detail::Packet;

constexpr index_t kStripes = 16;
// Rows per block: 36 rows of 784 floats (110 KB) stay in L2 from forward to gradient (64: 1.1x
// slower), and 36 is a multiple of every narrow register tile (kRowUnit), so the forward of whole
// packets of outputs (product_rows) runs no 1-row tiles (64 left 64 mod 6 = 4 rows to them).
constexpr index_t kBlockRows = 3 * narrow_detail::kRowUnit;
constexpr index_t kMaxPartials = index_t(1) << 24;  // values of all stripes' partial gradients

inline index_t stripes_for(index_t n) { return std::max<index_t>(1, std::min(kStripes, n / kBlockRows)); }

// ---- forward vectorized over the inputs ---------------------------------------------------------
// linear_narrow.h's forward keeps a row's outputs in whole packets: 10 outputs take two packets
// of 8 floats (AVX2), 6 lanes idle, 1568 multiply-adds per row of 784 inputs. Here each (row,
// output) is a packet of partial sums over the inputs, added across lanes at the end: 980 per row,
// whatever the output count. Used when the outputs are not a multiple of the packet (uses_dot_forward).

// Outputs per group (accumulators R x O, R rows of x and one weight packet in registers).
constexpr int kDotOutputs = kRegs >= 32 ? 8 : 5;
// Rows per register tile for O outputs: ~10 independent sums hide the multiply-add latency.
template <int O> constexpr int dot_rows() {
  const int r = (kRegs - 2) / (O + 1);
  return r < 1 ? 1 : (r > 4 ? 4 : r);
}
// Packets of inputs per pass of a group over a block, so that its weights (O x chunk) stay in L1
// beside the rows being read: 784 float32 inputs of 5 outputs are one pass. (Chunks over all
// outputs took 2 passes per row of 784 x 10: the rows, read in 1.2 KB pieces 3 KB apart, then came
// from memory without the hardware prefetcher's help: half the forward's time waited on them.)
template <class T>
inline index_t dot_chunk_packets() {
  return std::max<index_t>(1, index_t(16 * 1024) / (kDotOutputs * kP<T> * index_t(sizeof(T))));
}

template <class T>
constexpr bool uses_dot_forward(index_t out) { return out % kP<T> != 0; }

// Keeps v in a register: gcc folds a weight packet's load into each of the R multiply-adds that
// use it (12 loads per 10 multiply-adds for 2 rows x 5 outputs, which bound the forward at ~75%
// of the FMA peak); loaded once, 7 (~90%).
template <class P>
inline void in_register(P& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// The rows of the next block, fetched into L2 while the current one is computed: the forward and
// the weight gradient take turns issuing a few lines, so that memory is read during all of a
// block's work (with none, the forward waited on the rows: an evaluation took ~1.3x as long at
// one thread; the hardware prefetcher alone does not keep up).
struct NextBlock {
  const char* p = nullptr;
  const char* end = nullptr;
  void lines(index_t k) {
    for (; k > 0 && p < end; --k, p += 64) __builtin_prefetch(p, 0, 2);
  }
  index_t left() const { return (end - p + 63) / 64; }
};

// The weights' whole input packets, per group of `O` outputs from o0: [packet p][output o][lane].
template <class T>
void pack_dot_weights(const T* w, index_t out, index_t in, std::vector<T, Eigen::aligned_allocator<T>>& wk) {
  constexpr index_t S = kP<T>;
  const index_t np = in / S;
  wk.resize(static_cast<size_t>(out * np * S));
  const index_t groups = (out + kDotOutputs - 1) / kDotOutputs;
  for (index_t g = 0, o0 = 0; g < groups; ++g) {
    const index_t o1 = out * (g + 1) / groups, O = o1 - o0;
    T* dst = wk.data() + o0 * np * S;
    for (index_t p = 0; p < np; ++p)
      for (index_t o = 0; o < O; ++o) std::copy(w + (o0 + o) * in + p * S, w + (o0 + o) * in + (p + 1) * S, dst + (p * O + o) * S);
    o0 = o1;
  }
}

// For O outputs from o0 and every row of the block, packets [p0, p1): acc[row][o0 + o] (+)= x_row . w_o
// lane-wise (first: from zero); last: z[row][o0 + o] = the lanes' sum. Rows past m in the last
// tile repeat row m - 1 and are not stored. A line of the next block is fetched per kFetchPackets.
constexpr index_t kFetchPackets = 4;  // (8: 1.05x slower, 16: 1.1x)
template <class T, int O>
void dot_pass(const T* const* rows, index_t m, NextBlock& next, const T* wk, index_t p0, index_t p1, bool first,
              bool last, T* acc_io, index_t out, index_t o0, T* z) {
  using P = Packet<T>;
  using namespace narrow_detail;
  constexpr int S = kP<T>, R = dot_rows<O>();
  for (index_t i0 = 0; i0 < m; i0 += R) {
    const T* x[R];
    index_t row[R];
    FASTNN_UNROLL for (int j = 0; j < R; ++j) {
      row[j] = std::min<index_t>(i0 + j, m - 1);
      x[j] = rows[row[j]];
    }
    P acc[R][O];
    FASTNN_UNROLL for (int j = 0; j < R; ++j)
      FASTNN_UNROLL for (int o = 0; o < O; ++o) acc[j][o] = first ? pset1<P>(T(0)) : pload<P>(acc_io + (row[j] * out + o0 + o) * S);
    for (index_t p = p0; p < p1; ++p) {
      if (p % kFetchPackets == 0) next.lines(1);
      P xv[R];
      FASTNN_UNROLL for (int j = 0; j < R; ++j) xv[j] = ploadu<P>(x[j] + p * S);
      const T* wp = wk + p * O * S;
      FASTNN_UNROLL for (int o = 0; o < O; ++o) {
        P wv = pload<P>(wp + o * S);
        in_register(wv);
        FASTNN_UNROLL for (int j = 0; j < R; ++j) acc[j][o] = pmadd(xv[j], wv, acc[j][o]);
      }
    }
    const int valid = static_cast<int>(std::min<index_t>(R, m - i0));
    FASTNN_UNROLL for (int j = 0; j < R; ++j) {
      if (j >= valid) break;
      FASTNN_UNROLL for (int o = 0; o < O; ++o) {
        if (last)
          z[row[j] * out + o0 + o] = Eigen::internal::predux(acc[j][o]);
        else
          pstore(acc_io + (row[j] * out + o0 + o) * S, acc[j][o]);
      }
    }
  }
}

template <class T, int O = 1>
void dot_pass_dispatch(index_t o_count, const T* const* rows, index_t m, NextBlock& next, const T* wk, index_t p0,
                       index_t p1, bool first, bool last, T* acc_io, index_t out, index_t o0, T* z) {
  if constexpr (O < kDotOutputs) {
    if (o_count != O)
      return dot_pass_dispatch<T, O + 1>(o_count, rows, m, next, wk, p0, p1, first, last, acc_io, out, o0, z);
  }
  dot_pass<T, O>(rows, m, next, wk, p0, p1, first, last, acc_io, out, o0, z);
}

// z (m, out) = rows x W^T: lane sums over the whole packets of inputs (pack_dot_weights' wk), then
// the inputs past the last whole packet in order. Every z element is summed in the same order
// whatever the block, stripe or thread it falls in.
template <class T>
void dot_forward(const T* const* rows, index_t m, NextBlock& next, const T* w, const T* wk, index_t out, index_t in,
                 std::vector<T, Eigen::aligned_allocator<T>>& acc, T* z) {
  constexpr index_t S = kP<T>;
  const index_t np = in / S, chunk = dot_chunk_packets<T>();
  const index_t groups = (out + kDotOutputs - 1) / kDotOutputs;
  if (np > chunk) acc.resize(static_cast<size_t>(m * out * S));  // the lane sums between passes
  if (np == 0) std::fill(z, z + m * out, T(0));
  for (index_t g = 0, o0 = 0; g < groups; ++g) {
    const index_t o1 = out * (g + 1) / groups;
    for (index_t p0 = 0; p0 < np; p0 += chunk) {
      const index_t p1 = std::min(np, p0 + chunk);
      dot_pass_dispatch<T>(o1 - o0, rows, m, next, wk + o0 * np * S, p0, p1, p0 == 0, p1 == np, acc.data(), out, o0, z);
    }
    o0 = o1;
  }
  if (np * S < in)
    for (index_t i = 0; i < m; ++i)
      for (index_t o = 0; o < out; ++o) {
        T s = z[i * out + o];
        for (index_t k = np * S; k < in; ++k) s += rows[i][k] * w[o * in + k];
        z[i * out + o] = s;
      }
}

// ---- weight gradient ------------------------------------------------------------------------
// linear_narrow.h's grad_tile (dw[o0 + i, k0 ...] += sum_r g[r, o0 + i] x_r[k0 ...], r ascending)
// over other tiles: its weight_grad_rows takes 4 outputs at a time with AVX2 (10 outputs: 4 + 4 +
// 1 + 1, the last two bound by the latency of 2 sums); groups of up to 5 outputs x KV(OB) packets
// keep ~10 sums in flight.
constexpr int kGradOutputs = kRegs >= 32 ? 8 : 5;
template <int OB> constexpr int grad_packets() {
  const int kv = (kRegs - 2) / (OB + 1);
  return kv < 1 ? 1 : (kv > 4 ? 4 : kv);
}

// OB outputs from o0, every input: chunks of KV(OB) packets, single packets, then scalars; `lines`
// of the next block are fetched meanwhile, spread over the chunks.
template <class T, int OB>
void grad_group(const T* const* rows, index_t m, const T* g, index_t gout, index_t o0, index_t in, T* dw,
                NextBlock& next, index_t lines) {
  constexpr int S = kP<T>, KV = grad_packets<OB>();
  const index_t chunks = in / (KV * S), per_chunk = chunks > 0 ? (lines + chunks - 1) / chunks : 0;
  index_t k = 0;
  for (; k + KV * S <= in; k += KV * S) {
    next.lines(per_chunk);
    narrow_detail::grad_tile<T, OB, KV>(rows, m, g, gout, o0, k, dw, in, true);
  }
  if constexpr (KV > 1)
    for (; k + S <= in; k += S) narrow_detail::grad_tile<T, OB, 1>(rows, m, g, gout, o0, k, dw, in, true);
  narrow_detail::grad_scalar_columns(rows, m, g, gout, o0, o0 + OB, k, in, dw, in, true);
}

template <class T, int OB = 1>
void grad_group_dispatch(index_t o_count, const T* const* rows, index_t m, const T* g, index_t gout, index_t o0,
                         index_t in, T* dw, NextBlock& next, index_t lines) {
  if constexpr (OB < kGradOutputs) {
    if (o_count != OB) return grad_group_dispatch<T, OB + 1>(o_count, rows, m, g, gout, o0, in, dw, next, lines);
  }
  grad_group<T, OB>(rows, m, g, gout, o0, in, dw, next, lines);
}

// dw (gout, in) += g^T [rows]: g (m, gout); balanced groups of at most kGradOutputs outputs.
template <class T>
void weight_grad_block(const T* const* rows, index_t m, const T* g, index_t gout, index_t in, T* dw, NextBlock& next) {
  const index_t groups = (gout + kGradOutputs - 1) / kGradOutputs;
  for (index_t gi = 0, o0 = 0; gi < groups; ++gi) {
    const index_t o1 = gout * (gi + 1) / groups;
    const index_t lines = (next.left() + groups - gi - 1) / (groups - gi);  // this group's share of the rest
    grad_group_dispatch<T>(o1 - o0, rows, m, g, gout, o0, in, dw, next, lines);
    o0 = o1;
  }
}

}  // namespace linear_loss_detail

// Whether linear_loss_forward_backward takes a model of `out` outputs and `in` inputs (the narrow
// kernels of linear_narrow.h, partial gradients of a bounded size).
template <class T>
constexpr bool linear_loss_fits(index_t out, index_t in) {
  return narrow_linear_fits<T>(out) && in >= 1 && out * (in + 1) <= linear_loss_detail::kMaxPartials / linear_loss_detail::kStripes;
}

// Returns the sum of loss_block's values; writes (=) dw (gout, in) and, unless null, db (gout).
// x (n, in), w (out, in) C-contiguous; b (out) or null. loss_block(z, row0, rows, g, stripe) ->
// double gets the outputs z (rows, out) of rows [row0, row0 + rows) and writes the gradient
// g (rows, gout) whose products with x are summed; it runs concurrently on distinct rows (stripe
// < kStripes tells whose they are). An exception it throws is rethrown here after every thread
// stopped. gout <= out: the objective has gout = out (g = dL/dz); a curvature product of a
// linear model takes w = [W; V] and g = H_loss (x V^T + v_b) (net/full_batch.h). Needs
// linear_loss_fits<T>(out, in).
template <class T, class LossBlock>
double linear_loss_forward_backward(const T* x, index_t n, index_t in, const T* w, const T* b, index_t out,
                                    index_t gout, T* dw, T* db, const LossBlock& loss_block) {
  using namespace narrow_detail;
  using namespace linear_loss_detail;
  FASTNN_CHECK(linear_loss_fits<T>(out, in) && gout >= 1 && gout <= out, "linear_loss",
               "needs at most " << 4 * kP<T> << " outputs, got " << out);
  const bool dot = uses_dot_forward<T>(out);
  std::vector<T, Eigen::aligned_allocator<T>> wk;  // the weights as the forward reads them
  const T* wt = nullptr;
  if (dot)
    pack_dot_weights(w, out, in, wk);
  else
    wt = pack_transposed<T>(CMatMap<T>(w, out, in, Eigen::OuterStride<>(in)));
  const index_t stripes = stripes_for(n), size = gout * in + gout;
  std::vector<T> partial(static_cast<size_t>(stripes * size), T(0));
  std::vector<double> losses(static_cast<size_t>(stripes), 0.0);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(stripes));
  auto run_stripe = [&](index_t s) {
    try {
      const index_t r0 = n * s / stripes, r1 = n * (s + 1) / stripes;
      T* pw = partial.data() + s * size;
      T* pb = pw + gout * in;
      std::vector<T> zg(static_cast<size_t>(kBlockRows * (out + gout)));
      T *z = zg.data(), *g = z + kBlockRows * out;
      std::vector<T, Eigen::aligned_allocator<T>> acc;
      const T* rows[kBlockRows];
      double loss = 0;
      NextBlock next;  // the stripe's first block: fetched by the first forward, as it goes
      for (index_t r = r0; r < r1; r += kBlockRows) {
        const index_t m = std::min(kBlockRows, r1 - r);
        for (index_t i = 0; i < m; ++i) rows[i] = x + (r + i) * in;
        next.p = reinterpret_cast<const char*>(x + (r + m) * in);
        next.end = reinterpret_cast<const char*>(x + std::min(r1, r + m + kBlockRows) * in);
        auto bias = [&](T* row) { linear_detail::bias_activation(row, b, out, Activation::none, T(0)); };
        if (dot) {
          dot_forward(rows, m, next, w, wk.data(), out, in, acc, z);
          for (index_t i = 0; i < m; ++i) bias(z + i * out);
        } else {
          product_rows(PointerRows<T>{rows}, wt, in, z, out, out, 0, m, m, false, bias);
        }
        loss += loss_block(static_cast<const T*>(z), r, m, g, s);
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < gout; ++j) pb[j] += g[i * gout + j];
        weight_grad_block(rows, m, g, gout, in, pw, next);
      }
      losses[s] = loss;
    } catch (...) {
      errors[s] = std::current_exception();
    }
  };
  const int nt = static_cast<int>(std::min<index_t>(gemm_detail::gemm_threads(n * in * out), stripes));
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const index_t t = omp_get_thread_num(), nth = omp_get_num_threads();
      for (index_t s = stripes * t / nth; s < stripes * (t + 1) / nth; ++s) run_stripe(s);
    }
  } else
#endif
  {
    for (index_t s = 0; s < stripes; ++s) run_stripe(s);
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  double total = 0;
  for (index_t s = 0; s < stripes; ++s) total += losses[s];
  for (index_t j = 0; j < gout * in; ++j) {
    T sum = 0;
    for (index_t s = 0; s < stripes; ++s) sum += partial[s * size + j];
    dw[j] = sum;
  }
  if (db)
    for (index_t j = 0; j < gout; ++j) {
      T sum = 0;
      for (index_t s = 0; s < stripes; ++s) sum += partial[s * size + gout * in + j];
      db[j] = sum;
    }
  return total;
}

}  // namespace fastnn
