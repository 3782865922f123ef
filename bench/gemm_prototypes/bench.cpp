// Harness for issue 8's two GEMM designs, same shapes, same data, same process layout:
//   blis      design (a): blis_gemm.cpp, its own OpenMP split (M, or N when M is small)
//   ob_split  design (b): scipy_cblas_?gemm single-threaded per M block, from an OpenMP region
//   ob_pool   OpenBLAS with its own thread pool (scipy_openblas_set_num_threads(T), one call)
// Each run checks its result against a float64 reference: err = max |C - ref| / (|A||B| eps sqrt(K))
// elementwise, the tests' bound (tests/conftest.py sum_bound) without its c = 10.
//
//   bench --impl blis,ob_split|ob_pool|... [--dtype f32|f64] [--threads 1,2] [--shapes i,j]
//   bench ... --shape MxKxN    one other shape instead of the list
//   bench --test      correctness sweep of design (a) over every ISA this CPU runs
//   bench --peak      register-only AVX-512 FMA loop, 1 and 2 threads (GFLOP/s)
//   bench --info      ISA chosen, micro-tile, blocking, cache sizes, OpenBLAS core
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "blis_gemm.h"

namespace {

struct Shape {
  long M, K, N;
};
std::vector<Shape> kShapes = {{1024, 1024, 1024}, {256, 1024, 1024}, {128, 784, 256},
                         {128, 3136, 128},   {6272, 288, 64},   {25088, 9, 32}};
enum Var { NN, TN, NT };
const char* kVarName[] = {"A.B", "At.B", "A.Bt"};

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// xorshift in [-1, 1)
struct Rng {
  unsigned long s = 88172645463325252ul;
  double next() {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return double(s >> 11) / double(1ul << 52) - 1.0;
  }
};

// One product: op(A) (M x K) and op(B) (K x N) in float64 plus their layout for the variant.
template <class T>
struct Problem {
  long M, K, N;
  Var var;
  bool ta, tb;
  long lda, ldb, ldc;
  std::vector<T> a, b, c;
};

template <class T>
Problem<T> make_problem(long M, long K, long N, Var var, const std::vector<double>& opa,
                        const std::vector<double>& opb, long pad = 0) {
  Problem<T> p{M, K, N, var, var == TN, var == NT, 0, 0, N + pad, {}, {}, {}};
  p.lda = (p.ta ? M : K) + pad;
  p.ldb = (p.tb ? K : N) + pad;
  p.a.assign(size_t(p.ta ? K : M) * p.lda, T(0));
  p.b.assign(size_t(p.tb ? N : K) * p.ldb, T(0));
  p.c.assign(size_t(M) * p.ldc, T(0));
  for (long i = 0; i < M; ++i)
    for (long k = 0; k < K; ++k) (p.ta ? p.a[k * p.lda + i] : p.a[i * p.lda + k]) = T(opa[i * K + k]);
  for (long k = 0; k < K; ++k)
    for (long j = 0; j < N; ++j) (p.tb ? p.b[j * p.ldb + k] : p.b[k * p.ldb + j]) = T(opb[k * N + j]);
  return p;
}

// Reference in float64 from the values as rounded to T, and the terms sum_k |a||b|.
template <class T>
void reference(long M, long K, long N, const std::vector<double>& opa, const std::vector<double>& opb,
               std::vector<double>& ref, std::vector<double>& terms) {
  ref.assign(size_t(M) * N, 0.0);
  terms.assign(size_t(M) * N, 0.0);
  std::vector<double> bt(opb.size()), bat(opb.size());
  for (size_t q = 0; q < opb.size(); ++q) bt[q] = double(T(opb[q])), bat[q] = std::fabs(bt[q]);
  for (long i = 0; i < M; ++i) {
    double* r = &ref[i * N];
    double* t = &terms[i * N];
    for (long k = 0; k < K; ++k) {
      const double a = double(T(opa[i * K + k])), aa = std::fabs(a);
      const double* b = &bt[k * N];
      const double* ba = &bat[k * N];
      for (long j = 0; j < N; ++j) r[j] += a * b[j], t[j] += aa * ba[j];
    }
  }
}

template <class T>
double scaled_error(const Problem<T>& p, const std::vector<double>& ref, const std::vector<double>& terms,
                    const std::vector<double>* acc0 = nullptr) {
  const double eps = std::numeric_limits<T>::epsilon(), rk = std::sqrt(double(p.K + (acc0 ? 1 : 0)));
  double worst = 0;
  for (long i = 0; i < p.M; ++i)
    for (long j = 0; j < p.N; ++j) {
      double e = ref[i * p.N + j], t = terms[i * p.N + j];
      if (acc0) e += (*acc0)[i * p.N + j], t += std::fabs((*acc0)[i * p.N + j]);
      double err = std::fabs(double(p.c[i * p.ldc + j]) - e);
      double bound = eps * rk * t + std::numeric_limits<T>::min();
      if (!(err <= 1e30 * bound)) return INFINITY;  // NaN
      worst = std::max(worst, err / bound);
    }
  return worst;
}

// ---------------------------------------------------------------------------------------------
// The three implementations.
void ob_gemm(long M, long N, long K, const float* A, long lda, bool ta, const float* B, long ldb,
             bool tb, float* C, long ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    int(M), int(N), int(K), 1.0f, A, int(lda), B, int(ldb), 0.0f, C, int(ldc));
}
void ob_gemm(long M, long N, long K, const double* A, long lda, bool ta, const double* B, long ldb,
             bool tb, double* C, long ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    int(M), int(N), int(K), 1.0, A, int(lda), B, int(ldb), 0.0, C, int(ldc));
}

