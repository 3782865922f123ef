// Design (a) of issue 8, prototype: a BLIS-style GEMM, row-major C = op(A) op(B).
//
// Built WITHOUT -march: every ISA-specific function carries __attribute__((target(...))) and the
// kernel set is picked at run time with __builtin_cpu_supports, so one binary runs on any x86-64.
//
// Loop nest (per call; C is row-major, so the vector direction of the micro-tile is along N):
//   for jc in N step NC            B block  KC x NC, packed once, shared by all threads (each core
//                                  keeps it in its L2); no barrier: a panel's first user packs it
//     for pc in K step KC          A strip  MR x KC packed per strip (in L1), or read in place
//       for each MR-row strip      (threads split these: M split)
//         for each NR-col panel    (or threads split these: N split, when M is small)
//           micro-kernel MR x NR x KC, register-blocked
// Each C element is summed in the same order (k within a KC block, then block after block) whatever
// the thread count or the split, so results are bit-identical for any number of threads.
#include "blis_gemm.h"

#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace proto {
namespace {

constexpr int kMaxMR = 16;

// ---------------------------------------------------------------------------------------------
// Cache sizes, read at run time: sysfs first (per-core L1/L2, shared L3 as the kernel reports
// them), sysconf second (glibc's cpuid decoding; on this VM it reports L3 as 384 MiB), then a guess.
long parse_size(const std::string& s) {
  long v = std::atol(s.c_str());
  if (s.find('K') != std::string::npos) v *= 1024;
  if (s.find('M') != std::string::npos) v *= 1024 * 1024;
  return v;
}

long cache_bytes(int level) {
  for (int i = 0; i < 16; ++i) {
    std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream fl(dir + "level"), ft(dir + "type"), fs(dir + "size");
    if (!fl || !ft || !fs) break;
    int lvl = 0;
    std::string type, size;
    fl >> lvl;
    ft >> type;
    fs >> size;
    if (lvl == level && type != "Instruction") {
      long v = parse_size(size);
      if (v > 0) return v;
    }
  }
  long v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE
                   : level == 2 ? _SC_LEVEL2_CACHE_SIZE
                                : _SC_LEVEL3_CACHE_SIZE);
  if (v > 0) return v;
  return level == 1 ? 32 << 10 : level == 2 ? 256 << 10 : 8 << 20;
}

// ---------------------------------------------------------------------------------------------
// Vector traits, one per ISA and type. Each function carries its ISA's target so it inlines into
// kernels of the same target only.
#define TGT_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#define TGT_AVX2 __attribute__((target("avx2,fma")))
#define TGT_BASE
#define AINL __attribute__((always_inline)) inline

