"""Contexts, SAEs, sparse codes and the inference-time-optimisation solvers."""

from __future__ import annotations

import ctypes
import json
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple, Union

import numpy as np

from . import _arrays, _fork
from ._errors import ClosedError, InvalidArgumentError, Status
from ._lib import SaeInfo, check, encode_path, lib, raise_status

if TYPE_CHECKING:
    from ._steer import Hook, Recorder

PathLike = Union[str, "os.PathLike[str]"]

_BACKENDS = {"auto": 0, "cpu": 1, "gpu": 2}
_SOLVERS = {"mp": 0, "omp": 1, "gp": 2}
_ARCHITECTURES = {0: "standard", 1: "jumprelu", 2: "gated", 3: "topk"}
_NORMALIZATIONS = {0: "none", 1: "constant_norm_rescale", 2: "layer_norm"}
_TOPK_ORDERS = {0: "topk_then_relu", 1: "relu_then_topk", 2: "signed", 3: "groupmax"}
_BUFFER_TOO_SMALL = int(Status.BUFFER_TOO_SMALL)
# encode_sparse's first capacity guess per row for SAEs without a k (then the exact need).
_SPARSE_GUESS_PER_ROW = 256
_NON_FINITE = int(Status.NON_FINITE)

# Dense-call fast path: the C functions, bound once.
_encode = lib.saeplug_ctx_encode
_decode = lib.saeplug_ctx_decode
_reconstruct = lib.saeplug_ctx_reconstruct


def _choice(value: Union[str, int], table: Dict[str, int], what: str) -> int:
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT,
                f"unknown {what} {value!r}; expected one of {', '.join(table)}",
            ) from None
    if isinstance(value, (int, np.integer)) and int(value) in table.values():
        return int(value)
    raise InvalidArgumentError(
        Status.INVALID_ARGUMENT, f"unknown {what} {value!r}; expected one of {', '.join(table)}"
    )


class Context:
    """A compute context: a backend (CPU threads or a GPU through wgpu/Vulkan)
    and its workspaces.

    ``backend`` is ``"cpu"``, ``"gpu"`` (any Vulkan adapter, including Mesa's
    software lavapipe; ``$SAEPLUG_ADAPTER`` picks one by name) or ``"auto"`` (a
    hardware GPU when there is one, else the CPU). ``threads`` is the number of
    CPU worker threads (0: every core). A GPU context keeps the weights of each
    SAE it used uploaded until it is closed.

    A context runs one call at a time: calls from several Python threads on one
    context wait for each other (give each thread its own context to run them in
    parallel). Without ``ctx=``, calls use ``sae.ctx`` if set, else a CPU
    context made once per thread. In a child made by ``os.fork()`` (e.g.
    ``multiprocessing``), contexts from before the fork raise :class:`ClosedError`
    (their worker threads did not survive it); calls without ``ctx=`` make new ones.

    >>> import saeplug
    >>> with saeplug.Context("cpu", threads=2) as ctx:
    ...     print(ctx.backend)
    cpu
    """

    __slots__ = ("_ptr", "_lock", "_forked", "requested", "threads", "backend", "__weakref__")

    def __init__(self, backend: str = "cpu", threads: int = 0) -> None:
        self._ptr = 0
        self._forked = False
        self._lock = threading.Lock()
        _fork.track_lock(self)
        code = _choice(backend, _BACKENDS, "backend")
        if not isinstance(threads, (int, np.integer)) or threads < 0:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"threads must be an integer >= 0, got {threads!r}"
            )
        if threads > 0xFFFFFFFF:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"threads = {threads} is too large")
        out = ctypes.c_void_p()
        check(lib.saeplug_ctx_new(code, int(threads), ctypes.byref(out)))
        self._ptr = out.value or 0
        _fork.track_context(self)
        self.requested = backend
        self.threads = int(threads)
        #: The backend the context runs on: ``"cpu"`` or ``"wgpu"``.
        self.backend: str = lib.saeplug_ctx_backend_name(self._ptr).decode()

    def close(self) -> None:
        """Free the context and its GPU resources now (also done when it is
        garbage-collected). Calls after ``close()`` raise :class:`ClosedError`."""
        with self._lock:
            p, self._ptr = self._ptr, 0
            if p:
                lib.saeplug_ctx_free(p)

    def _closed(self) -> ClosedError:
        if self._forked:
            return ClosedError(
                Status.INVALID_ARGUMENT,
                "this context was made before os.fork(); its worker threads do not exist in "
                "the child: make a new saeplug.Context in the child (calls without ctx= "
                "do so by themselves)",
            )
        return ClosedError(Status.INVALID_ARGUMENT, "the context is closed")

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._ptr:
                lib.saeplug_ctx_free(self._ptr)
                self._ptr = 0
        except Exception:  # interpreter shutdown: nothing left to do
            pass

    def __repr__(self) -> str:
        state = self.backend if self._ptr else "closed"
        return f"saeplug.Context({state!r}, threads={self.threads})"


