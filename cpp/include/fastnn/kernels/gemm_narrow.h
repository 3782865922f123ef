// Products with few columns (a panel of at most 4 SIMD packets per call: 32 floats with AVX2, 64
// with AVX-512; gemm() runs two panels with AVX2, narrow_gemm_fits), such as a tall-skinny im2col
// product (25088 x 288 x 32) or a small Linear layer (784 -> 32). A
// BLAS's register tile (e.g. 16 x 6 floats) is mostly empty at such widths and it packs A, the
// large operand, for every product; here a whole row of C stays in registers while the row of A
// is read where it lies, against B packed once (K x NV packets, zero-padded, aligned):
//
//   c[r, :] (+)= a_r B      for r in [r0, r1), a_r: row r of A (a pointer per row, or a stride)
//
// Every element is summed by the same instructions in the same order (k ascending, then added to
// c when accumulating) whatever the thread count, the split of the rows and the alignment:
// results are bit-identical across all of them. Used by gemm() (gemm.h) and the narrow Linear
// kernels (linear_narrow.h).
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "fastnn/common.h"

// Fully unrolled loops over register tiles, so that the accumulator arrays live in registers
// (without it gcc kept them on the stack: 3x slower).
#if defined(__GNUC__) && !defined(__clang__)
#define FASTNN_UNROLL _Pragma("GCC unroll 16")
#elif defined(__clang__)
#define FASTNN_UNROLL _Pragma("unroll")
#else
#define FASTNN_UNROLL
#endif

