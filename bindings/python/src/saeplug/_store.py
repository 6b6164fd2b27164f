"""The activation-store writer (safetensors shards + manifest.json)."""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _arrays, _fork
from ._errors import ClosedError, InvalidArgumentError, Status
from ._handle import LockedHandle
from ._lib import check, encode_path, lib

PathLike = Union[str, "os.PathLike[str]"]

_DTYPES = {"f32": 0, "float32": 0, "f16": 1, "float16": 1}
_SPLITS = {"train": 0, "heldout": 1}
NO_LAYER = 0xFFFFFFFF


_addr = _arrays.addr


class StoreWriter(LockedHandle):
    """Writes a new activation store in folder ``dir`` (created; it must not
    already hold one) for ``saeplug train``: rows of ``d_in`` floats kept as
    ``dtype`` (``"f32"`` or ``"f16"``), ``shard_rows`` rows per shard (0: about
    256 MiB), read at hook ``hook_name`` of block ``layer`` (None: no layer),
    sequences of ``context_length`` tokens; ``model_path`` names the model
    (its name, size and SHA-256 go into the manifest).

    >>> import os, tempfile, numpy as np, saeplug
    >>> d = os.path.join(tempfile.mkdtemp(), "acts")
    >>> with saeplug.StoreWriter(d, d_in=4, hook_name="l_out-6", layer=6, context_length=8) as w:
    ...     acts = np.arange(12, dtype=np.float32).reshape(3, 4)
    ...     w.append(acts, tokens=[1, 2, 3], seq=[0, 0, 0], pos=[1, 2, 3])
    ...     print(w.counts())
    ...     w.finish()
    (3, 0, 0)
    >>> "manifest.json" in os.listdir(d)
    True
    """

    _free = "saeplug_store_free"

    def __init__(
        self,
        dir: PathLike,
        d_in: int,
        dtype: str = "f32",
        shard_rows: int = 0,
        hook_name: str = "",
        layer: Optional[int] = None,
        context_length: int = 0,
        bos_excluded: bool = False,
        model_path: Optional[PathLike] = None,
    ) -> None:
        self._ptr = 0
        self._lock = threading.Lock()
        _fork.track_lock(self)
        if dtype not in _DTYPES:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"unknown dtype {dtype!r}; expected f32 or f16")
        self.d_in = int(d_in)
        self.dir = os.fspath(dir)
        out = ctypes.c_void_p()
        check(
            lib.saeplug_store_create(
                encode_path(self.dir, "dir"),
                self.d_in,
                _DTYPES[dtype],
                int(shard_rows),
                encode_path(hook_name, "hook_name"),
                NO_LAYER if layer is None else int(layer),
                int(context_length),
                1 if bos_excluded else 0,
                None if model_path is None else encode_path(model_path, "model_path"),
                ctypes.byref(out),
            ),
            None if model_path is None else os.fspath(model_path),
        )
        self._ptr = out.value or 0

    def _handle(self) -> int:
        if not self._ptr:
            raise ClosedError(Status.INVALID_ARGUMENT, "the store writer is closed")
        return self._ptr

    def set_metadata(self, key: str, value: str) -> None:
        """Record ``key`` = ``value`` in the manifest's ``metadata``."""
        with self._lock:
            check(lib.saeplug_store_set_metadata(self._handle(), encode_path(key, "key"), encode_path(value, "value")))

    def append(self, acts: Any, tokens: Any, seq: Any, pos: Any, split: str = "train") -> None:
        """Append rows ``acts`` ``[n, d_in]`` with each row's token id, sequence
        index and position (each ``n`` long) to ``split`` (``"train"`` or
        ``"heldout"``). Rows with NaN or infinity are skipped and counted."""
        if split not in _SPLITS:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"unknown split {split!r}; expected train or heldout")
        a, _ = _arrays.rows(acts, self.d_in, "acts", "d_in")
        n = a.shape[0]
        t = np.ascontiguousarray(np.asarray(tokens), dtype=np.int32)
        s = _arrays.index_array(seq, np.uint32, "seq")
        p = _arrays.index_array(pos, np.uint32, "pos")
        for name, v in (("tokens", t), ("seq", s), ("pos", p)):
            if v.ndim != 1 or v.shape[0] != n:
                raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} has shape {v.shape}; expected [{n}]")
        with self._lock:
            check(
                lib.saeplug_store_append(self._handle(), _SPLITS[split], _addr(a), a.size, n, _addr(t), _addr(s), _addr(p))
            )

    def counts(self) -> Tuple[int, int, int]:
        """(train rows, held-out rows, skipped rows) so far."""
        tr, he, sk = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_uint64()
        with self._lock:
            check(lib.saeplug_store_counts(self._handle(), ctypes.byref(tr), ctypes.byref(he), ctypes.byref(sk)))
        return int(tr.value), int(he.value), int(sk.value)

    def finish(self) -> None:
        """Write the buffered rows and the final manifest (once)."""
        with self._lock:
            check(lib.saeplug_store_finish(self._handle()), self.dir)

    def close(self) -> None:
        """Free the writer; one closed before :meth:`finish` leaves the store
        marked incomplete (its whole shards kept)."""
        self._release()
