"""Loading libsaeplug_ffi and declaring the C ABI (include/saeplug.h) for ctypes.

The library is the one built by ``pip install`` into this package's folder, or
the file named by ``$SAEPLUG_LIBRARY`` (for development against a fresh
``cargo build --release -p saeplug-ffi``). Nothing here computes: every
function below is one declaration of a C function, and :func:`check` turns a
failed status into the matching exception with the library's message.

ctypes releases the GIL for the duration of every foreign call, so other
Python threads run while saeplug computes.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_float, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Optional

from ._errors import InvalidArgumentError, Status, error_for

#: The ABI major version these bindings were written for (SAEPLUG_ABI_VERSION_MAJOR).
ABI_MAJOR = 1
#: The lowest ABI minor version they need (2: training and evaluation).
ABI_MINOR_MIN = 2

_LIB_NAME = "libsaeplug_ffi.so"


class SaeInfo(ctypes.Structure):
    """``saeplug_sae_info`` (plain data)."""

    _fields_ = [
        ("d_in", c_size_t),
        ("d_sae", c_size_t),
        ("architecture", c_uint32),
        ("k", c_uint32),
        ("normalization", c_uint32),
        ("apply_b_dec_to_input", c_uint32),
        ("zero_copy", c_uint32),
        ("topk_order", c_uint32),
    ]


def library_path() -> str:
    """Where the shared library is loaded from: ``$SAEPLUG_LIBRARY`` if set,
    else the copy installed inside this package."""
    env = os.environ.get("SAEPLUG_LIBRARY")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIB_NAME)


def _load() -> ctypes.CDLL:
    path = library_path()
    if not os.path.exists(path):
        raise ImportError(
            f"saeplug: the native library {path} is missing. Install the package with "
            "`pip install ./bindings/python` (it builds the library with cargo), or point "
            "$SAEPLUG_LIBRARY at a libsaeplug_ffi.so built by "
            "`cargo build --release -p saeplug-ffi`."
        )
    try:
        lib = ctypes.CDLL(path)
        abi = lib.saeplug_abi_version
    except (OSError, AttributeError) as e:
        raise ImportError(f"saeplug: {path} is not a loadable saeplug library ({e})") from None
    abi.restype = c_uint32
    lib.saeplug_abi_version.argtypes = []
    v = lib.saeplug_abi_version()
    major, minor = v >> 16, v & 0xFFFF
    if major != ABI_MAJOR or minor < ABI_MINOR_MIN:
        raise ImportError(
            f"saeplug: {path} has C ABI version {major}.{minor}; these bindings need "
            f"{ABI_MAJOR}.{ABI_MINOR_MIN} or a later {ABI_MAJOR}.x. Reinstall the package "
            "from the same source tree as the library."
        )
    return lib


lib = _load()

_status = c_uint32  # saeplug_status travels as uint32_t
_p = c_void_p  # buffers and handles: passed as integer addresses
_pp = POINTER(c_void_p)  # handle out-parameters
_psize = POINTER(c_size_t)


def _decl(name: str, restype: Any, *argtypes: Any) -> None:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


# Errors.
_decl("saeplug_last_error_length", c_size_t)
_decl("saeplug_last_error_message", c_size_t, c_char_p, c_size_t)
_decl("saeplug_status_str", c_char_p, c_uint32)

# SAEs.
_decl("saeplug_sae_open", _status, c_char_p, _pp)
_decl("saeplug_sae_free", None, _p)
_decl("saeplug_sae_get_info", _status, _p, POINTER(SaeInfo))
_decl("saeplug_sae_check_unchanged", _status, _p)
_decl("saeplug_sae_decoder_row", _status, _p, c_uint32, _p, c_size_t)

# Contexts and dense/sparse compute.
_decl("saeplug_ctx_new", _status, c_uint32, c_uint32, _pp)
_decl("saeplug_ctx_backend_name", c_char_p, _p)
_decl("saeplug_ctx_free", None, _p)
_decl("saeplug_ctx_encode", _status, _p, _p, _p, c_size_t, c_size_t, _p, c_size_t)
_decl(
    "saeplug_ctx_encode_sparse",
    _status,
    _p, _p, _p, c_size_t, c_size_t,  # ctx, sae, x, x_len, n_rows
    _p, _p, _p, c_size_t, _psize,  # row_offsets, indices, values, capacity, out_nnz
)  # fmt: skip
_decl("saeplug_ctx_decode", _status, _p, _p, _p, c_size_t, c_size_t, _p, c_size_t)
_decl(
    "saeplug_ctx_decode_sparse",
    _status,
    _p, _p, _p, _p, _p, c_size_t, c_size_t, _p, c_size_t,
)  # fmt: skip
_decl("saeplug_ctx_reconstruct", _status, _p, _p, _p, c_size_t, c_size_t, _p, c_size_t)
_decl(
    "saeplug_ctx_solve",
    _status,
    _p, _p, c_uint32, c_uint32, c_uint32, c_float,  # ctx, sae, solver, k_max, nonneg, tol
    _p, c_size_t, c_size_t,  # x, x_len, n_rows
    _p, _p, _p, c_size_t, _psize,  # row_offsets, indices, values, capacity, out_nnz
    _p, _p,  # iters, residuals
)  # fmt: skip

# Steering hooks.
_decl("saeplug_hook_new", _status, _p, c_uint32, _pp)
_decl("saeplug_hook_free", None, _p)
_decl("saeplug_hook_layer", c_uint32, _p)
_decl("saeplug_hook_set_positions", _status, _p, c_uint32, c_size_t, c_size_t)
_decl("saeplug_hook_add_edit", _status, _p, c_uint32, c_uint32, c_float)
_decl("saeplug_hook_add_vector", _status, _p, _p, c_size_t, c_float)
_decl("saeplug_hook_set_replace", _status, _p, c_uint32)
_decl("saeplug_hook_set_solver", _status, _p, c_uint32, c_uint32)
_decl("saeplug_ctx_hook_apply", _status, _p, _p, _p, c_size_t, c_size_t, c_size_t)

# Recorders.
_decl("saeplug_recorder_new", _status, _p, c_size_t, _pp)
_decl("saeplug_recorder_free", None, _p)
_decl("saeplug_ctx_record", _status, _p, _p, _p, c_size_t, c_size_t, c_size_t)
_decl(
    "saeplug_recorder_feature",
    _status,
    _p, c_uint32, POINTER(c_uint64), POINTER(c_float), POINTER(c_float),
)  # fmt: skip
_decl("saeplug_recorder_write_json", _status, _p, c_char_p)

# Control-vector export.
_decl("saeplug_export_cvec", _status, c_char_p, c_char_p, _p, c_size_t, _p, c_size_t)

# Activation-store writer.
_decl(
    "saeplug_store_create",
    _status,
    c_char_p, c_size_t, c_uint32, c_size_t,  # dir, d_in, dtype, shard_rows
    c_char_p, c_uint32, c_size_t, c_uint32,  # hook_name, layer, context_length, bos_excluded
    c_char_p, _pp,  # model_path, out
)  # fmt: skip
_decl("saeplug_store_set_metadata", _status, _p, c_char_p, c_char_p)
_decl("saeplug_store_append", _status, _p, c_uint32, _p, c_size_t, c_size_t, _p, _p, _p)
_decl(
    "saeplug_store_counts",
    _status,
    _p, POINTER(c_uint64), POINTER(c_uint64), POINTER(c_uint64),
)  # fmt: skip
_decl("saeplug_store_finish", _status, _p)
_decl("saeplug_store_free", None, _p)

_decl(
    "saeplug_decompose_vector",
    _status,
    _p, _p, c_uint32, c_uint32, _p, c_size_t,  # ctx, sae, solver, k_max, v, v_len
    _p, _p, c_size_t, POINTER(c_size_t), POINTER(ctypes.c_double), POINTER(ctypes.c_double),
)  # fmt: skip

# Training and evaluation (ABI 1.2; wrapped in saeplug/_train.py).
class TrainConfig(ctypes.Structure):
    """``saeplug_train_config``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("arch", c_uint32),
        ("d_in", c_size_t),
        ("d_sae", c_size_t),
        ("k", c_size_t),
        ("lr", c_float),
        ("l1_coeff", c_float),
        ("aux_coeff", c_float),
        ("ghost_grads", c_uint32),
        ("rescale_acts_by_decoder_norm", c_uint32),
        ("bandwidth", c_float),
        ("init_threshold", c_float),
        ("clip_norm", c_float),
        ("warmup_frac", c_float),
        ("decay_frac", c_float),
        ("batch_size", c_size_t),
        ("total_steps", c_uint64),
        ("dead_window", c_uint64),
        ("seed", c_uint64),
        ("threads", c_uint32),
        ("matryoshka", POINTER(c_size_t)),
        ("n_matryoshka", c_size_t),
    ]


