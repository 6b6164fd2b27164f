"""Steering hooks, feature recorders and llama.cpp control-vector export."""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Union

import numpy as np

from . import _arrays, _fork
from ._errors import ClosedError, InvalidArgumentError, Status
from ._handle import LockedHandle
from ._lib import check, encode_path, lib

if TYPE_CHECKING:
    from ._sae import Context, Sae

PathLike = Union[str, "os.PathLike[str]"]

_EDITS = {"add": 0, "clamp": 1, "ablate": 2, "scale": 3}
_POSITIONS = {"all": 0, "first": 1, "last": 2, "range": 3}
_REPLACE = {"none": 0, "with_error": 1, "reconstruction_only": 2}


_addr = _arrays.addr


def _u32(value: Any, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 0xFFFFFFFF:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def _size(value: Any, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**64:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


class Hook(LockedHandle):
    """A steering hook on one layer: feature edits (add / clamp / ablate /
    scale), raw vectors, positions, and a reconstruction mode, applied in place
    to a ``[n_tokens, d_in]`` activation block by :meth:`apply` (in an engine's
    layer callback). Configuration methods return the hook, so they chain.

    The hook holds its own reference to the SAE (closing the :class:`Sae` first
    is fine). Calls on one hook from several threads wait for each other.

    >>> import numpy as np, saeplug
    >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
    >>> hook = saeplug.Hook(sae, layer=6).positions("last").add(3, 8.0)   # add 8 * d_3
    >>> x = np.zeros((3, 64), np.float32)
    >>> hook.apply(x, pos0=17) is x          # in place
    True
    >>> bool((x[:2] == 0).all()), np.allclose(x[2], 8.0 * sae.decoder_row(3), atol=1e-5)
    (True, True)
    >>> hook.close()
    """

    _free = "saeplug_hook_free"

    def __init__(self, sae: "Sae", layer: int) -> None:
        self._ptr = 0
        self._lock = threading.Lock()
        _fork.track_lock(self)
        self._d_in = sae.d_in
        self._d_sae = sae.d_sae
        self._sae = sae  # for the default context (sae.ctx); the C hook keeps the weights alive
        out = ctypes.c_void_p()
        check(lib.saeplug_hook_new(sae._handle(), _u32(layer, "layer"), ctypes.byref(out)))
        self._ptr = out.value or 0

    def _handle(self) -> int:
        if not self._ptr:
            raise ClosedError(Status.INVALID_ARGUMENT, "the hook is closed")
        return self._ptr

    @property
    def layer(self) -> int:
        """The block whose output the hook edits."""
        return int(lib.saeplug_hook_layer(self._handle()))

    # -- configuration ---------------------------------------------------------

    def positions(self, kind: str = "all", a: int = 0, b: int = 0) -> "Hook":
        """Which positions the hook edits: ``"all"``; ``"first"`` (positions
        ``0 .. a``); ``"last"`` (the last row of each batch); ``"range"`` (add
        ``[a, b)``; ranges accumulate)."""
        if kind not in _POSITIONS:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"unknown positions {kind!r}; expected one of {', '.join(_POSITIONS)}"
            )
        with self._lock:
            check(lib.saeplug_hook_set_positions(self._handle(), _POSITIONS[kind], _size(a, "a"), _size(b, "b")))
        return self

    def add_range(self, start: int, stop: int) -> "Hook":
        """Also edit positions ``start .. stop`` (same as ``positions("range", start, stop)``)."""
        return self.positions("range", start, stop)

    def edit(self, kind: str, feature: int, value: float = 0.0) -> "Hook":
        """Add a feature edit: ``"add"`` ``value * d_feature``, ``"clamp"`` the
        activation to ``value``, ``"ablate"`` it (value ignored), ``"scale"`` it by
        ``value``. Feature and value are checked against the SAE."""
        if kind not in _EDITS:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"unknown edit {kind!r}; expected one of {', '.join(_EDITS)}"
            )
        with self._lock:
            check(lib.saeplug_hook_add_edit(self._handle(), _EDITS[kind], _u32(feature, "feature"), float(value)))
        return self

    def add(self, feature: int, value: float) -> "Hook":
        """Add ``value * d_feature`` (the feature's decoder row)."""
        return self.edit("add", feature, value)

    def clamp(self, feature: int, value: float) -> "Hook":
        """Clamp the feature's activation to ``value``."""
        return self.edit("clamp", feature, value)

    def ablate(self, feature: int) -> "Hook":
        """Set the feature's activation to 0."""
        return self.edit("ablate", feature, 0.0)

    def scale(self, feature: int, value: float) -> "Hook":
        """Multiply the feature's activation by ``value``."""
        return self.edit("scale", feature, value)

    def add_vector(self, v: Any, coef: float = 1.0) -> "Hook":
        """Add ``coef * v`` (``d_in`` floats, copied)."""
        a = _arrays.vector(v, self._d_in, "v", "d_in")
        with self._lock:
            check(lib.saeplug_hook_add_vector(self._handle(), _addr(a), a.size, float(coef)))
        return self

    def replace(self, mode: str) -> "Hook":
        """Reconstruction mode: ``"none"`` (edits only: ``x + (f' - f) W_dec``),
        ``"with_error"`` (the reconstruction with the error term kept, then the
        edits), ``"reconstruction_only"`` (the error term dropped)."""
        if mode not in _REPLACE:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"unknown replace mode {mode!r}; expected one of {', '.join(_REPLACE)}"
            )
        with self._lock:
            check(lib.saeplug_hook_set_replace(self._handle(), _REPLACE[mode]))
        return self

    def solver(self, solver: Optional[str], k_max: int = 0) -> "Hook":
        """Read the current activations (for clamp / ablate / scale) from an ITO
        solver (``"mp"``, ``"omp"``, ``"gp"``) with ``k_max`` features instead of
        the encoder; ``solver(None)`` restores the encoder."""
        from ._sae import _SOLVERS, _choice

        code, k = (0, 0) if solver is None else (_choice(solver, _SOLVERS, "solver"), _u32(k_max, "k_max"))
        if solver is not None and k == 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "k_max must be >= 1 with a solver")
        with self._lock:
            check(lib.saeplug_hook_set_solver(self._handle(), code, k))
        return self

    # -- use -------------------------------------------------------------------

    def apply(self, x: Any, pos0: int = 0, ctx: Optional["Context"] = None) -> Any:
        """Apply the hook in place to ``x`` (a writable C-contiguous float32
        ``[n_tokens, d_in]`` array, or a CPU tensor sharing its memory through
        DLPack) whose first row is at absolute position ``pos0``. Returns ``x``.
        On any error ``x`` is left as it was."""
        a = _arrays.rows_inplace(x, self._d_in, "x", "d_in")
        c = self._sae._ctx(ctx)
        with self._lock, c._lock:
            if not c._ptr:
                raise c._closed()
            st = lib.saeplug_ctx_hook_apply(c._ptr, self._handle(), _addr(a), a.size, a.shape[0], _size(pos0, "pos0"))
            # Read the message on this thread, before anything else can fail.
            check(st)
        return x

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Free the hook (and its reference to the SAE) now."""
        self._release()

    def __repr__(self) -> str:
        return f"saeplug.Hook(layer={self.layer})" if self._ptr else "saeplug.Hook(closed)"


@dataclass(frozen=True)
class FeatureStats:
    """One feature's statistics from a :class:`Recorder`: times it fired, its
    mean activation over every recorded token, its strongest activation."""

    count: int
    mean: float
    max: float


class Recorder(LockedHandle):
    """Feature statistics over a run: per feature, how often it fired, its mean
    activation, and the ``top_n`` strongest (position, value) pairs.

    >>> import numpy as np, saeplug
    >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
    >>> rec = saeplug.Recorder(sae, top_n=3)
    >>> x = np.random.default_rng(5).standard_normal((4, 64), dtype=np.float32)
    >>> rec.record(x, pos0=0)
    >>> f = sae.encode(x)
    >>> rec.feature(7).count == int((f[:, 7] > 0).sum())
    True
    """

    _free = "saeplug_recorder_free"

    def __init__(self, sae: "Sae", top_n: int = 10) -> None:
        self._ptr = 0
        self._lock = threading.Lock()
        _fork.track_lock(self)
        self._d_in = sae.d_in
        self._d_sae = sae.d_sae
        self._sae = sae
        out = ctypes.c_void_p()
        check(lib.saeplug_recorder_new(sae._handle(), _size(top_n, "top_n"), ctypes.byref(out)))
        self._ptr = out.value or 0

    def _handle(self) -> int:
        if not self._ptr:
            raise ClosedError(Status.INVALID_ARGUMENT, "the recorder is closed")
        return self._ptr

    def record(self, x: Any, pos0: int = 0, ctx: Optional["Context"] = None) -> None:
        """Encode ``x`` (``[n, d_in]``, first row at position ``pos0``) and add it
        to the statistics."""
        a, _ = _arrays.rows(x, self._d_in, "x", "d_in")
        c = self._sae._ctx(ctx)
        with self._lock, c._lock:
            if not c._ptr:
                raise c._closed()
            check(lib.saeplug_ctx_record(c._ptr, self._handle(), _addr(a), a.size, a.shape[0], _size(pos0, "pos0")))

    def feature(self, feature: int) -> FeatureStats:
        """Statistics of one feature."""
        count, mean, mx = ctypes.c_uint64(), ctypes.c_float(), ctypes.c_float()
        with self._lock:
            check(
                lib.saeplug_recorder_feature(
                    self._handle(), _u32(feature, "feature"), ctypes.byref(count), ctypes.byref(mean), ctypes.byref(mx)
                )
            )
        return FeatureStats(int(count.value), float(mean.value), float(mx.value))

    def write_json(self, path: PathLike) -> None:
        """Write the statistics as JSON to ``path``, atomically: ``d_sae``,
        ``tokens`` (rows recorded), per-feature lists ``firing_count``,
        ``mean_activation`` and ``mean_when_firing``, and ``top``: for each
        feature that fired, ``{"<feature>": [[position, value], ...]}``,
        strongest first."""
        p = os.fspath(path)
        with self._lock:
            check(lib.saeplug_recorder_write_json(self._handle(), encode_path(p)), p)

    def to_dict(self) -> Dict[str, Any]:
        """The statistics :meth:`write_json` writes, parsed (through a temporary file)."""
        with tempfile.TemporaryDirectory(prefix="saeplug-rec-") as d:
            p = os.path.join(d, "features.json")
            self.write_json(p)
            with open(p, encoding="utf-8") as fh:
                data: Dict[str, Any] = json.load(fh)
            return data

    def close(self) -> None:
        """Free the recorder (and its reference to the SAE) now."""
        self._release()


def export_cvec(path: PathLike, directions: Any, layers: Sequence[int], model_hint: str = "llama") -> None:
    """Write a llama.cpp control-vector GGUF (``llama-cli --control-vector
    path``): ``directions`` is float32 ``[n_layers, n_embd]`` (1-D: one layer),
    ``layers[k] >= 1`` the block whose output direction ``k`` steers.

    >>> import os, tempfile, numpy as np, saeplug
    >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
    >>> path = os.path.join(tempfile.mkdtemp(), "steer.gguf")
    >>> saeplug.export_cvec(path, 4.0 * sae.decoder_row(3), layers=[6])   # 4 x feature 3 on block 6
    >>> open(path, "rb").read(4)
    b'GGUF'
    """
    d = _arrays._to_ndarray(directions, "directions")
    _arrays._check_dtype(d, "directions")
    if d.ndim == 1:
        d = d.reshape(1, -1)
    if d.ndim != 2:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"directions has shape {d.shape}; expected [n_layers, n_embd]")
    d = np.ascontiguousarray(d)
    lay = _arrays.index_array(list(layers) if not isinstance(layers, np.ndarray) else layers, np.uint32, "layers")
    if lay.shape[0] != d.shape[0]:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"{lay.shape[0]} layers for {d.shape[0]} directions; give one layer per direction"
        )
    p = os.fspath(path)
    check(
        lib.saeplug_export_cvec(
            encode_path(p), encode_path(model_hint, "model_hint"), _addr(lay), lay.shape[0], _addr(d), d.shape[1]
        ),
        p,
    )
