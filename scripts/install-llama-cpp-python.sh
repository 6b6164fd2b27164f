#!/usr/bin/env bash
# Install llama-cpp-python 0.3.36 (the version whose vendored llama.cpp
# scripts/build-llama.sh builds) into a Python environment WITHOUT compiling
# llama.cpp again: its CMake project is told not to build libllama
# (-DLLAMA_BUILD=OFF, -DLLAVA_BUILD=OFF), so the package installs its Python files
# only (seconds), and at run time it loads the cached build through
#   LLAMA_CPP_LIB_PATH=${SAEPLUG_LLAMA_DIR:-$HOME/.cache/saeplug/llama}/build/bin
# (llama_cpp/llama_cpp.py reads that variable). saeplug.llama_cpp needs exactly
# that pairing: its adapter (libsaeplug_llama.so, bindings/llama.cpp/build.sh) is
# compiled against the same build and refuses another libllama.
#   bash scripts/install-llama-cpp-python.sh [PYTHON] [EXTRA PIP ARGS...]
# PYTHON defaults to python3 (use a virtual environment's python). Uses the sdist
# build-llama.sh downloaded into the cache when it is there, else PyPI. Prints the
# LLAMA_CPP_LIB_PATH to use.
set -euo pipefail
LCP_VERSION=0.3.36
py="${1:-python3}"
shift || true
dir="${SAEPLUG_LLAMA_DIR:-$HOME/.cache/saeplug/llama}"
sdist="$dir/dl/llama_cpp_python-$LCP_VERSION.tar.gz"
[ -f "$sdist" ] || sdist="llama-cpp-python==$LCP_VERSION"
CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" \
  "$py" -m pip install -q --disable-pip-version-check --no-binary llama-cpp-python "$sdist" "$@"
if [ ! -f "$dir/build/bin/libllama.so" ]; then
  echo "install-llama-cpp-python.sh: warning: $dir/build/bin/libllama.so is missing (bash scripts/build-llama.sh)" >&2
fi
echo "$dir/build/bin"
