#!/usr/bin/env bash
# ThreadSanitizer run of the concurrency tests (the C ABI stress test and the
# core's threaded CPU paths). Needs a nightly toolchain with rust-src, because
# std itself must be rebuilt with the sanitizer (-Zbuild-std):
#   rustup toolchain install nightly && rustup component add rust-src --toolchain nightly
# Not part of scripts/test-all.sh (CI has no nightly); results are recorded in
# docs/CONCURRENCY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
export SAEPLUG_STRESS_MS="${SAEPLUG_STRESS_MS:-3000}"
# The GPU backend stays out: no Vulkan driver is visible (a driver is not
# instrumented, so its threads would only give false reports).
export VK_ICD_FILENAMES=/dev/null VK_DRIVER_FILES=/dev/null SAEPLUG_ALLOW_NO_GPU=1
cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan \
    -p saeplug-ffi --test stress --test abi -- --nocapture "$@"
cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan \
    -p saeplug-tests --test parity_cpu --test ito "$@"
# The canary: a deliberate race must be reported, or the runs above proved nothing.
if cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan \
    -p saeplug-ffi --test tsan_canary -- --ignored > target/tsan/canary.log 2>&1; then
    echo "tsan.sh: the deliberate race was NOT reported: ThreadSanitizer is not active" >&2
    exit 1
fi
grep -q "WARNING: ThreadSanitizer: data race" target/tsan/canary.log
echo "tsan.sh: canary race reported as expected; the stress and CPU runs above were clean"
