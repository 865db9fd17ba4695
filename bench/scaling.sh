#!/usr/bin/env bash
# Parallelism scaling of the in-memory benchmark (docs/benchmarks.md): runs `weir-bench` on
# <rows> rows at p = 1 and p = 2 alternately <runs> times and prints each run's seconds, the
# medians, the speed-up and the efficiency per core.
#   bench/scaling.sh [query] [rows] [runs]      (defaults: tumble 30000000 7)
# Uses the release build (cargo build --release -p weir-bench -p weir-shell --bins);
# WEIR_BENCH_SET and WEIR_BENCH_THREADS are passed through.
set -euo pipefail
query=${1:-tumble}
rows=${2:-30000000}
runs=${3:-7}
bin="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/weir-bench"
seconds() { WEIR_BENCH_PARALLELISM=$1 "$bin" "$rows" 1000 "$query" | sed -E 's/.* in ([0-9.]+) s.*/\1/'; }
one=()
two=()
for _ in $(seq "$runs"); do
  one+=("$(seconds 1)")
  two+=("$(seconds 2)")
done
echo "$query p=1: ${one[*]}"
echo "$query p=2: ${two[*]}"
python3 - "$query" "$rows" "${one[*]}" "${two[*]}" <<'PY'
import statistics, sys
query, rows = sys.argv[1], int(sys.argv[2])
a = [float(x) for x in sys.argv[3].split()]
b = [float(x) for x in sys.argv[4].split()]
m1, m2 = statistics.median(a), statistics.median(b)
print(f"{query}: median p=1 {m1:.3f} s ({rows / m1 / 1e6:.1f} M rows/s), "
      f"p=2 {m2:.3f} s ({rows / m2 / 1e6:.1f} M rows/s), speed-up {m1 / m2:.2f}, "
      f"efficiency per core {m1 / m2 / 2 * 100:.0f} %")
PY
