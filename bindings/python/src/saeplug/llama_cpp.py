"""Steering and recording inside llama-cpp-python (``llama_cpp.Llama``).

saeplug's llama.cpp adapter (``libsaeplug_llama.so``, built by
``bash bindings/llama.cpp/build.sh`` next to the ``saeplug-llama`` tool) is a C
eval callback: llama.cpp calls it for every tensor of every decode, and it edits
or records the output of the hooked blocks (``l_out-N``) itself, so no Python
runs per tensor. :func:`attach` puts that callback into a ``Llama``: ``Llama``
takes no eval callback, so the context is created again with
``cb_eval``/``cb_eval_user_data`` set (and ``n_ubatch = n_batch``: the adapter maps
the rows of one decode to positions), and the context's ``decode`` tells the
adapter each batch's first position and size before calling llama.cpp.

The adapter reads ``struct ggml_tensor`` fields, so it must run against the
libggml it was compiled for: llama-cpp-python has to load the same llama.cpp
build (``LLAMA_CPP_LIB_PATH`` = that build's ``bin`` folder; see
``scripts/install-llama-cpp-python.sh``). :func:`attach` refuses anything else
with :class:`AdapterMismatchError`.

Example (tests/test_llama_cpp.py runs the same with the SmolLM2 fixtures)::

    import llama_cpp, saeplug, saeplug.llama_cpp as spl
    llm = llama_cpp.Llama("model.gguf", n_ctx=256, verbose=False)
    sae = saeplug.Sae.open("smollm2-l6-topk")
    steer = spl.attach(llm)
    with steer.using([saeplug.Hook(sae, layer=6).clamp(12, 8.0)]):
        llm.create_completion("The capital of France is", max_tokens=8, temperature=0)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from ._errors import SaeplugError, Status, error_for
from ._lib import last_error_message, library_path
from ._sae import Context, Sae
from ._steer import Hook, Recorder

__all__ = ["AdapterMismatchError", "Steering", "adapter_path", "attach", "hook_from_edits"]


class AdapterMismatchError(RuntimeError):
    """The adapter library and the libllama that llama-cpp-python loaded are not
    the same llama.cpp build."""


def adapter_path() -> str:
    """Where :func:`attach` loads the adapter from by default:
    ``$SAEPLUG_LLAMA_ADAPTER``, else ``libsaeplug_llama.so`` next to
    ``$SAEPLUG_LLAMA_TOOL`` (the ``saeplug-llama`` executable)."""
    env = os.environ.get("SAEPLUG_LLAMA_ADAPTER")
    if env:
        return env
    tool = os.environ.get("SAEPLUG_LLAMA_TOOL")
    if tool:
        return os.path.join(os.path.dirname(os.path.abspath(tool)), "libsaeplug_llama.so")
    raise FileNotFoundError(
        "saeplug.llama_cpp: no adapter library given. Build it with `bash bindings/llama.cpp/build.sh` "
        "(it writes libsaeplug_llama.so next to saeplug-llama) and set $SAEPLUG_LLAMA_ADAPTER to it, "
        "or pass attach(..., adapter=PATH)."
    )


_adapters: Dict[str, ctypes.CDLL] = {}


def _load_adapter(path: str) -> ctypes.CDLL:
    if path in _adapters:
        return _adapters[path]
    if not os.path.exists(path):
        raise FileNotFoundError(f"saeplug.llama_cpp: adapter library {path} not found (bash bindings/llama.cpp/build.sh)")
    # The adapter leaves saeplug_* undefined: they bind to the libsaeplug_ffi this
    # package already loaded (the hooks it creates are that library's objects).
    # ctypes loaded it RTLD_LOCAL; reopening it RTLD_NOLOAD|RTLD_GLOBAL makes its
    # symbols visible to later loads without loading a second copy.
    ctypes.CDLL(library_path(), mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    lib = ctypes.CDLL(path)
    vp, i32 = ctypes.c_void_p, ctypes.c_int
    for name, res, args in [
        ("saeplug_llama_new", vp, [vp]),
        ("saeplug_llama_free", None, [vp]),
        ("saeplug_llama_add_hook", i32, [vp, vp]),
        ("saeplug_llama_add_recorder", i32, [vp, vp, i32]),
        ("saeplug_llama_add_capture", i32, [vp, i32, vp, vp]),
        ("saeplug_llama_set_batch", None, [vp, i32, i32]),
        ("saeplug_llama_status", ctypes.c_uint32, [vp]),
        ("saeplug_llama_clear", None, [vp]),
        ("saeplug_llama_built_ggml_version", ctypes.c_char_p, []),
        ("saeplug_llama_ggml_symbol", vp, []),
        ("saeplug_llama_ggml_tensor_size", ctypes.c_size_t, []),
    ]:
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    _adapters[path] = lib
    return lib


def _check_same_llama(adapter: ctypes.CDLL, llama_lib: ctypes.CDLL) -> None:
    """Refuse an adapter built for another llama.cpp than the loaded libllama."""
    try:
        theirs = ctypes.cast(llama_lib.ggml_get_name, ctypes.c_void_p).value
        ver = llama_lib.ggml_version
    except AttributeError as e:
        raise AdapterMismatchError(f"saeplug.llama_cpp: the loaded libllama exposes no ggml symbols ({e})") from None
    ver.restype = ctypes.c_char_p
    ver.argtypes = []
    loaded = (ver() or b"").decode()
    built = (adapter.saeplug_llama_built_ggml_version() or b"").decode()
    ours = adapter.saeplug_llama_ggml_symbol()
    if built != loaded or theirs != ours:
        where = os.environ.get("LLAMA_CPP_LIB_PATH", "llama_cpp/lib inside the llama_cpp package")
        raise AdapterMismatchError(
            "saeplug.llama_cpp: the adapter library was built against another llama.cpp than the one "
            f"llama-cpp-python loaded (adapter: ggml {built}; llama-cpp-python: ggml {loaded} from {where}; "
            f"same libggml-base loaded: {theirs == ours}). It reads ggml tensor structs, so it must use the "
            "same build: install llama-cpp-python with scripts/install-llama-cpp-python.sh and run with "
            "LLAMA_CPP_LIB_PATH pointing at the llama.cpp build that bindings/llama.cpp/build.sh used."
        )


_ROWS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                            ctypes.c_size_t)  # fmt: skip


class Steering:
    """saeplug plugged into one ``llama_cpp.Llama`` (made by :func:`attach`).

    Hooks and recorders are borrowed: keep them open while the model decodes
    (the steering object keeps a reference). :meth:`clear` removes them all.
    Not thread-safe: one decode at a time (the server serialises requests)."""

    def __init__(self, llm: Any, lib: ctypes.CDLL, ctx: Context) -> None:
        self.llm = llm
        self._lib = lib
        self.ctx = ctx
        self._ptr = lib.saeplug_llama_new(ctx._ptr)
        if not self._ptr:
            raise MemoryError("saeplug_llama_new")
        self._kept: List[Any] = []
        self._rows_cbs: List[Any] = []
        self.lock = threading.RLock()

    # -- configuration ---------------------------------------------------------

    def _check_layer(self, layer: int) -> None:
        import llama_cpp

        n = int(llama_cpp.llama_model_n_layer(self.llm._model.model))
        if not 0 <= layer < n:
            raise error_for(int(Status.INVALID_ARGUMENT), f"layer {layer} is not a block of this model (0..{n - 1})")

    def add_hook(self, hook: Hook) -> Hook:
        """Apply ``hook`` (on its own layer) at every decode from now on."""
        self._check_layer(hook.layer)
        if self._lib.saeplug_llama_add_hook(self._ptr, hook._handle()) != 0:
            raise SaeplugError(Status.INVALID_ARGUMENT, "too many hooks on this model (64)")
        self._kept.append(hook)
        return hook

    def add_recorder(self, rec: Recorder, layer: int) -> Recorder:
        """Record the features of block ``layer``'s output (after its hooks) at
        every decode: prompt and generated tokens, at their absolute positions."""
        self._check_layer(int(layer))
        if self._lib.saeplug_llama_add_recorder(self._ptr, rec._handle(), int(layer)) != 0:
            raise SaeplugError(Status.INVALID_ARGUMENT, "too many recorders on this model (64)")
        self._kept.append(rec)
        return rec

    def add_rows_callback(self, layer: int, fn: Any) -> None:
        """Call ``fn(rows)`` with a copy of block ``layer``'s output rows
        (float32 ``[n_tokens, n_embd]``, after any edits) once per decode."""

        def cb(_user: Any, _layer: int, rows: Any, n_rows: int, n_embd: int) -> None:
            fn(np.ctypeslib.as_array(rows, shape=(n_rows, n_embd)).copy())

        c = _ROWS_FN(cb)
        if self._lib.saeplug_llama_add_capture(self._ptr, int(layer), ctypes.cast(c, ctypes.c_void_p), None) != 0:
            raise SaeplugError(Status.INVALID_ARGUMENT, "too many row callbacks on this model (64)")
        self._rows_cbs.append(c)

    def clear(self) -> None:
        """Remove every hook, recorder and row callback (and a sticky error)."""
        self._lib.saeplug_llama_clear(self._ptr)
        self._kept.clear()
        self._rows_cbs.clear()

    @contextlib.contextmanager
    def using(self, hooks: Iterable[Hook] = (), recorders: Iterable["tuple[Recorder, int]"] = ()) -> Any:
        """``with steer.using([hook]):`` — the hooks (and ``(recorder, layer)``
        pairs) for the duration of the block, holding :attr:`lock`, on a fresh
        KV cache (``llm.reset()``: a cached prefix computed under other edits is
        never reused)."""
        with self.lock:
            self.clear()
            self.llm.reset()
            try:
                for h in hooks:
                    self.add_hook(h)
                for r, layer in recorders:
                    self.add_recorder(r, layer)
                yield self
            finally:
                self.clear()
                self.llm.reset()

    # -- decode ----------------------------------------------------------------

    def _before(self, pos0: int, n_tokens: int) -> None:
        self._lib.saeplug_llama_set_batch(self._ptr, int(pos0), int(n_tokens))

    def _after(self) -> None:
        st = int(self._lib.saeplug_llama_status(self._ptr))
        if st != 0:
            msg = last_error_message()
            self._lib.saeplug_llama_clear(self._ptr)
            self._kept.clear()
            raise error_for(st, f"saeplug inside llama_decode: {msg} (the hooks were removed)")

    def _free(self) -> None:
        p, self._ptr = self._ptr, 0
        if p:
            self._lib.saeplug_llama_free(p)


def attach(
    llm: Any,
    ctx: Optional[Context] = None,
    adapter: Optional[str] = None,
    **context_params: Any,
) -> Steering:
    """Plug saeplug's adapter into ``llm`` (a ``llama_cpp.Llama``) and return the
    :class:`Steering` that holds its hooks and recorders.

    The llama.cpp context is created anew (the KV cache starts empty), with the
    same parameters plus ``cb_eval``, ``n_ubatch = n_batch`` and any
    ``context_params`` given (fields of ``llama_context_params``, e.g.
    ``flash_attn_type=llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO``). ``ctx`` is the
    saeplug context the hooks compute with (default: a 1-thread CPU context,
    as the ``saeplug-llama`` tool uses). Raises :class:`AdapterMismatchError` when
    the adapter was built for another llama.cpp than the one loaded.
    """
    import llama_cpp
    from llama_cpp import _internals

    if getattr(llm, "_saeplug", None) is not None:
        raise SaeplugError(Status.INVALID_ARGUMENT, "saeplug is already attached to this model")
    if getattr(llm, "_lora_adapter", None) is not None:
        raise SaeplugError(Status.UNSUPPORTED, "attach() does not support a Llama with a LoRA adapter")
    lib = _load_adapter(adapter or adapter_path())
    _check_same_llama(lib, llama_cpp.llama_cpp._lib)
    if ctx is None:
        ctx = Context("cpu", threads=1)
    steer = Steering(llm, lib, ctx)

    params = llm.context_params
    for k, v in context_params.items():
        if not hasattr(params, k):
            raise SaeplugError(Status.INVALID_ARGUMENT, f"llama_context_params has no field {k!r}")
        setattr(params, k, v)
    params.n_ubatch = params.n_batch  # one ubatch per decode: rows map to the batch's positions
    params.cb_eval = ctypes.cast(lib.saeplug_llama_cb_eval, llama_cpp.ggml_backend_sched_eval_callback)
    params.cb_eval_user_data = ctypes.c_void_p(steer._ptr)

    old = llm._ctx
    new = _internals.LlamaContext(model=llm._model, params=params, verbose=llm.verbose)
    old.close()
    # The adapter is freed after the context (ExitStack: last in, first out).
    adapter_stack = contextlib.ExitStack()
    adapter_stack.callback(steer._free)
    adapter_stack.enter_context(new._exit_stack)
    new._exit_stack = adapter_stack
    raw_decode = new.decode

    def decode(batch: Any) -> None:
        b = batch.batch
        n = int(b.n_tokens)
        steer._before(int(b.pos[0]) if n > 0 else 0, n)
        raw_decode(batch)
        steer._after()

    new.decode = decode
    llm._ctx = new
    llm.n_tokens = 0
    llm._saeplug = steer
    return steer


def hook_from_edits(sae: Sae, layer: int, edits: Iterable[Dict[str, Any]], positions: Any = None) -> Hook:
    """A hook from JSON-style edits: ``[{"feature": 12, "op": "clamp", "value": 8.0}, ...]``
    (ops: clamp, add, ablate, scale), and positions ``"all"``, ``"last"``,
    ``{"first": P}`` or ``{"range": [A, B]}``."""
    hook = Hook(sae, layer)
    for e in edits:
        if not isinstance(e, dict) or "feature" not in e:
            raise SaeplugError(Status.INVALID_ARGUMENT, f"an edit needs a feature: {e!r}")
        hook.edit(str(e.get("op", "clamp")), e["feature"], float(e.get("value", 0.0)))
    if positions is None or positions == "all":
        pass
    elif positions == "last":
        hook.positions("last")
    elif isinstance(positions, dict) and "first" in positions:
        hook.positions("first", int(positions["first"]))
    elif isinstance(positions, dict) and "range" in positions:
        a, b = positions["range"]
        hook.positions("range", int(a), int(b))
    else:
        raise SaeplugError(Status.INVALID_ARGUMENT, f"bad positions {positions!r}")
    return hook
