#!/bin/sh
# Build the GEMM prototypes of issue 8 and print the comparison table.
#   bench/gemm_prototypes/run.sh             float32, 1 and 2 threads, every shape
#   DTYPES="f32 f64" ROUNDS=3 AVX2=1 run.sh  more: each round reruns every process (table: median of
#                                            the rounds), AVX2=1 adds the AVX2 kernels (see below)
#   PEAK1=269.5 PEAK2=539 run.sh             % of this FMA peak (GFLOP/s, float32) instead of the
#                                            one measured at the start (low on a loaded machine)
#   run.sh --test                            correctness sweep only (every ISA this CPU runs)
# Needs g++ with OpenMP and the scipy-openblas32 wheel (pip install scipy-openblas32).
# No -march anywhere: the kernel file picks AVX-512 / AVX2 / SSE2 at run time.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
out=${OUT:-$here/build}
mkdir -p "$out"
inc=$($py -c 'import scipy_openblas32 as s; print(s.get_include_dir())')
lib=$($py -c 'import scipy_openblas32 as s; print(s.get_lib_dir())')
cxx=${CXX:-g++}
flags="-O3 -fopenmp -std=gnu++17 -Wall ${EXTRA_FLAGS:-}"
# one compile job at a time (the machine is shared)
[ "$out/blis_gemm.o" -nt "$here/blis_gemm.cpp" ] && [ "$out/blis_gemm.o" -nt "$here/blis_gemm.h" ] ||
  $cxx $flags -c "$here/blis_gemm.cpp" -o "$out/blis_gemm.o"
[ "$out/bench.o" -nt "$here/bench.cpp" ] && [ "$out/bench.o" -nt "$here/blis_gemm.h" ] ||
  $cxx $flags -I"$inc" -c "$here/bench.cpp" -o "$out/bench.o"
$cxx -fopenmp "$out/bench.o" "$out/blis_gemm.o" -L"$lib" -lscipy_openblas -Wl,-rpath,"$lib" -o "$out/gemm_bench"

# The workplace forces OpenBLAS's Haswell kernel; a user's machine does not (BUILD-NOTES §6).
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$out/gemm_bench" "$@"; }
case "${1:-}" in --test) run --test; exit ;; --build) exit ;; esac

res=$out/results.txt
: > "$res"
run --info --peak | tee -a "$res"
for r in $(seq "${ROUNDS:-1}"); do
  for dt in ${DTYPES:-f32}; do
    # (a) and (b) interleaved call by call in one process (both run on fastnn's OpenMP threads);
    # OpenBLAS's own pool in its own process, since its workers spin after each call.
    run --impl blis,ob_split --dtype "$dt" --min-time "${MIN_TIME:-0.3}" >> "$res"
    run --impl ob_pool --dtype "$dt" --min-time "${MIN_TIME:-0.3}" >> "$res"
    echo "info load average after round $r $dt: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$res"
  done
  # AVX2=1: design (a)'s AVX2 kernel against OpenBLAS's AVX2 (Haswell) kernel on this CPU, as a
  # stand-in for an AVX2-only machine (same caches and clock, so only the kernels differ)
  if [ "${AVX2:-0}" = 1 ]; then
    PROTO_ISA=avx2 OPENBLAS_CORETYPE=Haswell env -u OPENBLAS_L2_SIZE "$out/gemm_bench" --impl blis,ob_split \
      --min-time "${MIN_TIME:-0.3}" >> "$res"
  fi
done
$py "$here/table.py" "$res"  # PEAK1=… PEAK2=… to use an idle machine's FMA peak for the %
