"""Keeping saeplug usable in a child made by ``os.fork()`` (``multiprocessing``'s
default start method on Linux).

A CPU context owns worker threads, and a thread does not survive a fork: a context
made before the fork would wait forever for its workers in the child. So in the
child every context made before the fork is invalidated (its handle is dropped,
not freed: freeing would wait for those threads too; a use raises
:class:`ClosedError` saying why), the per-thread default contexts are forgotten (a
new one is made on first use), and every lock the bindings hold is replaced (one
held by another thread at the fork would never be released in the child). SAEs,
hooks, recorders and store writers stay usable: they own no threads.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, List

_with_locks: "weakref.WeakSet[Any]" = weakref.WeakSet()
_contexts: "weakref.WeakSet[Any]" = weakref.WeakSet()
_hooks: List[Callable[[], None]] = []


def track_lock(obj: Any) -> None:
    """``obj._lock`` is replaced by a fresh lock in a forked child."""
    _with_locks.add(obj)


def track_context(ctx: Any) -> None:
    """``ctx`` is invalidated in a forked child (``ctx._forked = True``, ``ctx._ptr = 0``)."""
    _contexts.add(ctx)


def on_fork_in_child(fn: Callable[[], None]) -> None:
    _hooks.append(fn)


def _after_fork_in_child() -> None:
    for obj in list(_with_locks):
        obj._lock = threading.Lock()
    for ctx in list(_contexts):
        ctx._ptr = 0  # leaked on purpose: its worker threads are gone
        ctx._forked = True
    for fn in _hooks:
        fn()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
