"""Hooks, recorders, control-vector export, solvers and the store writer through
Python, each checked against an independent numpy computation from the SAE's
weights read with the test's own safetensors reader (never against saeplug's
own output alone)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import saeplug
from conftest import SAELENS, SMOLLM2, fixture_io, read_gguf, read_safetensors

STD = SAELENS / "standard"


@pytest.fixture(scope="module")
def sae():
    return saeplug.Sae.open(STD)


@pytest.fixture(scope="module")
def weights():
    w = read_safetensors(STD / "sae_weights.safetensors")
    return {k: v.astype(np.float64) for k, v in w.items()}


@pytest.fixture(scope="module")
def x():
    return fixture_io(STD)["x"]


def ref_encode(w, x):
    """The standard SAE's encoder in float64 (apply_b_dec_to_input: true)."""
    return np.maximum((x.astype(np.float64) - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0.0)


def test_reference_matches_saelens(weights, x):
    # The numpy oracle itself agrees with SAELens, so the tests below may trust it.
    io = fixture_io(STD)
    assert np.max(np.abs(ref_encode(weights, x) - io["feature_acts"])) < 1e-4


def test_decoder_row(sae, weights):
    for i in (0, 10, 255):
        assert np.allclose(sae.decoder_row(i), weights["W_dec"][i], atol=1e-7)
    with pytest.raises(ValueError):
        sae.decoder_row(256)


def test_hook_add_on_positions(sae, weights, x):
    hook = saeplug.Hook(sae, layer=6)
    assert hook.layer == 6
    hook.add_range(4, 8).add(3, 8.0)
    y = x[:10].copy()
    before = y.copy()
    out = hook.apply(y, pos0=0)
    assert out is y
    want = before.astype(np.float64)
    want[4:8] += 8.0 * weights["W_dec"][3]
    assert np.max(np.abs(y - want)) < 1e-4
    # Absolute positions: a batch starting at position 6 edits its rows 0 and 1 only.
    y = before.copy()
    hook.apply(y, pos0=6)
    want = before.astype(np.float64)
    want[0:2] += 8.0 * weights["W_dec"][3]
    assert np.max(np.abs(y - want)) < 1e-4
    hook.close()


def test_hook_clamp_ablate_scale_error_preserving(sae, weights, x):
    y = x[:6].copy()
    f = ref_encode(weights, y)
    best = int(np.argmax(f[0]))
    fired = int(np.argmax((f > 0).sum(0)))
    for kind, value, target in (
        ("clamp", 2.0, lambda a: np.full_like(a, 2.0)),
        ("ablate", 0.0, lambda a: np.zeros_like(a)),
        ("scale", 3.0, lambda a: 3.0 * a),
    ):
        for feat in (best, fired):
            h = sae.hook(0).edit(kind, feat, value)
            z = y.copy()
            h.apply(z)
            # x + (f' - f) d_feat: the error term and every other feature kept.
            want = y.astype(np.float64) + np.outer(target(f[:, feat]) - f[:, feat], weights["W_dec"][feat])
            assert np.max(np.abs(z - want)) < 1e-4, (kind, feat)


def test_hook_positions_first_last_all(sae, weights, x):
    v = np.zeros(64, np.float32)
    v[0] = 1.0
    for kind, a, rows in (("first", 3, [0, 1, 2]), ("last", 0, [4]), ("all", 0, [0, 1, 2, 3, 4])):
        h = sae.hook(1).positions(kind, a).add_vector(v, 0.5)
        z = np.zeros((5, 64), np.float32)
        h.apply(z, pos0=0)
        assert sorted(np.nonzero(z[:, 0])[0].tolist()) == rows, kind
        assert np.all(z[rows, 0] == 0.5) and np.all(z[:, 1:] == 0)


def test_hook_replace_reconstruction_only_equals_reconstruct(sae, x):
    y = x[:5].copy()
    z = y.copy()
    sae.hook(0).replace("reconstruction_only").apply(z)
    assert np.max(np.abs(z - fixture_io(STD)["recon"][:5])) < 1e-4  # SAELens's recon
    z = y.copy()
    sae.hook(0).replace("with_error").apply(z)  # recon + (x - recon) = x
    assert np.max(np.abs(z - y)) < 1e-4


def test_hook_solver_then_encoder(sae, x):
    y = x[:3].copy()
    h = sae.hook(0).solver("gp", 16).ablate(5)
    z = y.copy()
    h.apply(z)
    # The GP codes' feature 5 is removed: x - a_5 d_5 (a_5 from the solve, which
    # fits x - b_dec on the decoder).
    r = sae.solve(y, k=16, solver="gp")
    a5 = r.codes.to_dense()[:, 5].astype(np.float64)
    want = y - np.outer(a5, sae.decoder_row(5))
    assert np.max(np.abs(z - want)) < 1e-3
    h.solver(None)  # back to the encoder
    with pytest.raises(ValueError):
        h.solver("gp", 0)


def test_hook_outlives_sae_and_applies_from_threads(weights, x):
    import threading

    s = saeplug.Sae.open(STD)
    h = s.hook(2).add(7, 1.0)
    s.close()
    results = {}

    def run(i):
        z = np.zeros((3, 64), np.float32)
        with saeplug.Context("cpu", 1) as ctx:
            h.apply(z, ctx=ctx)
        results[i] = z

    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for z in results.values():
        assert np.max(np.abs(z - weights["W_dec"][7])) < 1e-5
    assert len(results) == 4


def test_recorder_counts_means_and_top(sae, weights, x):
    f = ref_encode(weights, x)
    n = x.shape[0]
    rec = saeplug.Recorder(sae, top_n=3)
    rec.record(x[:20], pos0=0)
    rec.record(x[20:], pos0=20)
    for feat in (0, int(np.argmax(f.max(0))), 100, 255):
        st = rec.feature(feat)
        fired = f[:, feat] > 0
        assert st.count == int(fired.sum())
        assert abs(st.mean - f[:, feat].mean()) < 1e-4
        assert abs(st.max - f[:, feat].max()) < 1e-4
    d = rec.to_dict()
    text = json.dumps(d)
    assert "firing_count" in text and "top" in text
    with pytest.raises(ValueError):
        rec.feature(256)
    rec.close()
    assert n == 32


def test_recorder_top_positions(sae, weights, x, tmp_path):
    f = ref_encode(weights, x)
    rec = sae.recorder(top_n=3)
    rec.record(x, pos0=100)
    p = tmp_path / "features.json"
    rec.write_json(p)
    data = json.loads(p.read_text())
    feat = int(np.argmax(f.max(0)))
    assert data["d_sae"] == 256 and data["tokens"] == 32
    assert data["firing_count"] == (f > 0).sum(0).tolist()
    assert np.allclose(data["mean_activation"], f.mean(0), atol=1e-4)
    fired = (f > 0).sum(0)
    mwf = np.where(fired > 0, f.sum(0) / np.maximum(fired, 1), 0.0)
    assert np.allclose(data["mean_when_firing"], mwf, atol=1e-4)
    assert set(data["top"]) == {str(i) for i in np.nonzero(fired)[0]}  # features that never fired: none
    top = data["top"][str(feat)]
    want = np.argsort(-f[:, feat], kind="stable")[:3]
    assert [int(t[0]) for t in top] == [100 + int(i) for i in want]
    assert np.allclose([t[1] for t in top], f[want, feat], atol=1e-4)


def test_export_cvec_round_trip(sae, weights, tmp_path):
    dirs = np.stack([4.0 * sae.decoder_row(3), -2.0 * sae.decoder_row(9)]).astype(np.float32)
    p = tmp_path / "steer.gguf"
    saeplug.export_cvec(p, dirs, layers=[6, 7])
    kv, tensors = read_gguf(p)
    assert kv.get("general.architecture") == "controlvector"
    assert np.allclose(tensors["direction.6"].reshape(-1), 4.0 * weights["W_dec"][3], atol=1e-6)
    assert np.allclose(tensors["direction.7"].reshape(-1), -2.0 * weights["W_dec"][9], atol=1e-6)
    with pytest.raises(ValueError):
        saeplug.export_cvec(p, dirs, layers=[0, 1])  # llama.cpp has no direction.0
    with pytest.raises(ValueError):
        saeplug.export_cvec(p, dirs, layers=[6])  # one layer per direction
    with pytest.raises(ValueError):
        saeplug.export_cvec(p, dirs, layers=[6, 6])
    with pytest.raises(TypeError):
        saeplug.export_cvec(p, dirs.astype(np.float64), layers=[6, 7])
    with pytest.raises(OSError):
        saeplug.export_cvec(tmp_path / "no" / "such" / "dir" / "x.gguf", dirs, layers=[6, 7])


def test_solvers_against_numpy_least_squares(sae, weights, x):
    y = x[:4]
    target = y.astype(np.float64) - weights["b_dec"]
    for solver in ("mp", "omp", "gp"):
        r = sae.solve(y, k=8, solver=solver)
        assert r.codes.n_rows == 4 and int(r.codes.l0().max()) <= 8
        assert r.iters.shape == (4,) and r.residuals.shape == (4,)
        a = r.codes.to_dense().astype(np.float64)
        resid = np.linalg.norm(target - a @ weights["W_dec"], axis=1)
        assert np.allclose(resid, r.residuals, rtol=1e-3, atol=1e-3), solver
        assert np.all(a >= 0)
        if solver == "omp":
            # OMP's values are the nonnegative least-squares fit on its support;
            # with every value positive this is the plain least-squares fit.
            for row in range(4):
                idx, val = r.codes.row(row)
                D = weights["W_dec"][idx.astype(int)]
                coef, *_ = np.linalg.lstsq(D.T, target[row], rcond=None)
                if np.all(coef > 0):
                    assert np.allclose(coef, val, rtol=1e-3, atol=1e-3)
    signed = sae.solve(y, k=8, solver="omp", nonnegative=False)
    assert np.any(signed.codes.values < 0) or np.all(signed.residuals <= r.residuals + 1e-4)


def test_store_writer_round_trip(tmp_path):
    d = tmp_path / "acts"
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((5, 8)).astype(np.float32)
    acts[2, 3] = np.nan  # skipped, counted
    with saeplug.StoreWriter(d, d_in=8, shard_rows=2, hook_name="l_out-6", layer=6, context_length=16) as w:
        w.set_metadata("corpus", "test")
        w.append(acts, tokens=[10, 11, 12, 13, 14], seq=[0, 0, 0, 1, 1], pos=[1, 2, 3, 1, 2])
        w.append(acts[:1], tokens=[99], seq=[2], pos=[1], split="heldout")
        assert w.counts() == (4, 1, 1)
        with pytest.raises(ValueError):
            w.append(acts, tokens=[1, 2], seq=[0, 0], pos=[0, 1])  # 5 rows, 2 tokens
        with pytest.raises(ValueError):
            w.append(acts, tokens=[1] * 5, seq=[0] * 5, pos=[0] * 5, split="test")
        w.finish()
        with pytest.raises(ValueError):
            w.finish()  # once only
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["metadata"]["corpus"] == "test"
    rows = []
    for shard in sorted(d.glob("*.safetensors")):
        t = read_safetensors(shard)
        big = [v for v in t.values() if v.ndim == 2]
        rows.extend(big[0].tolist() if big else [])
    kept = np.concatenate([acts[[0, 1, 3, 4]], acts[:1]])
    got = np.array(rows, np.float32)
    assert got.shape == kept.shape
    # Train rows then held-out rows, whatever the shard names' order.
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, kept.tolist()))


def test_real_sae_steering_with_smollm2(tmp_path):
    # The real SAE: a clamp edit on a feature that fires moves exactly along its decoder row.
    io = fixture_io(SMOLLM2)
    sae = saeplug.Sae.open(SMOLLM2)
    y = io["x"][:4].copy()
    f = io["feature_acts"][:4]
    feat = int(np.argmax(f[0]))
    z = y.copy()
    sae.hook(6).clamp(feat, 0.0).apply(z)
    want = y.astype(np.float64) - np.outer(f[:, feat], sae.decoder_row(feat))
    assert np.max(np.abs(z - want)) < 1e-3


class _DLPackOnly:
    """Only the DLPack protocol (what a CPU torch tensor offers a library that does not
    know torch), over a numpy array's memory."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_hook_applies_in_place_through_dlpack(sae, weights):
    z = np.zeros((2, 64), np.float32)
    wrapped = _DLPackOnly(z)
    assert sae.hook(0).add(5, 2.0).apply(wrapped) is wrapped
    assert np.max(np.abs(z - 2.0 * weights["W_dec"][5])) < 1e-5  # the caller's memory changed
