// Design (a) of issue 8: a BLIS-style GEMM with run-time ISA choice (prototype, not library code).
#pragma once

namespace proto {

enum class Isa { scalar, avx2, avx512 };

// What gemm() runs with for one ISA and element type: micro-tile, blocking, cache sizes read.
struct GemmInfo {
  Isa isa;
  const char* name;  // "avx512", "avx2", "scalar"
  int mr, nr;        // micro-tile (rows of C x columns of C)
  int mc, kc, nc;    // blocking limits derived from the cache sizes
  long l1, l2, l3;   // bytes, as read at run time
};

// Best ISA the CPU and OS support (__builtin_cpu_supports); PROTO_ISA=avx512|avx2|scalar forces one.
Isa best_isa();
const char* isa_name(Isa isa);
GemmInfo gemm_info(Isa isa, bool dbl);

// C (M x N, row-major, ldc) = op(A) op(B), or += when accumulate.
// op(A) is M x K: A[i*lda + k], or A[k*lda + i] when ta (a transposed view). Same for B (K x N).
// Results do not depend on nthreads (each element's sum runs in the same order).
void gemm(Isa isa, int nthreads, long M, long N, long K, const float* A, long lda, bool ta,
          const float* B, long ldb, bool tb, float* C, long ldc, bool accumulate);
void gemm(Isa isa, int nthreads, long M, long N, long K, const double* A, long lda, bool ta,
          const double* B, long ldb, bool tb, double* C, long ldc, bool accumulate);

}  // namespace proto
