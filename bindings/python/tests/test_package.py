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

MODULES = ["saeplug", "saeplug._errors", "saeplug._sae", "saeplug._steer", "saeplug._store"]


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


def test_the_gil_is_released_during_a_call():
    # While one thread runs a long encode, a pure-Python thread keeps counting.
    # (Fails if the call held the GIL: the counter would stand still meanwhile.)
    sae = saeplug.Sae.open(FIXTURES / "smollm2-l6-topk")
    x = np.random.default_rng(0).standard_normal((4096, sae.d_in), dtype=np.float32)
    ctx = saeplug.Context("cpu", 1)
    sae.encode(x[:8], ctx=ctx)
    started, done = threading.Event(), threading.Event()
    ticks = []

    def count():
        started.set()
        n = 0
        while not done.is_set():
            n += 1
        ticks.append(n)

    t = threading.Thread(target=count)
    t.start()
    started.wait()
    import time

    t0 = time.perf_counter()
    sae.encode(x, ctx=ctx)  # several hundred ms on one thread
    dt = time.perf_counter() - t0
    done.set()
    t.join()
    # In the GIL-held case the counter thread gets at most the switch interval
    # (5 ms) of time before the call; released, it counts throughout.
    assert dt > 0.02, f"encode too quick ({dt * 1e3:.1f} ms) for this check"
    assert ticks[0] > 1000, ticks


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
