"""saeplug: sparse autoencoders as activation plugins, from Python.

A thin ctypes layer over saeplug's C ABI (libsaeplug_ffi, built by
``pip install``): every computation runs in the Rust library, on the CPU or on a
GPU through wgpu/Vulkan, with the GIL released.

>>> import numpy as np, saeplug
>>> sae = saeplug.Sae.open(FIXTURES + "/saelens/standard")     # a SAELens folder
>>> x = np.random.default_rng(0).standard_normal((8, sae.d_in), dtype=np.float32)
>>> f = sae.encode(x)                                           # [8, d_sae]
>>> x_hat = sae.decode(f)                                       # [8, d_in]
>>> float(np.mean((x - x_hat) ** 2)) > 0
True

Exceptions derive from :class:`SaeplugError` (``.status``, ``.message``) and from
the matching built-in (``ValueError``, ``TypeError``, ``FileNotFoundError``, ...).
"""

from ._errors import (
    BackendError,
    CancelledError,
    ClosedError,
    DTypeError,
    FileChangedError,
    InternalError,
    InvalidArgumentError,
    MisalignedError,
    NonFiniteError,
    SaeFormatError,
    SaeNotFoundError,
    SaeplugError,
    SaeplugIOError,
    ShapeError,
    Status,
    UnsupportedError,
)
from ._lib import library_path
from ._sae import Context, Decomposition, Sae, SolveResult, SparseCodes, default_context
from ._steer import FeatureStats, Hook, Recorder, export_cvec
from ._store import StoreWriter
from ._train import EvalReport, Stats, Trainer, eval_store, train_store

__version__ = "0.1.0"


def abi_version() -> "tuple[int, int]":
    """The loaded library's C ABI version (major, minor)."""
    from ._lib import lib

    v = int(lib.saeplug_abi_version())
    return v >> 16, v & 0xFFFF


__all__ = [
    "BackendError",
    "CancelledError",
    "EvalReport",
    "Stats",
    "Trainer",
    "eval_store",
    "train_store",
    "ClosedError",
    "Context",
    "Decomposition",
    "DTypeError",
    "FeatureStats",
    "FileChangedError",
    "Hook",
    "InternalError",
    "InvalidArgumentError",
    "MisalignedError",
    "NonFiniteError",
    "Recorder",
    "Sae",
    "SaeFormatError",
    "SaeNotFoundError",
    "SaeplugError",
    "SaeplugIOError",
    "ShapeError",
    "SolveResult",
    "SparseCodes",
    "Status",
    "StoreWriter",
    "UnsupportedError",
    "abi_version",
    "default_context",
    "export_cvec",
    "library_path",
]
