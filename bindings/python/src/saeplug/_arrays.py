"""Turning what the caller passes into arrays the C ABI can read, without copies
where the layout allows, and with clear errors where it cannot be done.

Accepted: numpy arrays; anything with ``__dlpack__`` (a CPU torch tensor, a JAX
or CuPy-on-host array, ...) through ``np.from_dlpack`` (zero copy); anything with
``__array__`` / ``__array_interface__`` / the buffer protocol through
``np.asarray`` (zero copy for float32); plain lists and tuples of numbers
(converted to float32). A float32 array that is not C-contiguous (a transposed
or strided view) is copied once into a contiguous one; any other dtype is
refused: saeplug computes in float32 and never changes precision silently.
"""

from __future__ import annotations

import ctypes
from typing import Any, Tuple

import numpy as np

from ._errors import DTypeError, InvalidArgumentError, ShapeError, Status

F32 = np.dtype(np.float32)

_addressof = ctypes.addressof
_from_buffer = ctypes.c_char.from_buffer


def addr(a: np.ndarray) -> int:
    """Address of a C-contiguous array's first element (0 for an empty array).

    Through the buffer protocol (about 0.3 µs) for writable arrays; read-only ones
    through ``__array_interface__`` (about 1 µs, a dict built per call)."""
    if not a.size:
        return 0
    try:
        return _addressof(_from_buffer(a))  # type: ignore[arg-type]  # ndarray exports a buffer
    except (TypeError, ValueError, BufferError):  # read-only
        return int(a.__array_interface__["data"][0])


def _to_ndarray(x: Any, name: str) -> np.ndarray:
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ndarray):  # subclasses (np.memmap, np.matrix): keep the data
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x, dtype=np.float32)
        except (ValueError, TypeError) as e:
            raise ShapeError(
                Status.INVALID_ARGUMENT, f"{name}: cannot read this sequence as a float32 array: {e}"
            ) from None
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except Exception as e:  # BufferError, RuntimeError (torch requires_grad), TypeError
            raise DTypeError(
                Status.INVALID_ARGUMENT,
                f"{name}: cannot read {type(x).__module__}.{type(x).__qualname__} as a CPU "
                f"array through DLPack ({type(e).__name__}: {e}); pass a CPU float32 tensor "
                "(torch: x.detach().cpu().float())",
            ) from None
    try:
        a = np.asarray(x)
    except Exception as e:
        raise DTypeError(
            Status.INVALID_ARGUMENT,
            f"{name}: cannot read {type(x).__qualname__} as an array ({type(e).__name__}: {e})",
        ) from None
    return a


def _check_dtype(a: np.ndarray, name: str, want: np.dtype = F32) -> None:
    if a.dtype != want:
        hint = " (numpy: x.astype(np.float32); torch: x.float())" if want == F32 else ""
        raise DTypeError(
            Status.INVALID_ARGUMENT,
            f"{name} has dtype {a.dtype}; saeplug needs {want}{hint}",
        )


def rows(x: Any, width: int, name: str, width_name: str) -> Tuple[np.ndarray, bool]:
    """``x`` as a C-contiguous float32 ``[n, width]`` array (1-D: one row) and
    whether it was 1-D. No copy when ``x`` already is C-contiguous float32."""
    a = _to_ndarray(x, name)
    _check_dtype(a, name)
    one = a.ndim == 1
    if one:
        a = a.reshape(1, -1)
    elif a.ndim != 2:
        raise ShapeError(
            Status.INVALID_ARGUMENT,
            f"{name} has shape {a.shape}; expected [n, {width_name}={width}] or [{width_name}={width}]",
        )
    if a.shape[1] != width:
        raise ShapeError(
            Status.INVALID_ARGUMENT,
            f"{name} has shape {tuple(a.shape) if not one else (a.shape[1],)}; its last "
            f"dimension must be {width_name} = {width}",
        )
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a, one


def rows_inplace(x: Any, width: int, name: str, width_name: str) -> np.ndarray:
    """``x`` as a writable C-contiguous float32 ``[n, width]`` view sharing its
    memory (for calls that change ``x`` in place): never a copy."""
    a = _to_ndarray(x, name)
    _check_dtype(a, name)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[1] != width:
        raise ShapeError(
            Status.INVALID_ARGUMENT,
            f"{name} has shape {a.shape}; expected [n, {width_name}={width}] or [{width_name}={width}]",
        )
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT,
            f"{name} must be a writable C-contiguous float32 array: this call changes it in "
            "place (pass np.ascontiguousarray(x) and use the array you passed)",
        )
    if isinstance(x, list) or isinstance(x, tuple):
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"{name}: a list cannot be changed in place; pass a numpy array"
        )
    return a


def vector(x: Any, length: int, name: str, length_name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 vector of ``length`` values."""
    a = _to_ndarray(x, name)
    _check_dtype(a, name)
    if a.ndim != 1 or a.shape[0] != length:
        raise ShapeError(
            Status.INVALID_ARGUMENT, f"{name} has shape {a.shape}; expected [{length_name}={length}]"
        )
    return np.ascontiguousarray(a)


def index_array(x: Any, dtype: Any, name: str) -> np.ndarray:
    """A 1-D array of non-negative integers as ``dtype`` (copied only if its dtype
    differs); refuses floats and negative values."""
    a = _to_ndarray(x, name) if not isinstance(x, (list, tuple)) else np.asarray(x)
    if a.ndim != 1:
        raise ShapeError(Status.INVALID_ARGUMENT, f"{name} has shape {a.shape}; expected 1-D")
    if a.size and a.dtype.kind not in "iu":
        raise DTypeError(Status.INVALID_ARGUMENT, f"{name} has dtype {a.dtype}; expected integers")
    want = np.dtype(dtype)
    if a.dtype != want:
        if a.size and a.dtype.kind == "i" and int(a.min()) < 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} holds negative values")
        if a.size and int(a.max()) > np.iinfo(want).max:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} holds values above {np.iinfo(want).max}")
        a = a.astype(want)
    return np.ascontiguousarray(a)
