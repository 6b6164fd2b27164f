"""Every non-SAELens layout saeplug loads (Gemma Scope 1 params.npz and 2 folders,
sparsify top-k and group-max, pre-6.0 SAELens, layer_norm and constant_norm_rescale
inputs), written by tests/py/make_formats.py with expected outputs computed there in
float64 numpy, independently of saeplug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import saeplug
from conftest import REPO

TOL = 1e-4


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    out = tmp_path_factory.mktemp("formats")
    r = subprocess.run(
        [sys.executable, str(REPO / "tests" / "py" / "make_formats.py"), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    dirs = [Path(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(dirs) == 7, dirs
    return dirs


def test_formats_match_numpy(cases):
    for d in cases:
        exp = np.load(d / "expected.npz")
        x, want_f, want_r = exp["x"], exp["feature_acts"], exp["recon"]
        path = d / "params.npz" if (d / "params.npz").exists() else d
        with saeplug.Sae.open(path) as sae:
            f = sae.encode(x)
            assert np.max(np.abs(f - want_f)) <= TOL, d
            assert np.count_nonzero(f) > 0, f"{d}: no feature fired, test is vacuous"
            assert np.max(np.abs(sae.reconstruct(x) - want_r)) <= TOL, d
            codes = sae.encode_sparse(x)
            assert np.max(np.abs(codes.to_dense() - want_f)) <= TOL, d
            if sae.info["normalization"] == "none":
                assert np.max(np.abs(sae.decode(f) - want_r)) <= TOL, d
                assert np.max(np.abs(sae.decode(codes) - want_r)) <= TOL, d
            else:
                # Normalising SAEs need the encode's per-row statistics: decode
                # refuses, pointing at reconstruct.
                with pytest.raises(saeplug.InvalidArgumentError, match="reconstruct"):
                    sae.decode(f)
                with pytest.raises(saeplug.InvalidArgumentError, match="reconstruct"):
                    sae.decode_sparse(codes)
            assert sae.cfg["d_in"] == sae.d_in == x.shape[1]