enum Impl { BLIS, OB_SPLIT, OB_POOL };
const char* kImplName[] = {"blis", "ob_split", "ob_pool"};

template <class T>
void run(Impl impl, proto::Isa isa, int nt, Problem<T>& p, bool accumulate = false) {
  if (impl == BLIS) {
    proto::gemm(isa, nt, p.M, p.N, p.K, p.a.data(), p.lda, p.ta, p.b.data(), p.ldb, p.tb, p.c.data(),
                p.ldc, accumulate);
  } else if (impl == OB_POOL || nt == 1) {
    ob_gemm(p.M, p.N, p.K, p.a.data(), p.lda, p.ta, p.b.data(), p.ldb, p.tb, p.c.data(), p.ldc);
  } else {
    // Design (b): OpenMP splits M (blocks of whole multiples of 16 rows, from the shape only).
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
      const long blocks = (p.M + 15) / 16;
      const long i0 = std::min(p.M, blocks * t / T_ * 16), i1 = std::min(p.M, blocks * (t + 1) / T_ * 16);
      if (i1 > i0)
        ob_gemm(i1 - i0, p.N, p.K, p.a.data() + (p.ta ? i0 : i0 * p.lda), p.lda, p.ta, p.b.data(), p.ldb,
                p.tb, p.c.data() + i0 * p.ldc, p.ldc);
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Interleaved timing: one call of each implementation in turn (the order rotating), so that load
// from other processes on a shared machine hits them alike; median and best per implementation.
template <class T>
int bench(const std::vector<Impl>& impls, const std::vector<int>& threads, const std::vector<int>& shapes,
          double min_time) {
  const proto::Isa isa = proto::best_isa();
  // a forced ISA (PROTO_ISA) is part of the label: "f32-avx2"
  const std::string dts = std::string(sizeof(T) == 4 ? "f32" : "f64") +
                          (std::getenv("PROTO_ISA") ? std::string("-") + proto::isa_name(isa) : "");
  const char* dt = dts.c_str();
  const size_t ni = impls.size();
  int failures = 0;
  for (int si : shapes) {
    const Shape s = kShapes[si];
    Rng rng;
    std::vector<double> opa(size_t(s.M) * s.K), opb(size_t(s.K) * s.N), ref, terms;
    for (auto& x : opa) x = rng.next();
    for (auto& x : opb) x = rng.next();
    reference<T>(s.M, s.K, s.N, opa, opb, ref, terms);
    for (Var var : {NN, TN, NT}) {
      std::vector<Problem<T>> ps(ni, make_problem<T>(s.M, s.K, s.N, var, opa, opb));
      std::vector<std::vector<T>> first(ni);
      for (int nt : threads) {
        for (size_t q = 0; q < ni; ++q) {
          if (impls[q] == OB_POOL) scipy_openblas_set_num_threads(nt);
          std::fill(ps[q].c.begin(), ps[q].c.end(), T(0));
          run(impls[q], isa, nt, ps[q]);
          run(impls[q], isa, nt, ps[q]);
        }
        std::vector<std::vector<double>> ts(ni);
        const double t_start = now();
        for (size_t round = 0; ts[0].size() < 5 || (now() - t_start < min_time * ni && ts[0].size() < 500);
             ++round)
          for (size_t o = 0; o < ni; ++o) {
            const size_t q = (o + round) % ni;
            const double t0 = now();
            run(impls[q], isa, nt, ps[q]);
            ts[q].push_back(now() - t0);
          }
        const double flop = 2.0 * s.M * s.N * s.K;
        for (size_t q = 0; q < ni; ++q) {
          const double err = scaled_error(ps[q], ref, terms);
          const char* same = "-";
          if (first[q].empty()) first[q] = ps[q].c;
          else same = std::memcmp(first[q].data(), ps[q].c.data(), sizeof(T) * first[q].size()) ? "no" : "yes";
          const bool ok = err <= 10.0;
          failures += !ok;
          std::printf("%s %ldx%ldx%ld %s %s %d %.1f %.1f %.3f %s %s %zu\n", dt, s.M, s.K, s.N,
                      kVarName[var], kImplName[impls[q]], nt, flop / median(ts[q]) / 1e9,
                      flop / *std::min_element(ts[q].begin(), ts[q].end()) / 1e9, err, ok ? "ok" : "FAIL",
                      same, ts[q].size());
        }
        std::fflush(stdout);
      }
    }
  }
  scipy_openblas_set_num_threads(1);
  return failures;
}

// ---------------------------------------------------------------------------------------------
// Correctness sweep of design (a): every ISA the CPU has, odd sizes, K = 1, padded leading
// dimensions (strided views), accumulate-into, 1 vs 2 threads bit-identical.
template <class T>
int test_sweep(proto::Isa isa) {
  const long Ms[] = {1, 7, 13, 14, 15, 33, 129, 300};
  const long Ns[] = {1, 7, 31, 32, 33, 129, 600};
  const long Ks[] = {1, 7, 33, 1000};
  int fails = 0, cases = 0;
  double worst = 0;
  Rng rng;
  for (long M : Ms)
    for (long N : Ns)
      for (long K : Ks)
        for (Var var : {NN, TN, NT})
          for (int acc = 0; acc < 2; ++acc) {
            const long pad = (M + N + K + var) % 3 == 0 ? 0 : 3;
            std::vector<double> opa(size_t(M) * K), opb(size_t(K) * N), ref, terms, c0(size_t(M) * N);
            for (auto& x : opa) x = rng.next();
            for (auto& x : opb) x = rng.next();
            for (auto& x : c0) x = acc ? double(T(rng.next())) : 0.0;
            reference<T>(M, K, N, opa, opb, ref, terms);
            Problem<T> p = make_problem<T>(M, K, N, var, opa, opb, pad);
            std::vector<T> out[2];
            for (int nt = 1; nt <= 2; ++nt) {
              std::fill(p.c.begin(), p.c.end(), T(-7));  // padding and garbage must not leak in
              for (long i = 0; i < M; ++i)
                for (long j = 0; j < N; ++j) p.c[i * p.ldc + j] = acc ? T(c0[i * N + j]) : T(12345);
              proto::gemm(isa, nt, M, N, K, p.a.data(), p.lda, p.ta, p.b.data(), p.ldb, p.tb, p.c.data(),
                          p.ldc, acc);
              out[nt - 1] = p.c;
              double err = scaled_error(p, ref, terms, acc ? &c0 : nullptr);
              bool pad_ok = true;
              for (long i = 0; i < M; ++i)
                for (long j = N; j < p.ldc; ++j) pad_ok &= p.c[i * p.ldc + j] == T(-7);
              worst = std::max(worst, err);
              ++cases;
              if (!(err <= 10.0) || !pad_ok) {
                ++fails;
                if (fails < 10)
                  std::printf("FAIL %s %s M=%ld N=%ld K=%ld %s acc=%d nt=%d err=%.3g pad_ok=%d\n",
                              proto::isa_name(isa), sizeof(T) == 4 ? "f32" : "f64", M, N, K, kVarName[var],
                              acc, nt, err, int(pad_ok));
              }
            }
            if (out[0] != out[1]) {
              ++fails;
              std::printf("FAIL %s 1 vs 2 threads differ M=%ld N=%ld K=%ld %s\n", proto::isa_name(isa), M, N,
                          K, kVarName[var]);
            }
          }
  std::printf("test %s %s: %d cases, %d failures, worst scaled error %.3f\n", proto::isa_name(isa),
              sizeof(T) == 4 ? "f32" : "f64", cases, fails, worst);
  return fails;
}

// ---------------------------------------------------------------------------------------------
__attribute__((target("avx512f"))) double fma_peak_avx512(int nt) {
  const long iters = 200000000 / 16;
  double t0 = now();
  float sink = 0;
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(0.999999f);
    __m512 c[16];
    for (int i = 0; i < 16; ++i) c[i] = _mm512_set1_ps(float(i));
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) c[i] = _mm512_fmadd_ps(c[i], b, a);
    }
    alignas(64) float out[16];
    for (int i = 1; i < 16; ++i) c[0] = _mm512_add_ps(c[0], c[i]);
    _mm512_store_ps(out, c[0]);
    for (float x : out) sink += x;
  }
  double dt = now() - t0;
  if (sink == 1.2345f) std::printf(" ");
  return 2.0 * 16 * 16 * iters * nt / dt / 1e9;
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string impl = "blis", dtype = "f32";
  std::vector<int> threads{1, 2}, shapes{0, 1, 2, 3, 4, 5};
  double min_time = 0.3;
  bool test = false, peak = false, info = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() { return i + 1 < argc ? argv[++i] : (std::fprintf(stderr, "%s needs a value\n", a.c_str()), std::exit(2), ""); };
    if (a == "--impl") impl = val();
    else if (a == "--dtype") dtype = val();
    else if (a == "--threads") threads = parse_list(val());
    else if (a == "--shapes") shapes = parse_list(val());
    else if (a == "--shape") {  // MxKxN, instead of the list
      Shape sh{};
      if (std::sscanf(val(), "%ldx%ldx%ld", &sh.M, &sh.K, &sh.N) != 3) return 2;
      kShapes = {sh};
      shapes = {0};
    }
    else if (a == "--min-time") min_time = std::atof(val());
    else if (a == "--test") test = true;
    else if (a == "--peak") peak = true;
    else if (a == "--info") info = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  scipy_openblas_set_num_threads(1);
  if (info) {
    for (bool dbl : {false, true}) {
      proto::GemmInfo g = proto::gemm_info(proto::best_isa(), dbl);
      std::printf("info %s %s: micro-tile %dx%d, MC=%d KC=%d NC=%d; L1d=%ldK L2=%ldK L3=%ldK\n",
                  dbl ? "f64" : "f32", g.name, g.mr, g.nr, g.mc, g.kc, g.nc, g.l1 >> 10, g.l2 >> 10, g.l3 >> 10);
    }
    std::printf("info openblas core: %s; config: %s\n", scipy_openblas_get_corename(), scipy_openblas_get_config());
  }
  if (peak) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
      for (int nt : threads) std::printf("peak f32 avx512 %d %.1f\n", nt, fma_peak_avx512(nt));
  }
  int fails = 0;
  if (test) {
    __builtin_cpu_init();
    std::vector<proto::Isa> isas{proto::Isa::scalar};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isas.push_back(proto::Isa::avx2);
    if (__builtin_cpu_supports("avx512f")) isas.push_back(proto::Isa::avx512);
    for (proto::Isa isa : isas) fails += test_sweep<float>(isa) + test_sweep<double>(isa);
  }
  if (!test && !peak && !info) {
    std::vector<Impl> ims;
    for (size_t p = 0; p <= impl.size();) {
      size_t e = std::min(impl.find(',', p), impl.size());
      std::string name = impl.substr(p, e - p);
      int q = name == "blis" ? BLIS : name == "ob_split" ? OB_SPLIT : name == "ob_pool" ? OB_POOL : -1;
      if (q < 0) {
        std::fprintf(stderr, "unknown --impl %s\n", name.c_str());
        return 2;
      }
      ims.push_back(Impl(q));
      p = e + 1;
    }
    bool pool = std::count(ims.begin(), ims.end(), OB_POOL) > 0;
    if (pool && ims.size() > 1)  // its workers spin after each call and would slow the others
      std::fprintf(stderr, "note: ob_pool interleaved with OpenMP implementations; run it alone\n");
    fails = dtype == "f64" ? bench<double>(ims, threads, shapes, min_time) : bench<float>(ims, threads, shapes, min_time);
  }
  return fails ? 1 : 0;
}
