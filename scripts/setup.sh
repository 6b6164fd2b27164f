#!/usr/bin/env bash
# Install or build everything the test suite needs on a fresh Debian 12 machine,
# once: every step checks first and is skipped when already done, so a re-run takes
# about a second. The one list of what the tests need; scripts/test-all.sh and
# .ci/run both use it.
#   bash scripts/setup.sh          install, then print the environment the tests use
#   source scripts/setup.sh        install, and export that environment into this shell
# Exports: XDG_RUNTIME_DIR (Mesa's Vulkan loader wants one; lavapipe is then the
# adapter wgpu finds) and SAEPLUG_LLAMA_DIR (llama.cpp + SmolLM2-135M, built by
# scripts/build-llama.sh into ~/.cache/saeplug/llama unless already set).
# As root, apt-get runs directly; otherwise through sudo.

saeplug_setup() {
  local root apt_pkgs py_mods sudo missing p
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  # python3-doc and fortunes-min: real English text for the capture tests' corpus.
  # python3-venv: scripts/test-python.sh installs the Python package into a fresh venv.
  # chromium + chromium-driver: the dashboard test drives a real headless browser
  # (selenium, from pip, talks to Debian's chromedriver; no driver download).
  apt_pkgs="gcc g++ cmake make pkg-config valgrind python3 python3-pip python3-venv mesa-vulkan-drivers libvulkan1 python3-doc fortunes-min chromium chromium-driver"
  py_mods="numpy safetensors gguf selenium"

  # 1. System packages (dpkg's status is the check; apt-get only runs when one is
  # missing, or removed with its configuration left behind).
  missing=""
  for p in $apt_pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    sudo=""
    if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
    echo "setup: apt-get install$missing" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || return 1
  fi

  # 2. Python modules the tests' reference readers use. Debian's python3 is
  # "externally managed" (PEP 668): install into the user site with pip's override.
  if ! python3 -c "import numpy, safetensors, gguf, selenium" 2>/dev/null; then
    echo "setup: pip install $py_mods" >&2
    # shellcheck disable=SC2086
    python3 -m pip install -q $py_mods 2>/dev/null ||
      PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --user $py_mods || return 1
    python3 -c "import numpy, safetensors, gguf, selenium" || return 1
  fi

  # 3. Rust components scripts/test-all.sh runs (cargo fmt, cargo clippy).
  if ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
    echo "setup: rustup component add clippy rustfmt" >&2
    rustup component add clippy rustfmt || return 1
  fi
  # The aarch64 standard library, so the NEON kernels type-check (optional: a
  # machine that cannot fetch it skips that check, and test-all.sh says so).
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    echo "setup: rustup target add aarch64-unknown-linux-gnu" >&2
    rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
      || echo "setup: aarch64 target unavailable; the NEON check will be skipped" >&2
  fi

  # 4. Runtime dir for the Vulkan loader.
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/saeplug-xdg-$(id -u)}"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR" || return 1

  # 5. llama.cpp and the model (build-llama.sh skips every finished step itself).
  local llama
  llama="$(bash "$root/scripts/build-llama.sh" | tail -n 1)" || return 1
  [ -f "$llama/build/bin/libllama.so" ] && [ -f "$llama/model.gguf" ] || {
    echo "setup: llama.cpp build missing in $llama" >&2
    return 1
  }
  export SAEPLUG_LLAMA_DIR="$llama"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run as a program.
  set -euo pipefail
  saeplug_setup
  echo "export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
  echo "export SAEPLUG_LLAMA_DIR=$SAEPLUG_LLAMA_DIR"
else
  # Sourced: export into the caller's shell; fail the caller when a step failed.
  saeplug_setup || { echo "setup: failed" >&2; return 1; }
  unset -f saeplug_setup
fi