_local = threading.local()


def _forget_default_contexts() -> None:
    global _local
    _local = threading.local()


_fork.on_fork_in_child(_forget_default_contexts)


def default_context() -> Context:
    """This thread's default context: a CPU context using every core, made on
    first use and freed with the thread."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = _local.ctx = Context("cpu", 0)
    return ctx


@dataclass(frozen=True)
class SparseCodes:
    """Feature activations in CSR form: row ``r``'s active features are
    ``indices[row_offsets[r]:row_offsets[r+1]]`` (ascending) with ``values``
    alongside.

    >>> import numpy as np, saeplug
    >>> codes = saeplug.SparseCodes(np.array([0, 2, 2], np.uintp),
    ...                             np.array([1, 3], np.uint32),
    ...                             np.array([0.5, 2.0], np.float32), d_sae=4)
    >>> codes.to_dense()
    array([[0. , 0.5, 0. , 2. ],
           [0. , 0. , 0. , 0. ]], dtype=float32)
    >>> codes.row(0)
    (array([1, 3], dtype=uint32), array([0.5, 2. ], dtype=float32))
    """

    row_offsets: np.ndarray  # uintp (size_t), n_rows + 1
    indices: np.ndarray  # uint32, nnz
    values: np.ndarray  # float32, nnz
    d_sae: int

    @property
    def n_rows(self) -> int:
        return int(self.row_offsets.shape[0]) - 1

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def row(self, r: int) -> Tuple[np.ndarray, np.ndarray]:
        """(indices, values) of row ``r``."""
        if not -self.n_rows <= r < self.n_rows:
            raise IndexError(f"row {r} out of range for {self.n_rows} rows")
        r %= self.n_rows
        a, b = int(self.row_offsets[r]), int(self.row_offsets[r + 1])
        return self.indices[a:b], self.values[a:b]

    def l0(self) -> np.ndarray:
        """Active features per row."""
        return np.diff(self.row_offsets).astype(np.int64)

    def to_dense(self) -> np.ndarray:
        """The dense ``[n_rows, d_sae]`` float32 matrix."""
        out = np.zeros((self.n_rows, self.d_sae), np.float32)
        rows = np.repeat(np.arange(self.n_rows), self.l0())
        out[rows, self.indices.astype(np.intp)] = self.values
        return out

    def __iter__(self) -> Iterator[np.ndarray]:  # unpacks as (row_offsets, indices, values)
        return iter((self.row_offsets, self.indices, self.values))


@dataclass(frozen=True)
class SolveResult:
    """What an ITO solve returns: the codes, the steps each row took, and each
    row's final residual norm ``||x - b_dec - a W_dec||``."""

    codes: SparseCodes
    iters: np.ndarray  # uint32 [n]
    residuals: np.ndarray  # float32 [n]


_addr = _arrays.addr


@dataclass
class Decomposition:
    """A steering vector in SAE features (:meth:`Sae.decompose`): feature ids and
    their decoder-row coefficients, strongest first; the cosine between the
    vector and ``Σ c_i d_i`` and the relative error ``‖v − Σ c_i d_i‖ / ‖v‖``."""

    features: np.ndarray
    coefs: np.ndarray
    cosine: float
    rel_error: float


