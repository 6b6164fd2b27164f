#!/usr/bin/env bash
# The Python package's tests (bindings/python): a fresh virtual environment,
# `pip install ./bindings/python pytest` (its build step runs cargo for
# libsaeplug_ffi and ships the library inside the package), then pytest on
# bindings/python/tests. Part of scripts/test-all.sh; arguments go to pytest.
# Needs python3-venv (scripts/setup.sh installs it) and PyPI for numpy, pytest
# and setuptools. SAEPLUG_PROFILE=debug builds the library with cargo's dev
# profile instead of --release (faster to build, slower to run).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d "${TMPDIR:-/tmp}/saeplug-pyvenv.XXXXXX")"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check ./bindings/python pytest
"$venv/bin/python" -m pytest -q bindings/python/tests "$@"
