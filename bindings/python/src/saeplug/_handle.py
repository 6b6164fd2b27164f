"""The lifetime of a library handle guarded by its object's lock: freed once, by
``close()``, a ``with`` block or the garbage collector."""

from __future__ import annotations

import threading
from typing import Any, ClassVar, TypeVar

from ._lib import lib

_H = TypeVar("_H", bound="LockedHandle")


class LockedHandle:
    """Base of the handle classes whose calls hold ``self._lock``: ``_free``
    names the C function that frees ``self._ptr``."""

    _free: ClassVar[str]
    _ptr: int
    _lock: threading.Lock

    def _release(self) -> None:
        with self._lock:
            p, self._ptr = self._ptr, 0
            if p:
                getattr(lib, self._free)(p)

    def close(self) -> None:
        """Free the handle now."""
        self._release()

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._ptr:
                getattr(lib, self._free)(self._ptr)
                self._ptr = 0
        except Exception:
            pass
