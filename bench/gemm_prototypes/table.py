"""Print run.sh's results as a markdown table: GFLOP/s (median of reps; over several rounds, the
median of the rounds' medians), best rep in parentheses, and (a)/(b) ratios."""
import collections
import statistics
import sys

rows = collections.defaultdict(lambda: collections.defaultdict(list))
worst = {}
peak = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "info":
        print(line.rstrip())
        continue
    if f[0] == "peak":
        peak[int(f[3])] = float(f[4])
        print(line.rstrip())
        continue
    dt, shape, var, impl, nt, med, best, err, ok, same = f[:10]
    key = (dt, shape, var, int(nt))
    rows[key][impl].append((float(med), float(best)))
    worst[key, impl] = max(worst.get((key, impl), 0.0), float(err))
    if ok != "ok":
        print("FAILED CHECK:", line.rstrip())
    if impl == "blis" and same == "no":
        print("NOT BIT-IDENTICAL 1 vs 2 threads:", line.rstrip())

impls = ["blis", "ob_split", "ob_pool"]


def cell(v):
    if not v:
        return "–"
    return f"{statistics.median(m for m, _ in v):.0f} ({max(b for _, b in v):.0f})"


def ratio(a, b):
    if not a or not b:
        return "–"
    return f"{statistics.median(m for m, _ in a) / statistics.median(m for m, _ in b):.2f}"


print()
print("| dtype | M×K×N | product | threads | (a) blis | (b) ob_split | ob_pool | (a)/(b) | (a)/ob_pool |"
      " (a) % of peak | max scaled err (a) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows, key=lambda k: (k[0], list(dict.fromkeys(r[1] for r in rows)).index(k[1]),
                                        ["A.B", "At.B", "A.Bt"].index(k[2]), k[3])):
    dt, shape, var, nt = key
    r = rows[key]
    pk = peak.get(nt)
    pct = (f"{100 * statistics.median(m for m, _ in r['blis']) / (pk if dt == 'f32' else pk / 2):.0f}%"
           if pk and r.get("blis") else "–")
    print(f"| {dt} | {shape} | {var.replace('t', 'ᵀ')} | {nt} | {cell(r.get('blis'))} | {cell(r.get('ob_split'))} |"
          f" {cell(r.get('ob_pool'))} | {ratio(r.get('blis'), r.get('ob_split'))} |"
          f" {ratio(r.get('blis'), r.get('ob_pool'))} | {pct} | {worst.get((key, 'blis'), float('nan')):.2f} |")