class Sae:
    """A sparse autoencoder mapped from disk: a SAELens folder (``cfg.json`` +
    ``sae_weights.safetensors``), a Gemma Scope ``params.npz`` or Gemma Scope 2
    folder, or a sparsify folder (the format is detected from the path).

    Arrays in and out are float32: ``x`` is ``[n, d_in]`` and features are
    ``[n, d_sae]``; a 1-D input is one row and gives a 1-D result. Inputs are
    numpy arrays or anything exposing DLPack or the array protocol (a CPU torch
    tensor is read in place, without a copy); results are new numpy arrays
    (``torch.from_numpy(f)`` wraps one without a copy).

    An ``Sae`` may be shared by any number of threads; it is freed by
    ``close()``, by ``with``, or when garbage-collected (do not close it while
    another thread is still using it).

    >>> import numpy as np, saeplug
    >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
    >>> x = np.random.default_rng(0).standard_normal((4, sae.d_in), dtype=np.float32)
    >>> f = sae.encode(x)                 # [4, d_sae] feature activations
    >>> x_hat = sae.decode(f)             # [4, d_in] reconstruction
    >>> f.shape, x_hat.shape, sae.cfg["architecture"]
    ((4, 256), (4, 64), 'standard')
    >>> sae.close()
    """

    def __init__(self, path: PathLike, ctx: Optional[Context] = None) -> None:
        self._ptr = 0
        self.path = os.fspath(path)
        #: The context calls use when none is passed (None: this thread's default CPU context).
        self.ctx: Optional[Context] = ctx
        out = ctypes.c_void_p()
        st = lib.saeplug_sae_open(encode_path(self.path, "path"), ctypes.byref(out))
        if st:
            raise_status(st, self.path)
        self._ptr = out.value or 0
        info = SaeInfo()
        check(lib.saeplug_sae_get_info(self._ptr, ctypes.byref(info)))
        self._d_in = int(info.d_in)
        self._d_sae = int(info.d_sae)
        self._k = int(info.k)
        self._normalizes = info.normalization != 0
        self.info: Dict[str, Any] = {
            "d_in": self._d_in,
            "d_sae": self._d_sae,
            "architecture": _ARCHITECTURES.get(info.architecture, str(info.architecture)),
            "k": self._k,
            "normalization": _NORMALIZATIONS.get(info.normalization, str(info.normalization)),
            "apply_b_dec_to_input": bool(info.apply_b_dec_to_input),
            "zero_copy": bool(info.zero_copy),
            "topk_order": _TOPK_ORDERS.get(info.topk_order, str(info.topk_order))
            if info.architecture == 3
            else None,
        }
        """What the library read: d_in, d_sae, architecture, k, normalization,
        apply_b_dec_to_input, zero_copy (tensors borrowed from the file map),
        topk_order (top-k SAEs)."""
        self.cfg: Dict[str, Any] = self._read_cfg()
        """The SAE's own configuration: its ``cfg.json`` (SAELens, sparsify) or
        ``config.json`` when the folder has one, else :attr:`info`. Keys
        missing from the file (d_in, d_sae, architecture) are filled in from
        :attr:`info`."""

    @classmethod
    def open(cls, path: PathLike, ctx: Optional[Context] = None) -> "Sae":
        """Open an SAE (see the class). Raises ``FileNotFoundError``
        (:class:`SaeNotFoundError`) for a missing path and :class:`SaeFormatError`
        for corrupt or unsupported files.

        >>> import saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/smollm2-l6-topk")
        >>> sae.d_in, sae.d_sae, sae.info["k"]
        (576, 2304, 32)
        """
        return cls(path, ctx)

    def _read_cfg(self) -> Dict[str, Any]:
        cfg: Dict[str, Any] = {}
        if os.path.isdir(self.path):
            for name in ("cfg.json", "config.json"):
                p = os.path.join(self.path, name)
                if os.path.isfile(p):
                    try:
                        with open(p, encoding="utf-8") as fh:
                            data = json.load(fh)
                        if isinstance(data, dict):
                            cfg = data
                            break
                    except (OSError, ValueError):
                        pass
        for key in ("d_in", "d_sae", "architecture"):
            cfg.setdefault(key, self.info[key])
        if not cfg.get("k") and self._k:
            cfg.setdefault("k", self._k)
        return cfg

    # -- properties ------------------------------------------------------------

    @property
    def d_in(self) -> int:
        """Input (activation) dimension."""
        return self._d_in

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return self._d_sae

    @property
    def closed(self) -> bool:
        return not self._ptr

    def _handle(self) -> int:
        p = self._ptr
        if not p:
            raise ClosedError(Status.INVALID_ARGUMENT, f"the SAE {self.path!r} is closed")
        return p

    def _ctx(self, ctx: Optional[Context]) -> Context:
        if ctx is not None:
            if not isinstance(ctx, Context):
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT, f"ctx must be a saeplug.Context, got {type(ctx).__name__}"
                )
            return ctx
        return self.ctx if self.ctx is not None else default_context()

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Unmap the SAE now. Hooks and recorders made from it keep their own
        reference and stay usable."""
        p, self._ptr = self._ptr, 0
        if p:
            lib.saeplug_sae_free(p)

    def __enter__(self) -> "Sae":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._ptr:
                lib.saeplug_sae_free(self._ptr)
                self._ptr = 0
        except Exception:
            pass

    def __repr__(self) -> str:
        if not self._ptr:
            return f"saeplug.Sae({self.path!r}, closed)"
        return (
            f"saeplug.Sae({self.path!r}, {self.info['architecture']}, d_in={self._d_in}, "
            f"d_sae={self._d_sae})"
        )

    # -- dense calls -----------------------------------------------------------

    def _dense(
        self, fn: Callable[..., int], x: Any, width: int, out_width: int, name: str, wname: str, ctx: Optional[Context]
    ) -> np.ndarray:
        a, one = _arrays.rows(x, width, name, wname)
        n = a.shape[0]
        out = np.empty((n, out_width), np.float32)
        c = self._ctx(ctx)
        p = self._handle()
        with c._lock:
            cp = c._ptr
            if not cp:
                raise c._closed()
            st = fn(cp, p, _addr(a), a.size, n, _addr(out), out.size)
        if st:
            raise_status(st)
        return out[0] if one else out

    def encode(self, x: Any, ctx: Optional[Context] = None) -> np.ndarray:
        """Feature activations ``f = encode(x)``: ``[n, d_in]`` -> ``[n, d_sae]``.

        Raises :class:`DTypeError` (a ``TypeError``) unless ``x`` is float32,
        :class:`ShapeError` (a ``ValueError``) for a wrong width,
        :class:`NonFiniteError` (a ``ValueError``) for NaN or infinity.

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/topk")
        >>> f = sae.encode(np.ones(64, np.float32))   # one row: a 1-D result
        >>> f.shape, int((f != 0).sum()) <= sae.info["k"]
        ((256,), True)
        """
        return self._dense(_encode, x, self._d_in, self._d_sae, "x", "d_in", ctx)

    def decode(self, f: Any, ctx: Optional[Context] = None) -> np.ndarray:
        """Reconstruction from features: ``f W_dec + b_dec``, ``[n, d_sae]`` ->
        ``[n, d_in]``; ``f`` may also be :class:`SparseCodes` (then
        :meth:`decode_sparse`). SAEs that normalise their input (layer_norm,
        constant_norm_rescale) need the encode's per-row statistics: use
        :meth:`reconstruct` for them (decode raises InvalidArgumentError).

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
        >>> f = np.zeros((1, sae.d_sae), np.float32); f[0, 10] = 1.5
        >>> np.allclose(sae.decode(f) - sae.decode(np.zeros_like(f)), 1.5 * sae.decoder_row(10), atol=1e-5)
        True
        """
        if isinstance(f, SparseCodes):
            return self.decode_sparse(f, ctx)
        if self._normalizes:
            self._refuse_decode()
        return self._dense(_decode, f, self._d_sae, self._d_in, "f", "d_sae", ctx)

    def _refuse_decode(self) -> None:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT,
            f"this SAE normalises its input ({self.info['normalization']}): decoding needs each "
            "row's statistics from the encode, which codes do not carry; use "
            "sae.reconstruct(x) for decode(encode(x))",
        )

    def reconstruct(self, x: Any, ctx: Optional[Context] = None) -> np.ndarray:
        """``decode(encode(x))`` with the SAE's input normalisation undone per row
        (SAELens ``sae(x)``), ``[n, d_in]`` -> ``[n, d_in]``.

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/jumprelu")
        >>> x = np.random.default_rng(1).standard_normal((3, 64), dtype=np.float32)
        >>> np.allclose(sae.reconstruct(x), sae.decode(sae.encode(x)), atol=1e-5)
        True
        """
        return self._dense(_reconstruct, x, self._d_in, self._d_in, "x", "d_in", ctx)

    __call__ = reconstruct

    # -- sparse calls ----------------------------------------------------------

    def encode_sparse(self, x: Any, ctx: Optional[Context] = None) -> SparseCodes:
        """Feature activations in CSR form (:class:`SparseCodes`); equal to
        ``encode(x)`` with its zeros left out. A 1-D ``x`` is one row.

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/topk")
        >>> x = np.random.default_rng(2).standard_normal((5, 64), dtype=np.float32)
        >>> codes = sae.encode_sparse(x)
        >>> codes.n_rows, bool((codes.l0() <= 16).all()), np.array_equal(codes.to_dense(), sae.encode(x))
        (5, True, True)
        """
        a, _ = _arrays.rows(x, self._d_in, "x", "d_in")
        n = a.shape[0]
        # Top-k SAEs keep at most k per row; others: a guess, then the exact need.
        cap = n * self._k if self._k else n * min(self._d_sae, _SPARSE_GUESS_PER_ROW)
        c = self._ctx(ctx)
        p = self._handle()
        offs = np.empty(n + 1, np.uintp)
        nnz = ctypes.c_size_t(0)
        for _ in range(2):
            idx = np.empty(max(cap, 1), np.uint32)
            val = np.empty(max(cap, 1), np.float32)
            with c._lock:
                if not c._ptr:
                    raise c._closed()
                st = lib.saeplug_ctx_encode_sparse(
                    c._ptr, p, _addr(a), a.size, n, _addr(offs), _addr(idx), _addr(val),
                    cap, ctypes.byref(nnz),
                )  # fmt: skip
            if st == _BUFFER_TOO_SMALL:
                cap = int(nnz.value)
                continue
            if st:
                raise_status(st)
            k = int(nnz.value)
            return SparseCodes(offs, idx[:k], val[:k], self._d_sae)
        raise_status(st)  # pragma: no cover (the second call had the exact capacity)
        raise AssertionError

    def _csr(self, codes: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(codes, SparseCodes):
            if codes.d_sae != self._d_sae:
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT,
                    f"codes have d_sae {codes.d_sae}; this SAE has d_sae {self._d_sae}",
                )
            offs, idx, val = codes.row_offsets, codes.indices, codes.values
        else:
            try:
                offs, idx, val = codes
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT,
                    "codes must be SparseCodes or a (row_offsets, indices, values) tuple",
                ) from None
        offs = _arrays.index_array(offs, np.uintp, "row_offsets")
        idx = _arrays.index_array(idx, np.uint32, "indices")
        val = _arrays.vector(val, idx.shape[0], "values", "nnz")
        if offs.shape[0] < 1:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "row_offsets needs n_rows + 1 >= 1 entries")
        return offs, idx, val

    def decode_sparse(self, codes: Any, ctx: Optional[Context] = None) -> np.ndarray:
        """Decode CSR codes (:class:`SparseCodes` or ``(row_offsets, indices,
        values)``) in O(nnz * d_in): ``[n_rows, d_in]``.

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
        >>> x = np.random.default_rng(3).standard_normal((2, 64), dtype=np.float32)
        >>> np.allclose(sae.decode_sparse(sae.encode_sparse(x)), sae.reconstruct(x), atol=1e-5)
        True
        """
        if self._normalizes:
            self._refuse_decode()
        offs, idx, val = self._csr(codes)
        n = offs.shape[0] - 1
        out = np.empty((n, self._d_in), np.float32)
        c = self._ctx(ctx)
        p = self._handle()
        with c._lock:
            if not c._ptr:
                raise c._closed()
            st = lib.saeplug_ctx_decode_sparse(
                c._ptr, p, _addr(offs), _addr(idx), _addr(val), idx.shape[0], n,
                _addr(out), out.size,
            )  # fmt: skip
        if st:
            raise_status(st)
        return out

    def solve(
        self,
        x: Any,
        k: int,
        solver: Union[str, int] = "omp",
        nonnegative: bool = True,
        tol: float = 0.0,
        ctx: Optional[Context] = None,
    ) -> SolveResult:
        """Inference-time optimisation: sparse-code each row of ``x`` on the
        decoder (min ``||x - b_dec - a W_dec||`` with at most ``k`` features,
        ``a >= 0`` when ``nonnegative``) with matching pursuit (``"mp"``),
        orthogonal matching pursuit (``"omp"``) or gradient pursuit (``"gp"``),
        instead of the encoder. ``tol`` stops a row once its residual norm is
        below it (0: never). Decode the codes with :meth:`decode_sparse`.

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
        >>> x = np.random.default_rng(4).standard_normal((2, 64), dtype=np.float32)
        >>> r = sae.solve(x, k=8, solver="omp")
        >>> bool((r.codes.l0() <= 8).all())
        True
        >>> err = np.linalg.norm(x - sae.decode_sparse(r.codes), axis=1)
        >>> bool(np.allclose(err, r.residuals, rtol=1e-3, atol=1e-3))
        True
        """
        code = _choice(solver, _SOLVERS, "solver")
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= self._d_sae:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"k = {k!r} must be an integer in 1..={self._d_sae} (d_sae)"
            )
        a, _ = _arrays.rows(x, self._d_in, "x", "d_in")
        n = a.shape[0]
        cap = n * int(k)
        offs = np.empty(n + 1, np.uintp)
        idx = np.empty(max(cap, 1), np.uint32)
        val = np.empty(max(cap, 1), np.float32)
        iters = np.empty(n, np.uint32)
        res = np.empty(n, np.float32)
        nnz = ctypes.c_size_t(0)
        c = self._ctx(ctx)
        p = self._handle()
        with c._lock:
            if not c._ptr:
                raise c._closed()
            st = lib.saeplug_ctx_solve(
                c._ptr, p, code, int(k), 1 if nonnegative else 0, float(tol),
                _addr(a), a.size, n, _addr(offs), _addr(idx), _addr(val), cap,
                ctypes.byref(nnz), _addr(iters), _addr(res),
            )  # fmt: skip
        if st:
            raise_status(st)
        m = int(nnz.value)
        return SolveResult(SparseCodes(offs, idx[:m], val[:m], self._d_sae), iters, res)

    def decompose(
        self,
        v: Any,
        k: int = 8,
        solver: Union[str, int] = "omp",
        ctx: Optional[Context] = None,
    ) -> Decomposition:
        """Express a steering vector ``v`` (``d_in`` floats) in SAE features:
        signed ITO on the decoder rows, ``v ≈ Σ c_i d_i`` (no decoder bias), at
        most ``k`` features, strongest |coefficient| first (``saeplug
        decompose``). The coefficients are what ``Hook.add`` and
        :func:`export_cvec` take per decoder row.

        >>> import numpy as np, saeplug
        >>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")
        >>> v = 1.5 * sae.decoder_row(3) - 0.5 * sae.decoder_row(40)
        >>> d = sae.decompose(v, k=4)
        >>> sorted(int(i) for i in d.features[:2]), round(d.cosine, 3)
        ([3, 40], 1.0)
        """
        code = _choice(solver, _SOLVERS, "solver")
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= self._d_sae:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"k = {k!r} must be an integer in 1..={self._d_sae} (d_sae)"
            )
        a = _arrays.vector(v, self._d_in, "v", "d_in")
        feats = np.empty(int(k), np.uint32)
        coefs = np.empty(int(k), np.float32)
        n = ctypes.c_size_t(0)
        cos = ctypes.c_double(0.0)
        rel = ctypes.c_double(0.0)
        c = self._ctx(ctx)
        p = self._handle()
        with c._lock:
            if not c._ptr:
                raise c._closed()
            st = lib.saeplug_decompose_vector(
                c._ptr, p, code, int(k), _addr(a), a.size, _addr(feats), _addr(coefs), int(k),
                ctypes.byref(n), ctypes.byref(cos), ctypes.byref(rel),
            )  # fmt: skip
        if st:
            raise_status(st)
        m = int(n.value)
        return Decomposition(feats[:m], coefs[:m], float(cos.value), float(rel.value))

    # -- other -----------------------------------------------------------------

    def decoder_row(self, feature: int) -> np.ndarray:
        """Feature ``feature``'s decoder direction (``d_in`` floats, a copy)."""
        if not isinstance(feature, (int, np.integer)) or not 0 <= feature < self._d_sae:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"feature {feature!r} out of range 0..{self._d_sae}"
            )
        out = np.empty(self._d_in, np.float32)
        check(lib.saeplug_sae_decoder_row(self._handle(), int(feature), _addr(out), out.size))
        return out

    def check_unchanged(self) -> None:
        """Raise :class:`FileChangedError` if the SAE's files changed on disk
        since it was opened (every compute call checks this too)."""
        check(lib.saeplug_sae_check_unchanged(self._handle()), self.path)

    def hook(self, layer: int) -> "Hook":
        """A steering :class:`Hook` on block ``layer`` (see :class:`saeplug.Hook`)."""
        from ._steer import Hook

        return Hook(self, layer)

    def recorder(self, top_n: int = 10) -> "Recorder":
        """A feature :class:`Recorder` keeping the ``top_n`` strongest positions."""
        from ._steer import Recorder

        return Recorder(self, top_n)