struct Avx512f {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  TGT_AVX512 AINL static V zero() { return _mm512_setzero_ps(); }
  TGT_AVX512 AINL static V load(const T* p) { return _mm512_load_ps(p); }
  TGT_AVX512 AINL static V loadu(const T* p) { return _mm512_loadu_ps(p); }
  TGT_AVX512 AINL static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  TGT_AVX512 AINL static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  TGT_AVX512 AINL static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  TGT_AVX512 AINL static V add(V a, V b) { return _mm512_add_ps(a, b); }
};
struct Avx512d {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  TGT_AVX512 AINL static V zero() { return _mm512_setzero_pd(); }
  TGT_AVX512 AINL static V load(const T* p) { return _mm512_load_pd(p); }
  TGT_AVX512 AINL static V loadu(const T* p) { return _mm512_loadu_pd(p); }
  TGT_AVX512 AINL static void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
  TGT_AVX512 AINL static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  TGT_AVX512 AINL static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  TGT_AVX512 AINL static V add(V a, V b) { return _mm512_add_pd(a, b); }
};
struct Avx2f {
  using T = float;
  using V = __m256;
  static constexpr int L = 8;
  TGT_AVX2 AINL static V zero() { return _mm256_setzero_ps(); }
  TGT_AVX2 AINL static V load(const T* p) { return _mm256_load_ps(p); }
  TGT_AVX2 AINL static V loadu(const T* p) { return _mm256_loadu_ps(p); }
  TGT_AVX2 AINL static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
  TGT_AVX2 AINL static V bcast(const T* p) { return _mm256_broadcast_ss(p); }
  TGT_AVX2 AINL static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  TGT_AVX2 AINL static V add(V a, V b) { return _mm256_add_ps(a, b); }
};
struct Avx2d {
  using T = double;
  using V = __m256d;
  static constexpr int L = 4;
  TGT_AVX2 AINL static V zero() { return _mm256_setzero_pd(); }
  TGT_AVX2 AINL static V load(const T* p) { return _mm256_load_pd(p); }
  TGT_AVX2 AINL static V loadu(const T* p) { return _mm256_loadu_pd(p); }
  TGT_AVX2 AINL static void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
  TGT_AVX2 AINL static V bcast(const T* p) { return _mm256_broadcast_sd(p); }
  TGT_AVX2 AINL static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  TGT_AVX2 AINL static V add(V a, V b) { return _mm256_add_pd(a, b); }
};
// The floor: plain C++ on scalars, which gcc vectorizes with SSE2 (no FMA on that baseline).
template <class TT>
struct Scalar {
  using T = TT;
  using V = TT;
  static constexpr int L = 1;
  AINL static V zero() { return 0; }
  AINL static V load(const T* p) { return *p; }
  AINL static V loadu(const T* p) { return *p; }
  AINL static void storeu(T* p, V v) { *p = v; }
  AINL static V bcast(const T* p) { return *p; }
  AINL static V fma(V a, V b, V c) { return a * b + c; }
  AINL static V add(V a, V b) { return a + b; }
};
using ScalarF = Scalar<float>;
using ScalarD = Scalar<double>;

template <class T>
struct KernelSet {
  // kc steps of an R x NR tile: c (row stride ldc) = (acc ? c : 0) + a b.
  // b: packed panel, NR values per k. a: packed strip (MR values per k) for packed[R], or the
  // rows of A in place (a[i*lda + k]) for rows[R].
  using Fn = void (*)(long kc, const T* a, long lda, const T* b, T* c, long ldc, int acc);
  Isa isa;
  const char* name;
  int mr, nr;
  Fn packed[kMaxMR + 1];
  Fn rows[kMaxMR + 1];
};

// The micro-kernel, written once and stamped out per ISA (a template cannot take its target
// attribute from a parameter). R rows x NV vectors of accumulators stay in registers: the loops
// over i and v are fully unrolled, R and NV being compile-time constants.
#define PROTO_KERNEL(NAME, TGT, VT, MR, NV)                                                     \
  template <int R, bool ROWS>                                                                   \
  TGT void NAME(long kc, const VT::T* __restrict a, long lda, const VT::T* __restrict b,        \
                VT::T* __restrict c, long ldc, int acc) {                                       \
    using V = VT::V;                                                                            \
    constexpr int L = VT::L;                                                                    \
    V r[R][NV];                                                                                 \
    _Pragma("GCC unroll 16") for (int i = 0; i < R; ++i) {                                      \
      __builtin_prefetch(c + i * ldc, 1);                                                       \
      __builtin_prefetch(c + i * ldc + NV * L - 1, 1);                                          \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) r[i][v] = VT::zero();                \
    }                                                                                           \
    PROTO_PRAGMA(GCC unroll PROTO_UNROLL_K) for (long k = 0; k < kc; ++k) {                                    \
      if (PROTO_PF_B > 0)                                                                       \
        for (int q = 0; q < int(NV * L * sizeof(VT::T) + 63) / 64; ++q)                           \
          __builtin_prefetch(b + PROTO_PF_B * NV * L + q * (64 / sizeof(VT::T)));                \
      V bv[NV];                                                                                 \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) bv[v] = VT::load(b + v * L);         \
      _Pragma("GCC unroll 16") for (int i = 0; i < R; ++i) {                                    \
        const V ai = VT::bcast(ROWS ? a + i * lda + k : a + k * MR + i);                        \
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) r[i][v] =                          \
            VT::fma(ai, bv[v], r[i][v]);                                                        \
      }                                                                                         \
      b += NV * L;                                                                              \
    }                                                                                           \
    _Pragma("GCC unroll 16") for (int i = 0; i < R; ++i) {                                      \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) {                                    \
        VT::T* p = c + i * ldc + v * L;                                                         \
        VT::storeu(p, acc ? VT::add(VT::loadu(p), r[i][v]) : r[i][v]);                          \
      }                                                                                         \
    }                                                                                           \
  }                                                                                             \
  template <std::size_t... I>                                                                   \
  KernelSet<VT::T> NAME##_set(Isa isa, const char* name, std::index_sequence<I...>) {           \
    KernelSet<VT::T> ks{isa, name, MR, NV * VT::L, {}, {}};                                     \
    ((ks.packed[I + 1] = &NAME<int(I) + 1, false>), ...);                                       \
    ((ks.rows[I + 1] = &NAME<int(I) + 1, true>), ...);                                          \
    return ks;                                                                                  \
  }

