"""Steering-vector decomposition through the C ABI (saeplug_decompose_vector):
a vector built from known decoder rows (read here with the tests' own safetensors
reader) is recovered; the reported cosine and relative error equal numpy's on the
returned coefficients; bad input raises."""

from __future__ import annotations

import numpy as np
import pytest

import saeplug
from conftest import SAELENS, read_safetensors


def test_known_rows_are_recovered_and_the_errors_match_numpy() -> None:
    sae = saeplug.Sae.open(SAELENS / "standard")
    w = read_safetensors(SAELENS / "standard" / "sae_weights.safetensors")
    dec = w["W_dec"].astype(np.float64)
    v = -2.0 * dec[5] + 0.75 * dec[17]
    d = sae.decompose(v.astype(np.float32), k=6, solver="omp")
    assert set(int(i) for i in d.features[:2]) == {5, 17}
    got = dict(zip((int(i) for i in d.features), (float(c) for c in d.coefs)))
    assert abs(got[5] + 2.0) < 1e-3 and abs(got[17] - 0.75) < 1e-3
    # Strongest |coefficient| first.
    assert all(abs(d.coefs[j]) >= abs(d.coefs[j + 1]) for j in range(len(d.coefs) - 1))
    r = sum(float(c) * dec[int(i)] for i, c in zip(d.features, d.coefs))
    cos = float(v @ r / (np.linalg.norm(v) * np.linalg.norm(r)))
    rel = float(np.linalg.norm(v - r) / np.linalg.norm(v))
    assert abs(d.cosine - cos) < 1e-6 and abs(d.rel_error - rel) < 1e-6
    assert d.cosine > 0.9999
    # At most k features, every solver.
    for s in ("mp", "omp", "gp"):
        assert len(sae.decompose(v.astype(np.float32), k=3, solver=s).features) <= 3


def test_bad_decomposition_input_raises() -> None:
    sae = saeplug.Sae.open(SAELENS / "standard")
    v = np.ones(sae.d_in, np.float32)
    with pytest.raises(saeplug.ShapeError):
        sae.decompose(np.ones(sae.d_in + 1, np.float32))
    with pytest.raises(saeplug.DTypeError):
        sae.decompose(np.ones(sae.d_in, np.float64))
    bad = v.copy()
    bad[3] = np.nan
    with pytest.raises(saeplug.NonFiniteError):
        sae.decompose(bad)
    with pytest.raises(saeplug.InvalidArgumentError):
        sae.decompose(v, k=0)
    with pytest.raises(saeplug.InvalidArgumentError):
        sae.decompose(v, k=sae.d_sae + 1)
    with pytest.raises(saeplug.InvalidArgumentError):
        sae.decompose(v, solver="lasso")
