"""Every SAELens-written fixture through saeplug.Sae.open(...).encode/decode must match
SAELens's own feature_acts and recon (io.safetensors, written by SAELens 6.54.12)."""

from __future__ import annotations

import numpy as np
import pytest

import saeplug
from conftest import fixture_cases, fixture_io

TOL = 1e-4
CASES = fixture_cases()


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


@pytest.mark.parametrize("name,path", CASES, ids=[c[0] for c in CASES])
def test_dense_encode_decode_match_saelens(name, path):
    io = fixture_io(path)
    with saeplug.Sae.open(path) as sae:
        assert sae.d_in == io["x"].shape[1] and sae.d_sae == io["feature_acts"].shape[1]
        f = sae.encode(io["x"])
        assert f.dtype == np.float32 and f.shape == io["feature_acts"].shape
        assert max_err(f, io["feature_acts"]) <= TOL, name
        # Same support as SAELens: a feature firing or not is not a rounding matter.
        assert np.count_nonzero(f) == np.count_nonzero(io["feature_acts"]), name
        x_hat = sae.decode(f)
        assert max_err(x_hat, io["recon"]) <= TOL, name
        assert max_err(sae.reconstruct(io["x"]), io["recon"]) <= TOL, name
        assert max_err(sae(io["x"]), io["recon"]) <= TOL, name  # SAELens's sae(x)


@pytest.mark.parametrize("name,path", CASES, ids=[c[0] for c in CASES])
def test_sparse_encode_decode_match_saelens(name, path):
    io = fixture_io(path)
    sae = saeplug.Sae.open(path)
    codes = sae.encode_sparse(io["x"])
    assert codes.n_rows == io["x"].shape[0]
    assert codes.nnz == np.count_nonzero(io["feature_acts"])
    assert max_err(codes.to_dense(), io["feature_acts"]) <= TOL
    for r in range(codes.n_rows):
        idx, _ = codes.row(r)
        assert np.all(np.diff(idx.astype(np.int64)) > 0), "indices ascending"
    if sae.info["k"]:
        assert int(codes.l0().max()) <= sae.info["k"]
    assert max_err(sae.decode_sparse(codes), io["recon"]) <= TOL
    assert max_err(sae.decode(codes), io["recon"]) <= TOL
    # A plain (row_offsets, indices, values) tuple decodes the same.
    assert max_err(sae.decode_sparse(tuple(codes)), io["recon"]) <= TOL


@pytest.mark.parametrize("threads", [1, 2])
def test_explicit_cpu_contexts_match_saelens(threads):
    with saeplug.Context("cpu", threads=threads) as ctx:
        assert ctx.backend == "cpu"
        for name, path in CASES:
            io = fixture_io(path)
            sae = saeplug.Sae.open(path)
            assert max_err(sae.encode(io["x"], ctx=ctx), io["feature_acts"]) <= TOL, name
            assert max_err(sae.decode(io["feature_acts"], ctx=ctx), io["recon"]) <= TOL, name
            sae.ctx = ctx  # the SAE's own default context
            assert max_err(sae.encode(io["x"]), io["feature_acts"]) <= TOL, name


def test_one_row_and_views():
    name, path = CASES[0]
    io = fixture_io(path)
    sae = saeplug.Sae.open(path)
    # A 1-D input is one row and gives a 1-D result.
    f0 = sae.encode(io["x"][3])
    assert f0.shape == (sae.d_sae,)
    assert max_err(f0, io["feature_acts"][3]) <= TOL
    assert max_err(sae.decode(f0), io["recon"][3]) <= TOL
    # A non-contiguous view (every other row; a Fortran-order copy) is read correctly.
    assert max_err(sae.encode(io["x"][::2]), io["feature_acts"][::2]) <= TOL
    assert max_err(sae.encode(np.asfortranarray(io["x"])), io["feature_acts"]) <= TOL
    # A read-only array is fine for inputs.
    ro = io["x"].copy()
    ro.flags.writeable = False
    assert max_err(sae.encode(ro), io["feature_acts"]) <= TOL
    # Plain lists are read as float32.
    assert max_err(sae.encode(io["x"][:2].tolist()), io["feature_acts"][:2]) <= TOL
    # Zero rows give zero rows.
    assert sae.encode(np.empty((0, sae.d_in), np.float32)).shape == (0, sae.d_sae)


class _DLPackOnly:
    """An object exposing only the DLPack protocol (like a CPU torch tensor seen by
    a library that does not know torch), over a numpy array's memory."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class _ArrayInterfaceOnly:
    def __init__(self, a: np.ndarray) -> None:
        self.__array_interface__ = a.__array_interface__
        self._keep = a


def test_dlpack_and_array_protocol_inputs_are_read_without_copy(monkeypatch):
    name, path = CASES[0]
    io = fixture_io(path)
    sae = saeplug.Sae.open(path)
    x = io["x"].copy()
    seen = []
    real = saeplug._sae._encode

    def spy(ctx, s, xp, *rest):
        seen.append(xp)
        return real(ctx, s, xp, *rest)

    monkeypatch.setattr(saeplug._sae, "_encode", spy)
    addr = x.__array_interface__["data"][0]
    for wrapped in (x, _DLPackOnly(x), _ArrayInterfaceOnly(x)):
        f = sae.encode(wrapped)
        assert max_err(f, io["feature_acts"]) <= TOL
        assert seen[-1] == addr, f"{type(wrapped).__name__}: the library read a copy"


def test_torch_tensor_without_copy_if_torch_is_installed():
    torch = pytest.importorskip("torch")  # optional: torch is not a dependency
    name, path = CASES[0]
    io = fixture_io(path)
    sae = saeplug.Sae.open(path)
    t = torch.from_numpy(io["x"].copy())
    assert max_err(sae.encode(t), io["feature_acts"]) <= TOL
    with pytest.raises(saeplug.DTypeError):
        sae.encode(t.double())


def test_cfg_and_info():
    for name, path in CASES:
        sae = saeplug.Sae.open(path)
        assert sae.cfg["d_in"] == sae.d_in and sae.cfg["d_sae"] == sae.d_sae
        assert sae.info["zero_copy"] is True  # f32 fixtures map without a copy
        want = {"standard_nobdec": "standard"}.get(name, name)
        if name != SMOLLM2_NAME:
            assert sae.info["architecture"] == want
        assert sae.cfg["apply_b_dec_to_input"] == sae.info["apply_b_dec_to_input"]
        assert repr(sae).startswith("saeplug.Sae(")
        sae.close()
        assert sae.closed and "closed" in repr(sae)
        sae.close()  # twice is fine


SMOLLM2_NAME = "smollm2-l6-topk"


def test_smollm2_is_topk_32():
    sae = saeplug.Sae.open(dict(CASES)[SMOLLM2_NAME])
    assert sae.info["architecture"] == "topk" and sae.info["k"] == 32
    assert sae.info["topk_order"] == "topk_then_relu"


def test_encode_sparse_grows_its_buffers(monkeypatch):
    # A first capacity guess too small for the codes: the library reports the
    # exact need (BUFFER_TOO_SMALL) and the second call fits.
    monkeypatch.setattr(saeplug._sae, "_SPARSE_GUESS_PER_ROW", 1)
    for name, path in CASES:
        io = fixture_io(path)
        sae = saeplug.Sae.open(path)
        codes = sae.encode_sparse(io["x"])
        assert codes.nnz == np.count_nonzero(io["feature_acts"]), name
        assert max_err(codes.to_dense(), io["feature_acts"]) <= TOL, name