// Kernel knobs: the k loop's unroll, and how many k steps ahead B is prefetched (0: none; the
// packed B panel streams from L2, which the hardware prefetcher follows on its own).
#ifndef PROTO_UNROLL_K
#define PROTO_UNROLL_K 1
#endif
#define PROTO_PRAGMA_(x) _Pragma(#x)
#define PROTO_PRAGMA(x) PROTO_PRAGMA_(x)
#ifndef PROTO_PF_B
#define PROTO_PF_B 0
#endif

// AVX-512, float: 14 x 32. 28 zmm accumulators + 2 zmm of B = 30 of the 32 registers; per k,
// 28 FMAs (14 cycles on 2 FMA pipes, well above the 4-cycle FMA latency) against 2 vector loads and
// 14 broadcasts. NR = 32 covers N = 32/64/128/256/1024 with no edge; MR = 14 divides the im2col
// M's (6272 = 14*448, 25088 = 14*1792). 12 x 32 (BLIS's skx sgemm, transposed) and 6 x 64 were
// the alternatives: fewer accumulators per load, and 6 x 64 wastes half a tile at N = 32.
#ifndef PROTO_MR512
#define PROTO_MR512 14
#endif
PROTO_KERNEL(k_avx512f, TGT_AVX512, Avx512f, PROTO_MR512, 2)
PROTO_KERNEL(k_avx512d, TGT_AVX512, Avx512d, PROTO_MR512, 2)
// AVX2+FMA: 6 x 16 (float) / 6 x 8 (double): 12 ymm accumulators + 2 of B + 1 broadcast = 15 of 16.
PROTO_KERNEL(k_avx2f, TGT_AVX2, Avx2f, 6, 2)
PROTO_KERNEL(k_avx2d, TGT_AVX2, Avx2d, 6, 2)
// Floor: 4 x 8 scalars (gcc turns the 8 columns into SSE2 vectors).
PROTO_KERNEL(k_scalarf, TGT_BASE, ScalarF, 4, 8)
PROTO_KERNEL(k_scalard, TGT_BASE, ScalarD, 4, 8)

template <class T>
const KernelSet<T>& kernels(Isa isa);

