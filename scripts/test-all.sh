#!/usr/bin/env bash
# Every test of the project: formatting, lints, docs, and the whole test suite
# (SAELens fixtures, format tests, C consumer under ASan/UBSan and valgrind, GPU on
# lavapipe, llama.cpp engine, CLI). Works on a fresh Debian 12 machine by itself:
# scripts/setup.sh first installs or builds whatever is missing (a no-op when all is
# there) and exports XDG_RUNTIME_DIR and SAEPLUG_LLAMA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace -q
log="$(mktemp)"
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The Python package: a fresh venv, `pip install ./bindings/python pytest`, pytest.
# Built with the dev profile: cargo test above has just built that library, so the
# package reuses it instead of a release build of its own (minutes on 2 cores).
echo "== Python package (bindings/python)"
SAEPLUG_PROFILE=debug bash scripts/test-python.sh 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# Every CPU ISA level this machine runs, forced through SAEPLUG_CPU_ISA: the
# SAELens fixtures and the f64-reference parity tests once per level (the default
# run above used the fastest).
for isa in portable avx2 avx512 neon; do
  if SAEPLUG_CPU_ISA=$isa ./target/debug/saeplug bench encode --d-in 8 --d-sae 16 \
       --batch 1 --iters 1 --no-peer --no-roofline >/dev/null 2>&1; then
    echo "== SAEPLUG_CPU_ISA=$isa"
    SAEPLUG_CPU_ISA=$isa cargo test -p saeplug-tests --test fixtures --test parity_cpu \
      --test backend_ops --test ito --test steering 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  else
    echo "== SAEPLUG_CPU_ISA=$isa: not available on this CPU, skipped"
  fi
done
# The NEON kernels type-check for aarch64 (cargo check + clippy, no linking).
if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "== aarch64 (NEON) check"
  cargo clippy -q -p saeplug --no-default-features --target aarch64-unknown-linux-gnu -- -D warnings \
    || status=1
else
  echo "== aarch64 target not installed: NEON type-check skipped"
fi
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
rm -f "$log"
echo "tests: $passed passed, $failed failed"
exit "$status"
