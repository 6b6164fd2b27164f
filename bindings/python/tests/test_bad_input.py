"""Bad input raises clear exceptions (with the status and a message naming the
problem), never crashes the interpreter; a failing call leaves outputs untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import saeplug
from conftest import SAELENS, SMOLLM2, fixture_io

STD = SAELENS / "standard"


@pytest.fixture(scope="module")
def sae():
    s = saeplug.Sae.open(STD)
    yield s
    s.close()


@pytest.fixture(scope="module")
def x():
    return fixture_io(STD)["x"]


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8, bool, ">f4"])
def test_wrong_dtype(sae, x, dtype):
    bad = x.astype(dtype)
    with pytest.raises(saeplug.DTypeError) as e:
        sae.encode(bad)
    assert isinstance(e.value, TypeError) and isinstance(e.value, saeplug.SaeplugError)
    assert e.value.status == saeplug.Status.INVALID_ARGUMENT
    assert "float32" in str(e.value) and str(np.dtype(dtype)) in str(e.value)
    with pytest.raises(TypeError):
        sae.decode(np.zeros((1, sae.d_sae), dtype))
    with pytest.raises(TypeError):
        sae.reconstruct(bad)
    with pytest.raises(TypeError):
        sae.encode_sparse(bad)
    with pytest.raises(TypeError):
        sae.solve(bad, k=4)


def test_object_arrays_and_strings(sae):
    with pytest.raises(TypeError):
        sae.encode(np.array([object()] * 64))
    with pytest.raises(TypeError):
        sae.encode("not an array")
    with pytest.raises(ValueError):
        sae.encode([[1.0] * 64, [1.0] * 3])  # ragged


@pytest.mark.parametrize(
    "shape",
    [(64 + 1,), (63,), (2, 63), (2, 65), (2, 2, 64), (), (0,), (64, 2)],
)
def test_wrong_shape(sae, shape):
    with pytest.raises(saeplug.ShapeError) as e:
        sae.encode(np.zeros(shape, np.float32))
    assert isinstance(e.value, ValueError)
    assert "d_in = 64" in str(e.value) or "expected" in str(e.value)


def test_wrong_shape_decode(sae):
    with pytest.raises(ValueError, match="d_sae = 256"):
        sae.decode(np.zeros((2, 255), np.float32))
    with pytest.raises(ValueError):
        sae.decode(np.zeros((2, 64), np.float32))  # an x where codes belong


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(sae, x, bad):
    y = x.copy()
    y[5, 7] = bad
    with pytest.raises(saeplug.NonFiniteError) as e:
        sae.encode(y)
    assert isinstance(e.value, ValueError)
    assert e.value.status == saeplug.Status.NON_FINITE
    assert e.value.message  # the library's message
    with pytest.raises(saeplug.NonFiniteError):
        sae.reconstruct(y)
    with pytest.raises(saeplug.NonFiniteError):
        sae.encode_sparse(y)
    with pytest.raises(ValueError):
        sae.solve(y, k=4)
    f = np.zeros((2, sae.d_sae), np.float32)
    f[1, 3] = bad
    with pytest.raises(ValueError) as e2:
        sae.decode(f)
    assert isinstance(e2.value, saeplug.SaeplugError)


def test_missing_file():
    with pytest.raises(FileNotFoundError) as e:
        saeplug.Sae.open("/nonexistent/sae/folder")
    assert isinstance(e.value, saeplug.SaeNotFoundError)
    assert e.value.status == saeplug.Status.IO
    assert "/nonexistent/sae/folder" in str(e.value)


def test_not_an_sae(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(saeplug.SaeplugError) as e:
        saeplug.Sae.open(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value) or e.value.message


def test_corrupt_weights(tmp_path):
    d = tmp_path / "sae"
    shutil.copytree(STD, d)
    w = d / "sae_weights.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(saeplug.SaeFormatError) as e:
        saeplug.Sae.open(d)
    assert isinstance(e.value, ValueError)
    assert e.value.status in (saeplug.Status.FORMAT, saeplug.Status.SHAPE, saeplug.Status.MISSING_TENSOR)
    (d / "cfg.json").write_text('{"architecture": "nonsense", "d_in": 64, "d_sae": 256}')
    w.write_bytes(data)
    with pytest.raises(saeplug.SaeplugError):
        saeplug.Sae.open(d)


def test_path_with_nul():
    with pytest.raises(ValueError, match="NUL"):
        saeplug.Sae.open("bad\0path")


def test_misaligned_buffer(sae, x):
    raw = bytearray(x.nbytes + 4)
    y = np.frombuffer(raw, dtype=np.float32, count=x.size, offset=1).reshape(x.shape)
    assert not y.flags.aligned and y.flags.c_contiguous
    y[...] = x
    with pytest.raises(saeplug.MisalignedError) as e:
        sae.encode(y)
    assert isinstance(e.value, ValueError) and e.value.status == saeplug.Status.MISALIGNED


def test_closed_handles(x):
    s = saeplug.Sae.open(STD)
    s.close()
    with pytest.raises(saeplug.ClosedError):
        s.encode(x)
    with pytest.raises(ValueError):
        s.decoder_row(0)
    ctx = saeplug.Context("cpu", 1)
    ctx.close()
    s2 = saeplug.Sae.open(STD)
    with pytest.raises(saeplug.ClosedError):
        s2.encode(x, ctx=ctx)
    with pytest.raises(ValueError):
        s2.solve(x, 4, ctx=ctx)
    h = s2.hook(0)
    h.close()
    with pytest.raises(saeplug.ClosedError):
        h.add(1, 1.0)
    with pytest.raises(saeplug.ClosedError):
        h.apply(x.copy())


def test_bad_contexts(sae, x):
    with pytest.raises(ValueError, match="backend"):
        saeplug.Context("tpu")
    with pytest.raises(ValueError):
        saeplug.Context("cpu", threads=-1)
    with pytest.raises(saeplug.InvalidArgumentError) as e:
        saeplug.Context("cpu", threads=100000)  # above the library's 256
    assert "threads" in str(e.value)
    with pytest.raises(ValueError, match="Context"):
        sae.encode(x, ctx="cpu")


def test_bad_solver_arguments(sae, x):
    with pytest.raises(ValueError, match="solver"):
        sae.solve(x, k=4, solver="lasso")
    for k in (0, sae.d_sae + 1, -1, 2.5):
        with pytest.raises(ValueError):
            sae.solve(x, k=k)
    with pytest.raises(ValueError):
        sae.solve(x, k=4, tol=float("nan"))


def test_bad_sparse_codes(sae, x):
    codes = sae.encode_sparse(x[:2])
    bad_idx = codes.indices.copy()
    bad_idx[0] = sae.d_sae  # out of range
    with pytest.raises(saeplug.InvalidArgumentError) as e:
        sae.decode_sparse((codes.row_offsets, bad_idx, codes.values))
    assert "256" in str(e.value) or "d_sae" in str(e.value)
    with pytest.raises(ValueError):
        sae.decode_sparse((codes.row_offsets[::-1].copy(), codes.indices, codes.values))  # offsets decreasing
    with pytest.raises(ValueError):
        sae.decode_sparse((codes.row_offsets, codes.indices.astype(np.int64) - 1000, codes.values))
    with pytest.raises(TypeError):
        sae.decode_sparse((codes.row_offsets, codes.indices.astype(np.float32), codes.values))
    with pytest.raises(ValueError):
        sae.decode_sparse((codes.row_offsets, codes.indices, codes.values[:-1]))
    with pytest.raises(ValueError):
        sae.decode_sparse("nonsense")
    other = saeplug.SparseCodes(codes.row_offsets, codes.indices, codes.values, d_sae=7)
    with pytest.raises(ValueError, match="d_sae"):
        sae.decode_sparse(other)


def test_failed_hook_leaves_x_untouched(sae, x):
    h = sae.hook(6).add(3, 2.0)
    y = x[:4].copy()
    y[2, 5] = np.nan
    before = y.copy()
    with pytest.raises(saeplug.NonFiniteError):
        h.apply(y)
    assert np.array_equal(y, before, equal_nan=True)
    # In place needs a writable contiguous float32 array: never a silent copy.
    with pytest.raises(ValueError, match="in place"):
        h.apply(np.asfortranarray(x[:4]))
    ro = x[:4].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="in place"):
        h.apply(ro)
    with pytest.raises(TypeError):
        h.apply(x[:4].astype(np.float64))
    with pytest.raises(ValueError):
        h.add(sae.d_sae, 1.0)  # no such feature
    with pytest.raises(ValueError):
        h.edit("boost", 1, 1.0)
    with pytest.raises(ValueError):
        h.add(1, float("nan"))
    with pytest.raises(ValueError):
        h.positions("range", 5, 5)  # empty
    with pytest.raises(ValueError):
        h.add_vector(np.ones(63, np.float32))
    with pytest.raises(ValueError):
        h.replace("sometimes")
    with pytest.raises(ValueError):
        h.solver("omp", sae.d_sae + 1)
    with pytest.raises(ValueError):
        sae.hook(-1)


def test_exceptions_pickle():
    import pickle

    e = saeplug.NonFiniteError(saeplug.Status.NON_FINITE, "x holds NaN")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is saeplug.NonFiniteError and e2.status == e.status and e2.message == e.message


CRASH_PRONE = textwrap.dedent(
    """
    import gc, os, shutil, sys, tempfile
    import numpy as np
    import saeplug

    src, tmp = sys.argv[1], tempfile.mkdtemp()
    d = os.path.join(tmp, "sae")
    shutil.copytree(src, d)
    sae = saeplug.Sae.open(d)
    x = np.ones((4, sae.d_in), np.float32)
    f = sae.encode(x)
    w = os.path.join(d, "sae_weights.safetensors")

    # 1. The mapped weights truncated in place after open: FILE_CHANGED, not SIGBUS.
    data = open(w, "rb").read()
    with open(w, "r+b") as fh:
        fh.truncate(len(data) // 3)
    for call in (lambda: sae.encode(x), lambda: sae.decode(f), lambda: sae.reconstruct(x),
                 lambda: sae.encode_sparse(x), lambda: sae.solve(x, 4), lambda: sae.decoder_row(1),
                 lambda: sae.check_unchanged()):
        try:
            call()
            raise SystemExit("a call on a truncated SAE succeeded")
        except saeplug.FileChangedError as e:
            assert e.status == saeplug.Status.FILE_CHANGED, e
        except saeplug.SaeplugIOError:
            pass

    # 2. Replaced under the same name (another inode), then deleted.
    with open(w + ".new", "wb") as fh:
        fh.write(data)
    os.replace(w + ".new", w)
    try:
        sae.encode(x); raise SystemExit("encode after replace succeeded")
    except saeplug.SaeplugError:
        pass
    os.remove(w)
    try:
        sae.encode(x); raise SystemExit("encode after delete succeeded")
    except saeplug.SaeplugError:
        pass

    # 3. Handles freed in every order; a hook and a recorder outlive their SAE.
    sae2 = saeplug.Sae.open(src)
    hook = sae2.hook(3).add(1, 1.0)
    rec = sae2.recorder(2)
    ctx = saeplug.Context("cpu", 1)
    sae2.close(); sae2.close()
    y = np.zeros((2, 64), np.float32)
    hook.apply(y, ctx=ctx)
    rec.record(y, ctx=ctx)
    ctx.close(); ctx.close()
    try:
        hook.apply(y, ctx=ctx); raise SystemExit("apply on a closed context succeeded")
    except saeplug.ClosedError:
        pass
    del hook, rec
    gc.collect()

    # 4. Lots of handles left for the garbage collector and interpreter exit.
    keep = [saeplug.Sae.open(src) for _ in range(20)]
    ctxs = [saeplug.Context("cpu", 1) for _ in range(4)]
    hooks = [k.hook(i) for i, k in enumerate(keep)]
    shutil.rmtree(tmp)
    print("SURVIVED", flush=True)
    """
)


def test_crash_prone_cases_in_a_child_process(tmp_path):
    """Things that could take the process down (a mapped file truncated under
    the SAE, handles freed in odd orders, handles alive at interpreter exit) run
    in a child interpreter: it must finish normally."""
    script = tmp_path / "crash_prone.py"
    script.write_text(CRASH_PRONE)
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script), str(STD)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, f"child died (rc {r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "SURVIVED" in r.stdout, r.stdout + r.stderr


FORK = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import saeplug

    sae = saeplug.Sae.open(sys.argv[1])
    x = np.ones((64, sae.d_in), np.float32)
    ctx = saeplug.Context("cpu", 2)
    hook = sae.hook(0).add(3, 1.0)
    sae.encode(x, ctx=ctx)
    want = sae.encode(x)                   # the default context (every core), just before the fork
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)                   # a hang becomes a failure, not a stuck suite
        try:
            assert np.array_equal(sae.encode(x), want)   # a new default context in the child
            try:
                sae.encode(x, ctx=ctx)
                raise SystemExit("a context made before fork was used in the child")
            except saeplug.ClosedError as e:
                assert "fork" in str(e), e
            with saeplug.Context("cpu", 2) as c2:
                assert np.array_equal(sae.encode(x, ctx=c2), want)
            y = np.zeros((2, sae.d_in), np.float32)
            hook.apply(y)
            ctx.close()
            print("CHILD OK", flush=True)
            os._exit(0)
        except BaseException as e:
            print("CHILD FAILED", repr(e), flush=True)
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert np.array_equal(sae.encode(x, ctx=ctx), want)  # the parent's context still works
    print("PARENT OK", flush=True)
    """
)


def test_fork_child_gets_fresh_contexts(tmp_path):
    """A CPU context's worker threads do not survive os.fork(): without care the child
    (multiprocessing's default on Linux) would wait forever on the parent's default
    context. The child gets new default contexts; old ones raise, naming the fork."""
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    r = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script), str(SMOLLM2)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"rc {r.returncode}:\n{r.stdout}\n{r.stderr}"
    assert "CHILD OK" in r.stdout and "PARENT OK" in r.stdout, r.stdout + r.stderr
