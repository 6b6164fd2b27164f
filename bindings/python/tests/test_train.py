"""Training and evaluation through the C ABI: the trainer learns a planted
dictionary; checkpoint + resume equals an uninterrupted run bit for bit;
``train_store`` gives the hand-driven trainer's bits on the same rows;
``eval_store`` equals a numpy computation of the centred FVU and L0 from the
saved weights (read with the tests' own safetensors reader); bad input raises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import saeplug
from conftest import read_safetensors

D_IN, D_TRUE = 16, 24


def planted(n: int, seed: int) -> np.ndarray:
    """Sparse combinations of unit atoms: something a small SAE can learn."""
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((D_TRUE, D_IN))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = (rng.random((n, D_TRUE)) < 0.1) * rng.random((n, D_TRUE)) * 3
    return (codes @ atoms).astype(np.float32)


def numpy_encode(cfg: dict, w: dict, x: np.ndarray) -> np.ndarray:
    xin = x - w["b_dec"] if cfg.get("apply_b_dec_to_input", True) else x
    h = xin @ w["W_enc"] + w["b_enc"]
    k = int(cfg["k"])
    idx = np.argsort(-h, axis=1, kind="stable")[:, :k]
    f = np.zeros_like(h)
    rows = np.arange(h.shape[0])[:, None]
    f[rows, idx] = np.maximum(h[rows, idx], 0.0)
    return f


def load(folder: Path):
    cfg = json.loads((folder / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in read_safetensors(folder / "sae_weights.safetensors").items()}
    return cfg, w


def test_trainer_learns_and_saves_an_sae_saeplug_and_numpy_agree_on(tmp_path: Path) -> None:
    x = planted(4096, 0)
    t = saeplug.Trainer("topk", d_in=D_IN, d_sae=64, k=4, lr=3e-3, batch_size=256, total_steps=200, seed=3, threads=1)
    t.set_scale(x[:1024])
    t.save(tmp_path / "untrained")
    first = t.step(x[:256])
    for s in range(1, 200):
        last = t.step(x[(s % 16) * 256 : (s % 16 + 1) * 256])
    assert last.step == 200 and t.info()["steps_done"] == 200
    assert last.fvu < 0.5 * first.fvu, (first, last)
    t.save(tmp_path / "sae")
    held = planted(512, 1).astype(np.float64)

    def heldout_fvu(folder: Path) -> float:
        cfg, w = load(folder)
        f = numpy_encode(cfg, w, held)
        return float(((held - (f @ w["W_dec"] + w["b_dec"])) ** 2).sum() / ((held - held.mean(0)) ** 2).sum())

    before, after = heldout_fvu(tmp_path / "untrained"), heldout_fvu(tmp_path / "sae")
    assert after < 0.7 * before, (before, after)
    cfg, w = load(tmp_path / "sae")
    f = numpy_encode(cfg, w, held)
    sae = saeplug.Sae.open(tmp_path / "sae")
    np.testing.assert_allclose(sae.encode(held.astype(np.float32)), f, atol=1e-4)


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    x = planted(4096, 2)
    opts = dict(k=4, batch_size=128, total_steps=20, seed=5, threads=1)
    a = saeplug.Trainer("topk", D_IN, 48, **opts)
    a.set_scale(x)
    b = saeplug.Trainer("topk", D_IN, 48, **opts)
    b.set_scale(x)
    for s in range(10):
        a.step(x[s * 128 : (s + 1) * 128])
        b.step(x[s * 128 : (s + 1) * 128])
    b.save_checkpoint(tmp_path / "ck.safetensors")
    b.close()
    with pytest.raises(saeplug.ClosedError):
        b.step(x[:128])
    c = saeplug.Trainer.load_checkpoint(tmp_path / "ck.safetensors", threads=1)
    assert c.info()["steps_done"] == 10
    for s in range(10, 20):
        sa = a.step(x[s * 128 : (s + 1) * 128])
        sc = c.step(x[s * 128 : (s + 1) * 128])
        assert sa == sc
    a.save(tmp_path / "a")
    c.save(tmp_path / "c")
    wa = read_safetensors(tmp_path / "a" / "sae_weights.safetensors")
    wc = read_safetensors(tmp_path / "c" / "sae_weights.safetensors")
    for k in wa:
        assert np.array_equal(wa[k], wc[k]), k


def make_store(d: Path, x: np.ndarray, heldout: np.ndarray) -> None:
    with saeplug.StoreWriter(d, d_in=D_IN, hook_name="h", layer=0, context_length=16) as w:
        for split, rows in (("train", x), ("heldout", heldout)):
            n = rows.shape[0]
            w.append(rows, tokens=np.arange(n) % 100, seq=np.arange(n) // 16, pos=np.arange(n) % 16, split=split)
        w.finish()


def test_train_store_eval_store_and_cancel(tmp_path: Path) -> None:
    x, held = planted(3000, 4), planted(700, 5)
    make_store(tmp_path / "store", x, held)
    seen = []
    s = saeplug.train_store(
        tmp_path / "store", tmp_path / "out", arch="topk", d_sae=48, tokens=6000, k=4, lr=3e-3,
        batch_size=200, seed=1, threads=1, progress=lambda step, total, st: seen.append((step, total)),
        progress_every=5,
    )  # fmt: skip
    assert s.step == 30 and seen[-1] == (30, 30) and len(seen) == 6
    sae = saeplug.Sae.open(tmp_path / "out")
    r = saeplug.eval_store(sae, tmp_path / "store", split="heldout")
    # The same numbers in numpy from the saved weights.
    cfg, w = load(tmp_path / "out")
    h64 = held.astype(np.float64)
    f = numpy_encode(cfg, w, h64)
    fvu = ((h64 - (f @ w["W_dec"] + w["b_dec"])) ** 2).sum() / ((h64 - h64.mean(0)) ** 2).sum()
    assert r.rows == 700
    assert abs(r.fvu - fvu) < 1e-4 * max(1.0, fvu), (r.fvu, fvu)
    assert abs(r.l0 - (f > 0).sum(1).mean()) < 1e-9
    assert r.dead_latents == int(((f > 0).sum(0) == 0).sum())
    assert sum(r.histogram) == 48 - r.dead_latents
    # A callback that asks to stop: CancelledError, with the state kept.
    with pytest.raises(saeplug.CancelledError):
        saeplug.train_store(tmp_path / "store", tmp_path / "stop", d_sae=48, k=4, batch_size=200,
                            tokens=6000, progress=lambda *_: True, progress_every=2)  # fmt: skip
    assert (tmp_path / "stop" / "checkpoint.safetensors").is_file()
    # An exception in the callback stops the run and comes out as itself.
    def boom(*_: object) -> None:
        raise KeyError("from the callback")

    with pytest.raises(KeyError):
        saeplug.train_store(tmp_path / "store", tmp_path / "boom", d_sae=48, k=4, batch_size=200,
                            tokens=6000, progress=boom, progress_every=1)  # fmt: skip


def test_bad_training_input_raises(tmp_path: Path) -> None:
    with pytest.raises(saeplug.InvalidArgumentError, match="k"):
        saeplug.Trainer("topk", d_in=8, d_sae=16, k=32)
    with pytest.raises(saeplug.InvalidArgumentError):
        saeplug.Trainer("topk", d_in=8, d_sae=0)
    with pytest.raises(saeplug.InvalidArgumentError, match="unknown architecture"):
        saeplug.Trainer("gated", d_in=8, d_sae=16)
    with pytest.raises(saeplug.InvalidArgumentError, match="unknown training option"):
        saeplug.Trainer("topk", d_in=8, d_sae=16, learning_rate=1.0)
    t = saeplug.Trainer("topk", d_in=8, d_sae=16, k=2, threads=1)
    x = np.ones((4, 8), np.float32)
    x[2, 3] = np.nan
    with pytest.raises(saeplug.NonFiniteError):
        t.step(x)
    assert t.info()["steps_done"] == 0
    with pytest.raises(saeplug.ShapeError):
        t.step(np.ones((4, 9), np.float32))
    with pytest.raises(saeplug.DTypeError):
        t.step(np.ones((4, 8), np.float64))
    with pytest.raises(saeplug.SaeplugError):
        saeplug.train_store(tmp_path / "nothing", tmp_path / "o", d_sae=16, k=2)
    with pytest.raises(saeplug.SaeplugError):
        saeplug.Trainer.load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(saeplug.SaeplugError):
        saeplug.Trainer.load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(saeplug.InvalidArgumentError, match="split"):
        saeplug.eval_store(saeplug.Sae.open(Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "smollm2-l6-topk"), tmp_path, split="test")
