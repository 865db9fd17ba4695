#!/usr/bin/env bash
# Fuzz Weir's input handling with libFuzzer (cargo-fuzz): the SQL front end, the JSON and CSV
# line decoders, Kafka record decoding and the checkpoint readers (targets in fuzz/).
#
#   scripts/fuzz.sh                 every target for 60 s (a developer's short run)
#   scripts/fuzz.sh 600 sql         one target for 10 minutes
#   FUZZ_JOBS=2 scripts/fuzz.sh ... two targets at a time
#
# New inputs that reach new code go to fuzz/corpus/<target> (not committed); the committed
# seeds are in fuzz/seeds/<target>. A crash is saved in fuzz/artifacts/<target>/ and the run
# stops with a non-zero exit: replay it with `cargo fuzz run --dev -s none <target> <file>`,
# then add the input to the target's regression test (see docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sql json_lines csv_lines kafka_records checkpoint)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked -q cargo-fuzz
fi
# cargo-fuzz passes unstable flags (sanitizer coverage); this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# No sanitizer: the targets are safe Rust over FFI that libFuzzer's own checks and Rust's
# bounds and overflow checks (debug assertions are on) cover; it doubles the speed.
flags=(--dev -s none)
(cd fuzz && cargo fuzz build "${flags[@]}")
# The SQL target starts from every job the project has: the examples and the conformance cases.
mkdir -p fuzz/corpus/sql
for f in sql-examples/*.sql tests/conformance/*/job.sql; do
  cp "$f" "fuzz/corpus/sql/seed-$(echo "$f" | tr '/' '_')"
done
run() {
  local t="$1"
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/artifacts/$t"
  local status=0
  (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    >"artifacts/$t/last-run.log" 2>&1) || status=$?
  local runs crashes
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/artifacts/$t/last-run.log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(find "fuzz/artifacts/$t" -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
  echo "$t: ${seconds}s, ${runs} executions, exit ${status}, ${crashes} crash files in fuzz/artifacts/$t"
  return $status
}
failed=0
jobs="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
  if [ "$jobs" -gt 1 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
    run "$t" &
  else
    run "$t" || failed=1
  fi
done
wait || failed=1
exit $failed
