#!/usr/bin/env bash
# The Python package's tests (bindings/python): a fresh virtual environment,
# `pip install ./bindings/python pytest` (its build step runs cargo for
# libsaeplug_ffi and ships the library inside the package), then pytest on
# bindings/python/tests. Part of scripts/test-all.sh; arguments go to pytest.
# Needs python3-venv (scripts/setup.sh installs it) and PyPI for numpy, pytest
# and setuptools. SAEPLUG_PROFILE=debug builds the library with cargo's dev
# profile instead of --release (faster to build, slower to run).
# The llama-cpp-python tests (tests/test_llama_cpp.py, test_server.py) also need
# the llama.cpp cache (SAEPLUG_LLAMA_DIR, scripts/setup.sh), the saeplug-llama
# tool with its libsaeplug_llama.so (bindings/llama.cpp/build.sh, same profile),
# llama-cpp-python installed against that cache without compiling llama.cpp
# (scripts/install-llama-cpp-python.sh, seconds) and the openai client.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d "${TMPDIR:-/tmp}/saeplug-pyvenv.XXXXXX")"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check ./bindings/python pytest openai
flag=""
[ "${SAEPLUG_PROFILE:-release}" = debug ] || flag="--release"
SAEPLUG_LLAMA_TOOL="$(bash bindings/llama.cpp/build.sh ${flag:+"$flag"} | tail -n 1)"
LLAMA_CPP_LIB_PATH="$(bash scripts/install-llama-cpp-python.sh "$venv/bin/python" | tail -n 1)"
export SAEPLUG_LLAMA_TOOL LLAMA_CPP_LIB_PATH
"$venv/bin/python" -m pytest -q bindings/python/tests "$@"