template <>
const KernelSet<float>& kernels<float>(Isa isa) {
  static const KernelSet<float> s512 =
      k_avx512f_set(Isa::avx512, "avx512", std::make_index_sequence<PROTO_MR512>());
  static const KernelSet<float> s2 = k_avx2f_set(Isa::avx2, "avx2", std::make_index_sequence<6>());
  static const KernelSet<float> s0 =
      k_scalarf_set(Isa::scalar, "scalar", std::make_index_sequence<4>());
  return isa == Isa::avx512 ? s512 : isa == Isa::avx2 ? s2 : s0;
}
template <>
const KernelSet<double>& kernels<double>(Isa isa) {
  static const KernelSet<double> s512 =
      k_avx512d_set(Isa::avx512, "avx512", std::make_index_sequence<PROTO_MR512>());
  static const KernelSet<double> s2 = k_avx2d_set(Isa::avx2, "avx2", std::make_index_sequence<6>());
  static const KernelSet<double> s0 =
      k_scalard_set(Isa::scalar, "scalar", std::make_index_sequence<4>());
  return isa == Isa::avx512 ? s512 : isa == Isa::avx2 ? s2 : s0;
}

// ---------------------------------------------------------------------------------------------
// Blocking from the cache sizes (read once):
//   KC: the A strip (MR x KC) takes half of L1, the other half streams B and C lines;
//   NC: the packed B block (KC x NC) takes half of L2 (each core keeps its own copy of it);
//   MC: the largest M whose whole packed A block (M x KC) also fits in a quarter of L2; at or
//       below it the threads may split N and share one packed A.
struct Blocking {
  int mc, kc, nc;
};

struct Caches {
  long l1, l2, l3;
};
const Caches& caches() {
  static const Caches c{cache_bytes(1), cache_bytes(2), cache_bytes(3)};
  return c;
}

Blocking blocking(int mr, int nr, int sz) {
  const Caches& c = caches();
  int kc = int(c.l1 / 2 / (mr * sz)) / 8 * 8;
  kc = std::clamp(kc, 64, 1024);
  int nc = int(c.l2 / 2 / (long(kc) * sz)) / nr * nr;
  nc = std::max(nc, nr);
  int mc = int(c.l2 / 4 / (long(kc) * sz)) / mr * mr;
  mc = std::max(mc, mr);
  return {mc, kc, nc};
}

// Block size for extent n under limit: the fewest blocks, then equal sizes rounded up to q.
long balanced(long n, long limit, long q) {
  long blocks = (n + limit - 1) / limit;
  long b = (n + blocks - 1) / blocks;
  return (b + q - 1) / q * q;
}

