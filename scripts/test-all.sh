#!/usr/bin/env bash
# Every test of the project: formatting, lints, docs, and the whole test suite
# (SAELens fixtures, format tests, C consumer under ASan/UBSan and valgrind, CLI).
# Needs: Rust toolchain, gcc/g++, valgrind, python3 with numpy (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace -q
cargo test --workspace
