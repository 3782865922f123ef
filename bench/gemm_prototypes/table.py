"""Print run.sh's results as a markdown table: GFLOP/s (median of reps; over several rounds, the
median of the rounds' medians), best rep in parentheses, (a)/(b) ratios of the medians (of the best reps), and the
best rep of (a) as a % of the FMA peak."""
import collections
import os
import statistics
import sys

rows = collections.defaultdict(lambda: collections.defaultdict(list))
worst = {}
peak = {}
seen = set()
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] in ("info", "peak"):
        if f[0] == "peak":
            peak[int(f[3])] = float(f[4])
        if line not in seen:
            print(line.rstrip())
        seen.add(line)
        continue
    dt, shape, var, impl, nt, med, best, err, ok, same = f[:10]
    key = (dt, shape, var, int(nt))
    rows[key][impl].append((float(med), float(best)))
    worst[key, impl] = max(worst.get((key, impl), 0.0), float(err))
    if ok != "ok":
        print("FAILED CHECK:", line.rstrip())
    if impl == "blis" and same == "no":
        print("NOT BIT-IDENTICAL 1 vs 2 threads:", line.rstrip())

# On a loaded machine the measured peak is low; PEAK1/PEAK2 (GFLOP/s, float32, 1 and 2 threads,
# e.g. an idle machine's figures) take precedence.
for nt in (1, 2):
    if os.environ.get(f"PEAK{nt}"):
        peak[nt] = float(os.environ[f"PEAK{nt}"])
impls = ["blis", "ob_split", "ob_pool"]


def cell(v):
    if not v:
        return "–"
    return f"{statistics.median(m for m, _ in v):.0f} ({max(b for _, b in v):.0f})"


def ratio(a, b):
    if not a or not b:
        return "–"
    med = statistics.median(m for m, _ in a) / statistics.median(m for m, _ in b)
    best = max(x for _, x in a) / max(x for _, x in b)
    return f"{med:.2f} ({best:.2f})"


print()
print(f"float32 FMA peak used for %: {peak} GFLOP/s (float64: half)")
print("| dtype | M×K×N | product | threads | (a) blis | (b) ob_split | ob_pool | (a)/(b) | (a)/ob_pool |"
      " (a) best, % of peak | max scaled err (a) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows, key=lambda k: (k[0], list(dict.fromkeys(r[1] for r in rows)).index(k[1]),
                                        ["A.B", "At.B", "A.Bt"].index(k[2]), k[3])):
    dt, shape, var, nt = key
    r = rows[key]
    pk = peak.get(nt)
    # float64 and the AVX2 kernels (half the vector width) have half the float32 AVX-512 peak
    pk = pk and pk / (2 if dt.startswith("f64") else 1) / (2 if dt.endswith("avx2") else 1)
    pct = (f"{100 * max(b for _, b in r['blis']) / pk:.0f}%"
           if pk and r.get("blis") else "–")
    print(f"| {dt} | {shape} | {var.replace('t', 'ᵀ')} | {nt} | {cell(r.get('blis'))} | {cell(r.get('ob_split'))} |"
          f" {cell(r.get('ob_pool'))} | {ratio(r.get('blis'), r.get('ob_split'))} |"
          f" {ratio(r.get('blis'), r.get('ob_pool'))} | {pct} | {worst.get((key, 'blis'), float('nan')):.2f} |")
