"""The installed package: its docstring examples run, its library is the one it
ships, and calls release the GIL (other Python threads run meanwhile)."""

from __future__ import annotations

import doctest
import os
import threading

import numpy as np
import pytest

import saeplug
from conftest import FIXTURES, SAELENS, fixture_io

MODULES = ["saeplug", "saeplug._errors", "saeplug._sae", "saeplug._steer", "saeplug._store", "saeplug._train"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    import importlib

    mod = importlib.import_module(name)
    r = doctest.testmod(
        mod,
        extraglobs={"FIXTURES": str(FIXTURES)},
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert r.failed == 0, f"{name}: {r.failed} of {r.attempted} doctest examples failed"


def test_every_public_item_has_a_docstring():
    for name in saeplug.__all__:
        obj = getattr(saeplug, name)
        assert obj.__doc__ and obj.__doc__.strip(), name


def test_library_is_shipped_inside_the_package():
    pkg = os.path.dirname(saeplug.__file__)
    assert os.path.isfile(os.path.join(pkg, "py.typed"))
    if os.environ.get("SAEPLUG_LIBRARY"):
        pytest.skip("SAEPLUG_LIBRARY overrides the packaged library (development run)")
    assert os.path.dirname(saeplug.library_path()) == pkg
    assert os.path.isfile(saeplug.library_path())
    assert saeplug.abi_version()[0] == 1


def test_threads_share_an_sae_with_their_own_contexts():
    path = SAELENS / "topk"
    io = fixture_io(path)
    sae = saeplug.Sae.open(path)
    shared = saeplug.Context("cpu", 1)
    out, errors = {}, []

    def run(i):
        try:
            own = saeplug.Context("cpu", 1)
            for _ in range(20):
                a = sae.encode(io["x"], ctx=own)
                b = sae.encode(io["x"], ctx=shared)  # one context, many threads: calls wait in turn
                c = sae.encode(io["x"])  # this thread's default context
            out[i] = (a, b, c)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors, errors
    for a, b, c in out.values():
        for m in (a, b, c):
            assert np.max(np.abs(m - io["feature_acts"])) <= 1e-4


def _progress_during(call) -> "tuple[int, float]":
    """Run ``call()`` while a pure-Python thread records a timestamp every 1000 loop
    turns; return how many stamps fall in the middle 40% of the call and the call's
    duration. (Not the whole call: just before and just after the foreign call the
    calling thread hands the GIL over at its next switch-interval check, so the
    counter runs there for some milliseconds whatever the call does.)"""
    import time

    stamps = []
    started, done = threading.Event(), threading.Event()

    def count():
        started.set()
        n = 0
        while not done.is_set():
            n += 1
            if n % 1000 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=count)
    t.start()
    started.wait()
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    done.set()
    t.join()
    dt = t1 - t0
    return sum(1 for s in stamps if t0 + 0.3 * dt < s < t1 - 0.3 * dt), dt


def test_the_gil_is_released_during_a_call():
    import ctypes

    sae = saeplug.Sae.open(FIXTURES / "smollm2-l6-topk")
    x = np.random.default_rng(0).standard_normal((4096, sae.d_in), dtype=np.float32)
    ctx = saeplug.Context("cpu", 1)
    sae.encode(x[:8], ctx=ctx)
    inside, dt = _progress_during(lambda: sae.encode(x, ctx=ctx))
    assert dt > 0.1, f"encode too quick ({dt * 1e3:.1f} ms) for this check"
    assert inside >= 3, f"a Python thread made no progress during a {dt * 1e3:.0f} ms encode"
    # Control: the same C function loaded with ctypes.PyDLL, which keeps the GIL:
    # the detector must see no progress, or it proves nothing above.
    held = ctypes.PyDLL(saeplug.library_path()).saeplug_ctx_encode
    held.restype = saeplug._lib.lib.saeplug_ctx_encode.restype
    held.argtypes = saeplug._lib.lib.saeplug_ctx_encode.argtypes
    real = saeplug._sae._encode
    saeplug._sae._encode = held
    try:
        inside_held, dt = _progress_during(lambda: sae.encode(x, ctx=ctx))
    finally:
        saeplug._sae._encode = real
    assert dt > 0.1 and inside_held == 0, (inside_held, dt)


def test_readme_python_example_runs():
    """The README's five-line example, with its placeholder path replaced by a fixture."""
    from conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    assert "saeplug.Sae.open(" in code and "sae.encode" in code and "sae.decode" in code
    code = code.replace('"path/to/sae"', repr(str(SAELENS / "standard")))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["f"].shape == (4, 256) and ns["x_hat"].shape == (4, 64)


def test_missing_or_foreign_library_is_a_clear_import_error(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, SAEPLUG_LIBRARY=str(tmp_path / "nope.so"))
    r = subprocess.run([sys.executable, "-c", "import saeplug"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "ImportError" in r.stderr and "nope.so" in r.stderr
    assert "pip install ./bindings/python" in r.stderr
    # A shared library that is not saeplug's (numpy's own extension module):
    # ImportError naming the missing saeplug_abi_version, no crash.
    import glob

    other = glob.glob(os.path.join(os.path.dirname(np.__file__), "_core", "_multiarray_umath*.so")) + glob.glob(
        os.path.join(os.path.dirname(np.__file__), "core", "_multiarray_umath*.so")
    )
    assert other, "numpy's extension module not found"
    env["SAEPLUG_LIBRARY"] = other[0]
    r = subprocess.run([sys.executable, "-c", "import saeplug"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "not a loadable saeplug library" in r.stderr, r.stderr
    assert "saeplug_abi_version" in r.stderr
