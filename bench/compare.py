"""Run the benchmarks and print the side-by-side table (markdown) with ratios peer/fastnn.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/compare.py [pytest args, e.g. -k gemm]
    python bench/compare.py --from results.json      # only print the table of an earlier run

Ratio = peer median / fastnn median: above 1, fastnn is faster.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))


def run(pytest_args, json_path):
    cmd = [sys.executable, "-m", "pytest", HERE, "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}", "--benchmark-min-rounds=5", "-o", "python_files=bench_*.py", *pytest_args]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def column(bench):
    """'fastnn', 'torch', ... plus ' 1t' for the width sweep's thread parameter."""
    params = bench.get("params") or {}
    col = params.get("impl", "?")
    if "threads" in params:
        col += f" {params['threads']}t"
    return col


def table(data):
    groups = defaultdict(dict)
    for b in data["benchmarks"]:
        groups[b["group"]][column(b)] = b["stats"]["median"]
    cols = sorted({c for g in groups.values() for c in g}, key=lambda c: (not c.startswith("fastnn"), c))
    lines = ["| workload | " + " | ".join(f"{c} (ms)" for c in cols) + " | ratios (peer / fastnn) |",
             "|---" * (len(cols) + 2) + "|"]
    for name in sorted(groups, key=lambda g: re.sub(r"\d+", lambda m: m.group().zfill(6), g)):
        g = groups[name]
        cells = [f"{g[c] * 1e3:.3f}" if c in g else "–" for c in cols]
        ratios = []
        for c in cols:
            if c.startswith("fastnn") or c not in g:
                continue
            threads = c.split(" ")[1] if " " in c else ""
            base = g.get(f"fastnn {threads}".strip())
            if base:
                ratios.append(f"{c}: {g[c] / base:.2f}×")
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |")
    return "\n".join(lines)


def main(argv):
    if argv[:1] == ["--from"]:
        with open(argv[1]) as f:
            data = json.load(f)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench.json")
            run(argv, path)
            with open(path) as f:
                data = json.load(f)
            keep = os.environ.get("FASTNN_BENCH_JSON")
            if keep:
                with open(keep, "w") as f:
                    json.dump(data, f)
    info = data.get("machine_info", {})
    commit = data.get("commit_info", {}).get("id", "?")[:10]
    print(f"{data.get('datetime', '?')[:19]}  commit {commit}  {info.get('cpu', {}).get('brand_raw', '?')}, "
          f"{os.cpu_count()} cores\n")
    print(table(data))


if __name__ == "__main__":
    main(sys.argv[1:])
