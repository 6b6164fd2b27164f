"""Exceptions raised by saeplug, one class per group of C ABI status codes.

Every exception derives from :class:`SaeplugError` and carries the library's
``status`` code (an :class:`Status`) and its message; each also derives from the
built-in exception a Python user would catch for that kind of failure
(``ValueError`` for bad arguments, ``TypeError`` for a wrong dtype,
``FileNotFoundError`` for a missing SAE, ...).

>>> import saeplug
>>> try:
...     saeplug.Sae.open("/nonexistent/sae")
... except FileNotFoundError as e:
...     print(e.status.name, "/nonexistent/sae" in str(e))
IO True
"""

from __future__ import annotations

import enum
import errno
import os
from typing import Any, Dict, Optional, Tuple, Type


class Status(enum.IntEnum):
    """``saeplug_status`` values (include/saeplug.h); stable, never renumbered."""

    OK = 0
    INVALID_ARGUMENT = 1
    NULL_POINTER = 2
    BUFFER_TOO_SMALL = 3
    MISALIGNED = 4
    NON_FINITE = 5
    INVALID_UTF8 = 6
    CANCELLED = 7
    IO = 100
    FORMAT = 101
    MISSING_TENSOR = 102
    SHAPE = 103
    DTYPE = 104
    UNKNOWN_ARCHITECTURE = 105
    UNSUPPORTED = 106
    FILE_CHANGED = 107
    BACKEND = 200
    PANIC = 255


class SaeplugError(Exception):
    """Base class of every saeplug error.

    Attributes:
        status: the C ABI status code (:class:`Status`, or a plain int for a
            code this version of the package does not know).
        message: the library's message (for errors found by the Python layer
            before calling the library, the Python layer's message).
    """

    status: "Status | int"
    message: str

    def __init__(self, status: "Status | int", message: str) -> None:
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.message = message
        name = status.name if isinstance(status, Status) else str(int(status))
        Exception.__init__(self, f"{message} [saeplug status {name}]")

    def __str__(self) -> str:  # OSError subclasses format their own str
        return self.args[0] if self.args else self.message

    def __reduce__(self) -> Tuple[Any, ...]:  # picklable (multiprocessing) despite the two-arg init
        return (type(self), (self.status, self.message))


class InvalidArgumentError(SaeplugError, ValueError):
    """An argument is out of range or inconsistent (INVALID_ARGUMENT, INVALID_UTF8)."""


class ShapeError(InvalidArgumentError):
    """An array has the wrong number of dimensions or the wrong width."""


class DTypeError(SaeplugError, TypeError):
    """An array is not float32 (or cannot be read as a CPU array at all)."""


class MisalignedError(InvalidArgumentError):
    """A buffer is not aligned for its element type (MISALIGNED)."""


class NonFiniteError(InvalidArgumentError):
    """An input holds NaN or infinity (NON_FINITE)."""


class SaeFormatError(SaeplugError, ValueError):
    """The SAE's files are corrupt, truncated, or describe something unsupported
    (FORMAT, MISSING_TENSOR, SHAPE, DTYPE, UNKNOWN_ARCHITECTURE)."""


class SaeplugIOError(SaeplugError, OSError):
    """Reading, mapping or writing a file failed (IO)."""

    def __init__(self, status: "Status | int", message: str) -> None:
        SaeplugError.__init__(self, status, message)


class SaeNotFoundError(SaeplugIOError, FileNotFoundError):
    """The SAE path (or a file it needs) does not exist (IO)."""


class FileChangedError(SaeplugError, RuntimeError):
    """An SAE's mapped files changed on disk after it was opened (FILE_CHANGED).
    Open it again."""


class UnsupportedError(SaeplugError, NotImplementedError):
    """A known feature that is not supported for this input or build (UNSUPPORTED)."""


class BackendError(SaeplugError, RuntimeError):
    """The compute backend failed, e.g. no GPU adapter could be opened (BACKEND)."""


class InternalError(SaeplugError, RuntimeError):
    """A bug in saeplug: a Rust panic caught at the C boundary (PANIC), or a
    NULL pointer reaching the library (NULL_POINTER)."""


class ClosedError(SaeplugError, ValueError):
    """A handle was used after ``close()``."""


class CancelledError(SaeplugError):
    """A training run stopped by its progress callback (CANCELLED); its state was
    written to ``checkpoint.safetensors`` in the output folder."""


_BY_STATUS: Dict[Status, Type[SaeplugError]] = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.INVALID_UTF8: InvalidArgumentError,
    Status.NULL_POINTER: InternalError,
    Status.BUFFER_TOO_SMALL: InternalError,  # handled by the bindings; never escapes
    Status.MISALIGNED: MisalignedError,
    Status.NON_FINITE: NonFiniteError,
    Status.IO: SaeplugIOError,
    Status.FORMAT: SaeFormatError,
    Status.MISSING_TENSOR: SaeFormatError,
    Status.SHAPE: SaeFormatError,
    Status.DTYPE: SaeFormatError,
    Status.UNKNOWN_ARCHITECTURE: SaeFormatError,
    Status.UNSUPPORTED: UnsupportedError,
    Status.FILE_CHANGED: FileChangedError,
    Status.BACKEND: BackendError,
    Status.PANIC: InternalError,
    Status.CANCELLED: CancelledError,
}


def error_for(status: int, message: str, path: Optional[str] = None) -> SaeplugError:
    """The exception for a failed call: its class from the status, its text from
    the library's message. An IO error on a ``path`` that does not exist is a
    :class:`SaeNotFoundError` (a ``FileNotFoundError``)."""
    cls: Type[SaeplugError] = _BY_STATUS.get(status, SaeplugError)  # type: ignore[call-overload]
    if cls is SaeplugIOError and path is not None and not os.path.exists(path):
        e = SaeNotFoundError(status, message)
        e.errno, e.filename = errno.ENOENT, path
        return e
    return cls(status, message)