class TrainStats(ctypes.Structure):
    """``saeplug_train_stats``."""

    _fields_ = [
        ("step", c_uint64),
        ("loss", ctypes.c_double),
        ("mse", ctypes.c_double),
        ("sparsity", ctypes.c_double),
        ("aux", ctypes.c_double),
        ("fvu", ctypes.c_double),
        ("l0", ctypes.c_double),
        ("dead_fraction", ctypes.c_double),
        ("grad_norm", ctypes.c_double),
        ("lr", c_float),
    ]


class TrainerInfo(ctypes.Structure):
    """``saeplug_trainer_info``."""

    _fields_ = [("config", TrainConfig), ("steps_done", c_uint64), ("scale", c_float)]


class TrainProgress(ctypes.Structure):
    """``saeplug_train_progress``."""

    _fields_ = [
        ("step", c_uint64),
        ("total_steps", c_uint64),
        ("tokens", c_uint64),
        ("stats", TrainStats),
    ]


#: SAEPLUG_EVAL_HISTOGRAM_BINS
EVAL_HISTOGRAM_BINS = 200


class EvalResult(ctypes.Structure):
    """``saeplug_eval_result``."""

    _fields_ = [
        ("rows", c_uint64),
        ("l0", ctypes.c_double),
        ("fvu", ctypes.c_double),
        ("mse", ctypes.c_double),
        ("dead_latents", c_size_t),
        ("dense_latents", c_size_t),
        ("dead_fraction", ctypes.c_double),
        ("dense_fraction", ctypes.c_double),
        ("histogram_lo", ctypes.c_double),
        ("histogram_bin_width", ctypes.c_double),
        ("histogram_bins", c_size_t),
        ("density_histogram", c_uint64 * EVAL_HISTOGRAM_BINS),
    ]


