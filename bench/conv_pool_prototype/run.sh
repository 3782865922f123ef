#!/usr/bin/env bash
# Does a 2x2 max pool fused into the eval conv -> BN -> ReLU pass pay? Builds this commit with
# prototype.patch applied in a temporary copy (nothing here changes), then times, per cnn block,
# the folded conv pass followed by a pooling pass over the full output against the same pass
# pooling each image's output while it is in L2 (measure.py; 1 and 2 threads).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git -C "$repo" archive HEAD | tar -x -C "$tmp"
patch -s -d "$tmp" -p1 < "$here/prototype.patch"
(cd "$tmp" && JOBS="${JOBS:-1}" tools/dev-build >/dev/null)
for t in 1 2; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$tmp/python" python3 "$here/measure.py" "$t"
done
