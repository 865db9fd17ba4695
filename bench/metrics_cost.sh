#!/usr/bin/env bash
# What the metrics cost: runs two builds of `weir-bench` (the core tumble query on one core)
# alternately and prints each run's rows/s, then the median of each. BASE is a build from before
# the metrics (commit 2ace0e7), NEW the current one:
#
#   git worktree add /tmp/weir-base 2ace0e7
#   (cd /tmp/weir-base && cargo build --release -p weir-bench --bin weir-bench)
#   cargo build --release -p weir-bench --bin weir-bench
#   bench/metrics_cost.sh /tmp/weir-base/target/release/weir-bench target/release/weir-bench 10
#
# QUERY=filter measures a pass-through filter instead (half the rows reach the result, so the
# per-row latency bookkeeping at the sink is on the path). Copy this weir-bench.rs into the
# base tree first: it has the `filter` query.
set -euo pipefail
base=$1 new=$2 runs=${3:-10} rows=${ROWS:-10000000} query=${QUERY:-tumble}
declare -a b n
rate() { "$1" "$rows" 1000 "$query" | sed -E 's/.*= ([0-9]+) rows\/s.*/\1/'; }
for i in $(seq "$runs"); do
  b+=("$(rate "$base")")
  n+=("$(rate "$new")")
  echo "run $i: base ${b[-1]} rows/s, new ${n[-1]} rows/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${b[@]}") mn=$(median "${n[@]}")
awk -v b="$mb" -v n="$mn" 'BEGIN { printf "median: base %.0f rows/s, new %.0f rows/s, change %+.2f%%\n", b, n, 100*(n-b)/b }'