#: ``saeplug_train_progress_fn``: int32 (const saeplug_train_progress *, void *).
PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int32, POINTER(TrainProgress), c_void_p)

_decl("saeplug_train_config_init", _status, POINTER(TrainConfig), c_uint32, c_size_t, c_size_t)
_decl("saeplug_trainer_new", _status, POINTER(TrainConfig), _pp)
_decl("saeplug_trainer_set_scale", _status, _p, _p, c_size_t, c_size_t)
_decl("saeplug_trainer_step", _status, _p, _p, c_size_t, c_size_t, POINTER(TrainStats))
_decl("saeplug_trainer_get_info", _status, _p, POINTER(TrainerInfo))
_decl("saeplug_trainer_save", _status, _p, c_char_p)
_decl("saeplug_trainer_save_checkpoint", _status, _p, c_char_p)
_decl("saeplug_trainer_load_checkpoint", _status, c_char_p, c_uint32, _pp)
_decl("saeplug_trainer_free", None, _p)
_decl(
    "saeplug_train_store",
    _status,
    c_char_p, POINTER(TrainConfig), c_uint64, c_char_p,  # store_dir, cfg, tokens, out_dir
    c_uint64, PROGRESS_FN, c_void_p, POINTER(TrainStats),  # every, callback, user_data, final
)  # fmt: skip
_decl("saeplug_eval_store", _status, _p, _p, c_char_p, c_uint32, c_uint64, POINTER(EvalResult))


def last_error_message() -> str:
    """This thread's last error message from the library ("" if none)."""
    n = lib.saeplug_last_error_length()
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n)
    lib.saeplug_last_error_message(buf, n)
    return buf.value.decode("utf-8", errors="replace")


def raise_status(status: int, path: Optional[str] = None) -> None:
    """Raise the exception for a failed call (``status != 0``), with the message the
    library stored for this thread. Must be called on the thread that made the call."""
    msg = last_error_message()
    if not msg:
        msg = lib.saeplug_status_str(status).decode("utf-8", errors="replace")
    raise error_for(status, msg, path)


def check(status: int, path: Optional[str] = None) -> None:
    """Raise unless ``status`` is OK."""
    if status:
        raise_status(status, path)


def encode_path(path: "str | os.PathLike[str]", what: str = "path") -> bytes:
    """A filesystem path as the NUL-terminated UTF-8 the C ABI takes."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        b = s
    else:
        try:
            b = s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(Status.INVALID_UTF8, f"{what} {s!r} is not valid UTF-8: {e}") from None
    if b"\0" in b:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{what} {s!r} contains a NUL byte")
    return b