namespace fastnn {
namespace narrow_detail {

using Eigen::internal::padd;
using Eigen::internal::pload;
using Eigen::internal::ploadu;
using Eigen::internal::pmadd;
using Eigen::internal::pset1;
using Eigen::internal::pstore;
using Eigen::internal::pstoreu;

template <class T> using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T> constexpr int kP = Eigen::internal::unpacket_traits<Packet<T>>::size;
constexpr int kRegs = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;  // 32 with AVX-512, 16 with AVX2/SSE
constexpr int kMaxPackets = 4;  // columns of B: at most this many packets

// Rows per register tile for NV packets of C: the accumulators (R x NV), the NV packets of B and
// one broadcast must fit in the vector registers, and the R row pointers in the general ones;
// 6 rows of 2 packets keep 12 multiply-adds in flight, enough to hide latency.
template <int NV> constexpr int tile_rows() {
  const int r = (kRegs - NV - 2) / NV;
  return r > 6 ? 6 : r;
}
// Rows per work item (threads take whole items): a multiple of every tile_rows<NV>().
constexpr index_t kRowUnit = 12;
static_assert(kRowUnit % tile_rows<1>() == 0 && kRowUnit % tile_rows<2>() == 0 && kRowUnit % tile_rows<3>() == 0 &&
              kRowUnit % tile_rows<4>() == 0);

// Packets of B for n columns.
template <class T> constexpr index_t packets(index_t n) { return (n + kP<T> - 1) / kP<T>; }

// Rows given as pointers (a shuffled batch: the samples of the epoch, in order) or by a stride.
template <class T> struct PointerRows {
  const T* const* rows;
  const T* operator()(index_t r) const { return rows[r]; }
};
template <class T> struct StridedRows {
  const T* a;
  index_t lda;
  const T* operator()(index_t r) const { return a + r * lda; }
};

// c rows [r, r + R) (row stride ldc, `width` <= NV * S values each) (+)= rows x B, where bp points
// at B's first packed column and ldb is its packed row length. The next n_next rows are fetched
// into cache meanwhile, a line per row every S values of k: the samples of a shuffled batch lie at
// random places of a large data set, and waiting for memory doubled the time of an MLP's first layer.
template <class T, int NV, int R, class Rows>
inline void tile(const Rows& row, index_t r, index_t n_next, const T* bp, index_t ldb, index_t k, T* c, index_t ldc,
                 index_t width, bool accumulate) {
  using P = Packet<T>;
  constexpr int S = kP<T>;
  P acc[R][NV];
  FASTNN_UNROLL for (int i = 0; i < R; ++i)
    FASTNN_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = pset1<P>(T(0));
  const T* x[R];
  FASTNN_UNROLL for (int i = 0; i < R; ++i) x[i] = row(r + i);
  const T* next[R];
  for (index_t i = 0; i < n_next; ++i) next[i] = row(r + R + i);
  for (index_t j = 0; j < k; ++j) {
    if (j % S == 0)
      for (index_t i = 0; i < n_next; ++i) __builtin_prefetch(next[i] + j);
    P b[NV];
    FASTNN_UNROLL for (int v = 0; v < NV; ++v) b[v] = pload<P>(bp + j * ldb + v * S);
    FASTNN_UNROLL for (int i = 0; i < R; ++i) {
      const P xv = pset1<P>(x[i][j]);
      FASTNN_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = pmadd(xv, b[v], acc[i][v]);
    }
  }
  FASTNN_UNROLL for (int i = 0; i < R; ++i) {
    T* ci = c + (r + i) * ldc;
    FASTNN_UNROLL for (int v = 0; v < NV; ++v) {
      T* d = ci + v * S;
      if ((v + 1) * S <= width) {
        pstoreu(d, accumulate ? padd(ploadu<P>(d), acc[i][v]) : acc[i][v]);
      } else if (v * S < width) {  // the last, partial packet of the row
        alignas(64) T buf[S];
        pstore(buf, acc[i][v]);
        for (index_t e = 0; e < width - v * S; ++e) d[e] = accumulate ? d[e] + buf[e] : buf[e];
      }
    }
  }
}

template <class T, int NV, class Rows>
void rows_nv(const Rows& row, const T* bp, index_t ldb, index_t k, T* c, index_t ldc, index_t width, index_t r0,
             index_t r1, index_t r_end, bool accumulate) {
  constexpr int R = tile_rows<NV>();
  auto ahead = [&](index_t from, index_t count) { return std::max<index_t>(0, std::min(count, r_end - from)); };
  index_t r = r0;
  for (; r + R <= r1; r += R) tile<T, NV, R>(row, r, ahead(r + R, R), bp, ldb, k, c, ldc, width, accumulate);
  for (; r < r1; ++r) tile<T, NV, 1>(row, r, ahead(r + 1, 1), bp, ldb, k, c, ldc, width, accumulate);
}

struct NoPost {
  template <class T> void operator()(T*) const {}
};

// c rows [r0, r1) (+)= A rows x B on the calling thread, then post(c row) on each (callers keep
// r1 - r0 to a few rows, so that they are still in L1); bp: one panel of pack_b's B, `width` <=
// kPanelColumns<T> columns, k rows. Rows up to r_end (>= r1) are fetched ahead.
template <class T, class Rows, class Post>
void product_rows(const Rows& row, const T* bp, index_t k, T* c, index_t ldc, index_t width, index_t r0, index_t r1,
                  index_t r_end, bool accumulate, const Post& post) {
  constexpr index_t S = kP<T>;
  const index_t ldb = packets<T>(width) * S;
  switch (packets<T>(width)) {
    case 1: rows_nv<T, 1>(row, bp, ldb, k, c, ldc, width, r0, r1, r_end, accumulate); break;
    case 2: rows_nv<T, 2>(row, bp, ldb, k, c, ldc, width, r0, r1, r_end, accumulate); break;
    case 3: rows_nv<T, 3>(row, bp, ldb, k, c, ldc, width, r0, r1, r_end, accumulate); break;
    default:
      if constexpr (tile_rows<4>() >= 4) {
        rows_nv<T, 4>(row, bp, ldb, k, c, ldc, width, r0, r1, r_end, accumulate);
      } else {  // 16 registers: 2 rows of 4 packets keep 8 multiply-adds in flight, 2 passes of 6 rows x 2
                // packets 12 (Zen 2, 6272x288x32, 1 thread, loaded: both ~65-75 GFLOP/s, no clear winner)
        rows_nv<T, 2>(row, bp, ldb, k, c, ldc, 2 * S, r0, r1, r_end, accumulate);
        rows_nv<T, 2>(row, bp + 2 * S, ldb, k, c + 2 * S, ldc, width - 2 * S, r0, r1, r_end, accumulate);
      }
  }
  if constexpr (!std::is_same_v<Post, NoPost>)
    for (index_t r = r0; r < r1; ++r) post(c + r * ldc);
}

// product_rows for rows by a stride and no post (gemm()'s case), compiled once per module in
// cpp/instantiate/gemm_narrow.cpp rather than in every file that calls gemm().
template <class T>
void strided_rows(const T* a, index_t lda, const T* bp, index_t k, T* c, index_t ldc, index_t width, index_t r0,
                  index_t r1, index_t r_end, bool accumulate) {
  product_rows(StridedRows<T>{a, lda}, bp, k, c, ldc, width, r0, r1, r_end, accumulate, NoPost{});
}
extern template void strided_rows<float>(const float*, index_t, const float*, index_t, float*, index_t, index_t,
                                         index_t, index_t, index_t, bool);
extern template void strided_rows<double>(const double*, index_t, const double*, index_t, double*, index_t, index_t,
                                          index_t, index_t, index_t, bool);

// The calling thread's buffer for a packed B (one per thread and type: a product packs its B,
// runs, and is done with it before the thread packs another).
template <class T>
std::vector<T, Eigen::aligned_allocator<T>>& packed_buffer() {
  thread_local std::vector<T, Eigen::aligned_allocator<T>> buf;
  return buf;
}

// Columns of one panel of a packed B: as many as one call of the register tiles takes.
template <class T> constexpr index_t kPanelColumns = kMaxPackets * kP<T>;

// B (k x n, any view) into `buf`: panels of kPanelColumns<T> columns (the last one narrower), each
// k rows of its packets, zero-padded past n, aligned; the panel of column p0 starts at p0 * k. With
// n <= kPanelColumns<T> (the Linear kernels), that is k rows of packets<T>(n) packets.
template <class T, class BM>
const T* pack_b(const BM& b, std::vector<T, Eigen::aligned_allocator<T>>& buf) {
  constexpr index_t PW = kPanelColumns<T>;
  const index_t k = b.rows(), n = b.cols(), width = packets<T>(n) * kP<T>;
  auto panel_width = [&](index_t p0) { return std::min(PW, width - p0); };
  buf.resize(static_cast<size_t>(k * width));
  T* dst = buf.data();
  index_t k_done = 0;
  if constexpr ((BM::Flags & Eigen::DirectAccessBit) && !(BM::Flags & Eigen::RowMajorBit) &&
                BM::InnerStrideAtCompileTime == 1) {
    // B = W^T of a row-major W (n x k), a Linear's weight: S x S blocks transposed in registers
    // (a scalar transpose was 5% of a small MLP's epoch)
    using P = Packet<T>;
    constexpr index_t S = kP<T>;
    k_done = k / S * S;
    for (index_t o0 = 0; o0 < width; o0 += S) {
      const index_t p0 = o0 / PW * PW, pw = panel_width(p0);
      T* panel = dst + p0 * k + (o0 - p0);
      for (index_t k0 = 0; k0 < k_done; k0 += S) {
        Eigen::internal::PacketBlock<P, S> blk;
        for (index_t j = 0; j < S; ++j)
          blk.packet[j] = o0 + j < n ? ploadu<P>(b.data() + (o0 + j) * b.outerStride() + k0) : pset1<P>(T(0));
        Eigen::internal::ptranspose(blk);
        for (index_t i = 0; i < S; ++i) pstore(panel + (k0 + i) * pw, blk.packet[i]);
      }
    }
  }
  // The rest (or any layout) element by element, k outer: the stores run contiguously and the
  // n columns being read stay in L1 (n outer missed L1 on every store: 4x slower).
  for (index_t j = k_done; j < k; ++j)
    for (index_t p0 = 0; p0 < width; p0 += PW) {
      const index_t pw = panel_width(p0), valid = std::min(pw, n - p0);
      T* d = dst + p0 * k + j * pw;
      for (index_t o = 0; o < valid; ++o) d[o] = b(j, p0 + o);
      for (index_t o = valid; o < pw; ++o) d[o] = T(0);
    }
  return dst;
}

}  // namespace narrow_detail

// When gemm() takes the narrow kernel for an m x k by k x n product (A row-major with unit inner
// stride besides). The bounds are where it was measured to beat the BLAS tiles (issue 8): from 8
// columns (a single column lost to the BLAS's vector kernels), at depth >= 32 (at K = 9 the row
// of A is too short to pay for the broadcasts: 0.88x), from 16 rows (a register tile of every
// width), and with B packed in at most a core's L2 (512 KiB on Zen 2-5: at K = 4000, N = 64
// B fell out of it and the kernel lost).
// Widths: up to one panel (kMaxPackets packets, one call of the register tiles) everywhere; with
// 256-bit packets (AVX2) up to 2 panels, measured on Zen 1 against OpenBLAS 0.3.34's Haswell
// kernel at 1 thread (bench/README.md, session 11): float64 N 17-32 1.2-1.33x; float32 N 48-64
// 1.2-2.6x, but N 33-41 lost at K <= 400 (0.91-0.96x: OpenBLAS's 16-column tiles fit them, and
// the kernel pays for its padded fifth or sixth packet) and won at K >= 512 (1.04-1.5x), so
// float32 takes N < 6 packets past one panel only from K = 512 (N 44-47: 1.03-1.16x at K = 288,
// left to OpenBLAS by this rule). Not measured with SSE2 or AVX-512 packets, which keep one panel.
struct NarrowGemmLimits {
  index_t min_n, max_n, min_k, min_m, max_packed_bytes;
  index_t deep_n_from, deep_n_to, deep_min_k;  // widths in [from, to] need k >= deep_min_k
};

constexpr index_t kNarrowGemmMaxPackets =
    sizeof(narrow_detail::Packet<float>) == 32 ? 2 * narrow_detail::kMaxPackets : narrow_detail::kMaxPackets;

template <class T>
constexpr NarrowGemmLimits narrow_gemm_limits() {
  constexpr index_t S = narrow_detail::kP<T>, panel = narrow_detail::kPanelColumns<T>, max_n = kNarrowGemmMaxPackets * S;
  constexpr bool deep_rule = std::is_same_v<T, float> && max_n > panel;
  return {8, max_n, 32, 16, 512 * 1024, deep_rule ? panel + 1 : 0, deep_rule ? 6 * S - 1 : -1, 512};
}

// Bytes of B packed for the narrow kernel.
template <class T>
constexpr index_t narrow_gemm_packed_bytes(index_t k, index_t n) {
  return k * narrow_detail::packets<T>(n) * narrow_detail::kP<T> * index_t(sizeof(T));
}

template <class T>
constexpr bool narrow_gemm_fits(index_t m, index_t k, index_t n) {
  constexpr NarrowGemmLimits l = narrow_gemm_limits<T>();
  return n >= l.min_n && n <= l.max_n && k >= l.min_k && m >= l.min_m &&
         (n < l.deep_n_from || n > l.deep_n_to || k >= l.deep_min_k) &&
         narrow_gemm_packed_bytes<T>(k, n) <= l.max_packed_bytes;
}

}  // namespace fastnn