// Grow-only 64-byte aligned scratch, one set per thread (OpenMP threads persist, so it is reused).
struct Scratch {
  void* p = nullptr;
  size_t n = 0;
  void* get(size_t bytes) {
    if (bytes > n) {
      std::free(p);
      n = (bytes + 63) / 64 * 64;
      p = std::aligned_alloc(64, n);
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};
thread_local Scratch tl_b, tl_ashared, tl_a, tl_tmp;  // (tl_b, tl_ashared: the caller's)

// Packing. The widths (NR, MR) are compile-time in the copy loops, so they unroll into straight
// vector moves instead of calls to memcpy with a run-time size (which cost as much as the
// copy at these sizes: a 56-byte row per k).
//
// 4x4 transpose: d[q*ds + i] = s[i*ss + q]. SSE2 for float (the baseline every x86-64 has).
inline void tr4(const float* s, long ss, float* d, long ds) {
  __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ss), r2 = _mm_loadu_ps(s + 2 * ss),
         r3 = _mm_loadu_ps(s + 3 * ss);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(d, r0), _mm_storeu_ps(d + ds, r1), _mm_storeu_ps(d + 2 * ds, r2), _mm_storeu_ps(d + 3 * ds, r3);
}
inline void tr4(const double* s, long ss, double* d, long ds) {
  for (int i = 0; i < 4; i += 2)
    for (int q = 0; q < 4; q += 2) {
      __m128d a = _mm_loadu_pd(s + i * ss + q), b = _mm_loadu_pd(s + (i + 1) * ss + q);
      _mm_storeu_pd(d + q * ds + i, _mm_unpacklo_pd(a, b));
      _mm_storeu_pd(d + (q + 1) * ds + i, _mm_unpackhi_pd(a, b));
    }
}

// B block rows k0..k0+kb, columns j0..j0+nb (nb <= NR) -> dst[k*NR + j], zero-padded to NR.
template <class T, int NR>
void pack_b_w(T* __restrict dst, const T* __restrict B, long ldb, bool tb, long k0, long kb, long j0, int nb) {
  if (!tb) {
    for (long k = 0; k < kb; ++k) {
      const T* s = B + (k0 + k) * ldb + j0;
      T* d = dst + k * NR;
      if (nb == NR) {
        for (int j = 0; j < NR; ++j) d[j] = s[j];
      } else {
        for (int j = 0; j < nb; ++j) d[j] = s[j];
        for (int j = nb; j < NR; ++j) d[j] = 0;
      }
    }
  } else if (nb == NR) {  // op(B)[k][j] = B[j*ldb + k]: 4x4 transposes
    const T* s = B + j0 * ldb + k0;
    long k = 0;
    for (; k + 4 <= kb; k += 4)
      for (int j = 0; j < NR; j += 4) tr4(s + j * ldb + k, ldb, dst + k * NR + j, NR);
    for (; k < kb; ++k)
      for (int j = 0; j < NR; ++j) dst[k * NR + j] = s[j * ldb + k];
  } else {  // edge panel: read each source row once, scatter with stride NR
    for (int j = 0; j < nb; ++j) {
      const T* s = B + (j0 + j) * ldb + k0;
      for (long k = 0; k < kb; ++k) dst[k * NR + j] = s[k];
    }
    for (int j = nb; j < NR; ++j)
      for (long k = 0; k < kb; ++k) dst[k * NR + j] = 0;
  }
}

// A strip rows i0..i0+R, columns k0..k0+kb -> dst[k*MR + i] (rows R..MR are never read).
template <class T, int MR>
void pack_a_w(T* __restrict dst, const T* __restrict A, long lda, bool ta, long i0, int R, long k0, long kb) {
  if (!ta) {
    if (R == MR) {  // 4x4 transposes over the first MR/4*4 rows, the rest one by one
      const T* s = A + i0 * lda + k0;
      constexpr int M4 = MR / 4 * 4;
      long k = 0;
      for (; k + 4 <= kb; k += 4) {
        for (int i = 0; i < M4; i += 4) tr4(s + i * lda + k, lda, dst + k * MR + i, MR);
        for (int i = M4; i < MR; ++i)
          for (int q = 0; q < 4; ++q) dst[(k + q) * MR + i] = s[i * lda + k + q];
      }
      for (; k < kb; ++k)
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = s[i * lda + k];
    } else {
      for (int i = 0; i < R; ++i) {
        const T* s = A + (i0 + i) * lda + k0;
        for (long k = 0; k < kb; ++k) dst[k * MR + i] = s[k];
      }
    }
  } else {  // op(A)[i][k] = A[k*lda + i]: each k is R contiguous values
    for (long k = 0; k < kb; ++k) {
      const T* s = A + (k0 + k) * lda + i0;
      T* d = dst + k * MR;
      if (R == MR)
        for (int i = 0; i < MR; ++i) d[i] = s[i];
      else
        for (int i = 0; i < R; ++i) d[i] = s[i];
    }
  }
}

template <class T>
void pack_b(T* dst, const T* B, long ldb, bool tb, long k0, long kb, long j0, int nb, int NR) {
  switch (NR) {
    case 32: return pack_b_w<T, 32>(dst, B, ldb, tb, k0, kb, j0, nb);
    case 16: return pack_b_w<T, 16>(dst, B, ldb, tb, k0, kb, j0, nb);
    case 8: return pack_b_w<T, 8>(dst, B, ldb, tb, k0, kb, j0, nb);
    default: std::abort();
  }
}
template <class T>
void pack_a(T* dst, const T* A, long lda, bool ta, long i0, int R, long k0, long kb, int MR) {
  switch (MR) {
    case PROTO_MR512: return pack_a_w<T, PROTO_MR512>(dst, A, lda, ta, i0, R, k0, kb);
    case 6: return pack_a_w<T, 6>(dst, A, lda, ta, i0, R, k0, kb);
    case 4: return pack_a_w<T, 4>(dst, A, lda, ta, i0, R, k0, kb);
    default: std::abort();
  }
}

// Cost model for the split (shape-only, so the choice never depends on timing): a strip of R rows
// costs max(R*NV/2, 4) cycles per k (2 FMA pipes, 4-cycle latency floor), in units of NV=1.
double strip_cost(int R) { return std::max(double(R), 4.0); }

int env_int(const char* name, int dflt) {
  const char* s = std::getenv(name);
  return s && *s ? std::atoi(s) : dflt;
}

template <class T>
void gemm_impl(Isa isa, int nt, long M, long N, long K, const T* A, long lda, bool ta, const T* B,
               long ldb, bool tb, T* C, long ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (long i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
    return;
  }
  const KernelSet<T>& ks = kernels<T>(isa);
  const int MR = ks.mr, NR = ks.nr;
  Blocking bl = blocking(MR, NR, sizeof(T));
  bl.kc = env_int("PROTO_KC", bl.kc), bl.nc = env_int("PROTO_NC", bl.nc) / NR * NR;  // (experiments)
  const long kc = balanced(K, bl.kc, 8);
  const long nc = balanced(N, bl.nc, NR);
  const long strips = (M + MR - 1) / MR;
  const int last_rows = int(M - (strips - 1) * MR);

  // A in place (no packing) when packing it would cost a large part of the work: few N panels
  // reuse each packed element, and the rows are not 1 KiB-aliased in L1's sets.
  // PROTO_APACK=1 forces packing, 0 forces in-place (for measuring the choice).
  bool a_rows = !ta && N <= 4L * NR && (lda * long(sizeof(T))) % 1024 != 0;
  if (int f = env_int("PROTO_APACK", -1); f >= 0) a_rows = !ta && f == 0;

  if (nt < 1) nt = 1;
  // M split: contiguous strip ranges with about equal cost; N split: contiguous panel ranges
  // over one packed A shared by all threads (M <= MC). Pick the smaller slowest-thread cost.
  std::vector<long> sbound(nt + 1);
  double cost_m = 0, total_strip_cost = 0;
  for (long s = 0; s < strips; ++s) total_strip_cost += strip_cost(s + 1 < strips ? MR : last_rows);
  {
    long s = 0;
    double acc = 0;
    sbound[0] = 0;
    for (int t = 1; t < nt; ++t) {
      double target = total_strip_cost * t / nt;
      while (s < strips && acc + strip_cost(s + 1 < strips ? MR : last_rows) / 2 <= target)
        acc += strip_cost(s + 1 < strips ? MR : last_rows), ++s;
      sbound[t] = s;
    }
    sbound[nt] = strips;
    for (int t = 0; t < nt; ++t) {
      double c = 0;
      for (long q = sbound[t]; q < sbound[t + 1]; ++q) c += strip_cost(q + 1 < strips ? MR : last_rows);
      cost_m = std::max(cost_m, c);
    }
  }
  long panels_total = 0, panels_per_thread = 0;
  for (long jc = 0; jc < N; jc += nc) {
    long p = (std::min(nc, N - jc) + NR - 1) / NR;
    panels_total += p;
    panels_per_thread += (p + nt - 1) / nt;
  }
  cost_m *= panels_total;
  double cost_n = total_strip_cost * panels_per_thread;
  bool split_n = nt > 1 && M <= bl.mc && cost_n < cost_m;
  if (int f = env_int("PROTO_SPLIT", -1); f >= 0 && nt > 1) split_n = f == 1;  // 0: M, 1: N

  // Packing without barriers. All of B goes into one buffer, block (jc, pc) after block, and each
  // packed piece (a B panel; in an N split, an A strip) has a flag: 0 free, 1 being packed, 2 ready.
  // A thread about to use a piece packs it if nobody has claimed it, or waits for the one that has.
  // Each thread sweeps a block's pieces from its own offset, so they share the packing, and a
  // thread waits for another only while that one is inside the very piece it needs. A barrier
  // instead waits a whole scheduler slice for any thread that lost its core on a shared machine
  // (measured here: 2-thread medians 25% lower with one barrier after a cooperative B pack).
  //   B panel (jc, pc, p) at jc*K + np(jc)*NR*pc + p*kb*NR;  A strip (pc, s) at pc*strips*MR + s*MR*kb
  const long nblk_n = (N + nc - 1) / nc, nblk_k = (K + kc - 1) / kc;
  const long npad = (nblk_n - 1) * nc + (N - (nblk_n - 1) * nc + NR - 1) / NR * NR;
  const long npanels = npad / NR;  // all the blocks' panels; a block's are consecutive
  T* bp = static_cast<T*>(tl_b.get(sizeof(T) * npad * K));
  T* ap_shared = split_n && !a_rows ? static_cast<T*>(tl_ashared.get(sizeof(T) * strips * MR * K))
                                    : nullptr;
  std::unique_ptr<std::atomic<int>[]> bflag(new std::atomic<int>[npanels * nblk_k]());
  std::unique_ptr<std::atomic<int>[]> aflag(ap_shared ? new std::atomic<int>[strips * nblk_k]() : nullptr);
  auto b_panel = [&](long jc, long pc, long p) {
    const long np = (std::min(nc, N - jc) + NR - 1) / NR;
    return bp + jc * K + np * NR * pc + p * std::min(kc, K - pc) * NR;
  };
  auto ensure = [](std::atomic<int>& f, auto&& pack) {
    if (f.load(std::memory_order_acquire) == 2) return;
    int expect = 0;
    if (f.compare_exchange_strong(expect, 1, std::memory_order_acq_rel)) {
      pack();
      f.store(2, std::memory_order_release);
      return;
    }
    for (int spin = 0; f.load(std::memory_order_acquire) != 2; ++spin)
      if (spin < 4096) _mm_pause();
      else sched_yield();
  };
  auto need_b = [&](long jc, long pc, long p) {
    ensure(bflag[pc / kc * npanels + jc / NR + p], [&] {
      pack_b(b_panel(jc, pc, p), B, ldb, tb, pc, std::min(kc, K - pc), jc + p * NR,
             int(std::min<long>(NR, N - jc - p * NR)), NR);
    });
  };
  auto a_strip = [&](long pc, long s) { return ap_shared + pc * strips * MR + s * MR * std::min(kc, K - pc); };
  auto need_a = [&](long pc, long s) {
    ensure(aflag[pc / kc * strips + s], [&] {
      pack_a(a_strip(pc, s), A, lda, ta, s * MR, s + 1 < strips ? MR : last_rows, pc, std::min(kc, K - pc), MR);
    });
  };

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num();
    const int T_ = omp_get_num_threads();
    T* ap_own = a_rows || split_n ? nullptr : static_cast<T*>(tl_a.get(sizeof(T) * MR * kc));
    T* tmp = static_cast<T*>(tl_tmp.get(sizeof(T) * MR * NR));
    for (long jc = 0; jc < N; jc += nc) {
      const long np = (std::min(nc, N - jc) + NR - 1) / NR;
      for (long pc = 0; pc < K; pc += kc) {
        const long kb = std::min(kc, K - pc);
        const int acc = accumulate || pc > 0;
        auto tile = [&](long s, const T* a, long p) {
          const long i0 = s * MR;
          const int R = s + 1 < strips ? MR : last_rows;
          const long j0 = jc + p * NR;
          const int n = int(std::min<long>(NR, N - j0));
          auto fn = a_rows ? ks.rows[R] : ks.packed[R];
          const T* b = b_panel(jc, pc, p);
          if (n == NR) {
            fn(kb, a, lda, b, C + i0 * ldc + j0, ldc, acc);
          } else {  // N edge: full tile into scratch, then the valid columns
            fn(kb, a, lda, b, tmp, NR, 0);
            for (int i = 0; i < R; ++i) {
              T* c = C + (i0 + i) * ldc + j0;
              for (int j = 0; j < n; ++j) c[j] = acc ? c[j] + tmp[i * NR + j] : tmp[i * NR + j];
            }
          }
        };
        if (split_n) {  // own B panels; the A strips are shared
          const long p0 = np * t / T_, p1 = np * (t + 1) / T_;
          for (long p = p0; p < p1; ++p) need_b(jc, pc, p);
          if (ap_shared)
            for (long i = 0; i < strips; ++i) need_a(pc, (i + strips * t / T_) % strips);
          for (long s = 0; s < strips; ++s) {
            const T* a = a_rows ? A + s * MR * lda + pc : a_strip(pc, s);
            for (long p = p0; p < p1; ++p) tile(s, a, p);
          }
        } else {  // own A strips; the B panels are shared
          for (long i = 0; i < np; ++i) need_b(jc, pc, (i + np * t / T_) % np);
          for (int q = t; q < nt; q += T_)  // (q != t only if OpenMP gave fewer threads)
            for (long s = sbound[q]; s < sbound[q + 1]; ++s) {
              const T* a = A + s * MR * lda + pc;
              if (!a_rows) {
                pack_a(ap_own, A, lda, ta, s * MR, s + 1 < strips ? MR : last_rows, pc, kb, MR);
                a = ap_own;
              }
              for (long p = 0; p < np; ++p) tile(s, a, p);
            }
        }
      }
    }
  }
}

}  // namespace

