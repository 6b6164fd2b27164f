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
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
rm -f "$log"
echo "tests: $passed passed, $failed failed"
exit "$status"