Isa best_isa() {
  if (const char* f = std::getenv("PROTO_ISA")) {
    std::string s = f;
    if (s == "avx512") return Isa::avx512;
    if (s == "avx2") return Isa::avx2;
    if (s == "scalar") return Isa::scalar;
  }
  __builtin_cpu_init();
  // __builtin_cpu_supports also requires the OS to save the wider register state (XCR0).
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::scalar;
}

const char* isa_name(Isa isa) {
  return isa == Isa::avx512 ? "avx512" : isa == Isa::avx2 ? "avx2" : "scalar";
}

GemmInfo gemm_info(Isa isa, bool dbl) {
  int mr = dbl ? kernels<double>(isa).mr : kernels<float>(isa).mr;
  int nr = dbl ? kernels<double>(isa).nr : kernels<float>(isa).nr;
  Blocking b = blocking(mr, nr, dbl ? 8 : 4);
  const Caches& c = caches();
  return {isa, isa_name(isa), mr, nr, b.mc, b.kc, b.nc, c.l1, c.l2, c.l3};
}

void gemm(Isa isa, int nt, long M, long N, long K, const float* A, long lda, bool ta,
          const float* B, long ldb, bool tb, float* C, long ldc, bool accumulate) {
  gemm_impl<float>(isa, nt, M, N, K, A, lda, ta, B, ldb, tb, C, ldc, accumulate);
}
void gemm(Isa isa, int nt, long M, long N, long K, const double* A, long lda, bool ta,
          const double* B, long ldb, bool tb, double* C, long ldc, bool accumulate) {
  gemm_impl<double>(isa, nt, M, N, K, A, lda, ta, B, ldb, tb, C, ldc, accumulate);
}

}  // namespace proto
