"""Training and evaluation over the C ABI (``saeplug_trainer_*``,
``saeplug_train_store``, ``saeplug_eval_store``): the same trainer as
``saeplug train`` (docs/TRAINER.md), nothing computed here."""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _arrays, _fork
from ._errors import ClosedError, InvalidArgumentError, Status
from ._handle import LockedHandle
from ._lib import (
    PROGRESS_FN,
    EvalResult,
    TrainConfig,
    TrainerInfo,
    TrainProgress,
    TrainStats,
    check,
    encode_path,
    lib,
    raise_status,
)
from ._sae import Context, Sae

PathLike = Union[str, "os.PathLike[str]"]

_ARCHS = {"standard": 0, "topk": 1, "batchtopk": 2, "jumprelu": 3}
_SPLITS = {"train": 0, "heldout": 1}


@dataclass
class Stats:
    """What one training step measured (scaled units; FVU is scale-free)."""

    step: int
    loss: float
    mse: float
    sparsity: float
    aux: float
    fvu: float
    l0: float
    dead_fraction: float
    grad_norm: float
    lr: float

    @classmethod
    def _from(cls, s: TrainStats) -> "Stats":
        return cls(**{f.name: getattr(s, f.name) for f in fields(cls)})


@dataclass
class EvalReport:
    """What :func:`eval_store` measured (docs/TRAINING.md "Evaluation"): L0, the
    centred FVU, MSE per element, dead and dense latents (firing on no row / on
    more than 10% of rows) and the histogram of log10 feature density
    (``histogram[i]`` live latents in ``[lo + i·width, lo + (i+1)·width)``)."""

    rows: int
    l0: float
    fvu: float
    mse: float
    dead_latents: int
    dense_latents: int
    dead_fraction: float
    dense_fraction: float
    histogram_lo: float
    histogram_bin_width: float
    histogram: List[int] = field(default_factory=list)


def _config(arch: str, d_in: int, d_sae: int, options: Dict[str, Any]) -> Tuple[TrainConfig, Any]:
    if arch not in _ARCHS:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"unknown architecture {arch!r}; expected one of {', '.join(_ARCHS)}"
        )
    cfg = TrainConfig()
    check(lib.saeplug_train_config_init(ctypes.byref(cfg), _ARCHS[arch], int(d_in), int(d_sae)))
    keep = None
    names = {f[0] for f in TrainConfig._fields_} - {"struct_size", "arch", "d_in", "d_sae", "matryoshka", "n_matryoshka"}
    for k, v in options.items():
        if k == "matryoshka":
            widths = [int(w) for w in (v or [])]
            keep = (ctypes.c_size_t * len(widths))(*widths)
            cfg.matryoshka = ctypes.cast(keep, ctypes.POINTER(ctypes.c_size_t)) if widths else None
            cfg.n_matryoshka = len(widths)
        elif k in names:
            setattr(cfg, k, int(v) if isinstance(v, bool) else v)
        else:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"unknown training option {k!r}; known: {', '.join(sorted(names | {'matryoshka'}))}"
            )
    return cfg, keep


class Trainer(LockedHandle):
    """An SAE being trained on the CPU, one batch at a time (``saeplug_trainer_*``).

    ``arch`` is ``"standard"``, ``"topk"``, ``"batchtopk"`` or ``"jumprelu"``;
    the keyword options are the fields of ``saeplug_train_config`` (``k``,
    ``lr``, ``l1_coeff``, ``aux_coeff``, ``ghost_grads``,
    ``rescale_acts_by_decoder_norm``, ``bandwidth``, ``init_threshold``,
    ``clip_norm``, ``warmup_frac``, ``decay_frac``, ``batch_size``,
    ``total_steps``, ``dead_window``, ``seed``, ``threads``, ``matryoshka``),
    defaulting to SAELens's. A fixed seed and thread count give the same bits.

    >>> import numpy as np, saeplug
    >>> x = np.random.default_rng(0).standard_normal((256, 16)).astype(np.float32)
    >>> t = saeplug.Trainer("topk", d_in=16, d_sae=64, k=4, total_steps=10, seed=1, threads=1)
    >>> t.set_scale(x)
    >>> s = t.step(x)
    >>> s.step, s.l0
    (1, 4.0)
    """

    _free = "saeplug_trainer_free"

    def __init__(self, arch: str, d_in: int, d_sae: int, **options: Any) -> None:
        self._ptr = 0
        self._lock = threading.Lock()
        _fork.track_lock(self)
        cfg, _keep = _config(arch, d_in, d_sae, options)
        out = ctypes.c_void_p()
        check(lib.saeplug_trainer_new(ctypes.byref(cfg), ctypes.byref(out)))
        self._ptr = out.value or 0
        self.d_in = int(d_in)

    @classmethod
    def load_checkpoint(cls, path: PathLike, threads: int = 0) -> "Trainer":
        """Resume from a checkpoint (:meth:`save_checkpoint`, or ``saeplug
        train``'s); with the same thread count training continues bit-identically."""
        t = cls.__new__(cls)
        t._ptr = 0
        t._lock = threading.Lock()
        _fork.track_lock(t)
        out = ctypes.c_void_p()
        p = os.fspath(path)
        st = lib.saeplug_trainer_load_checkpoint(encode_path(p, "path"), int(threads), ctypes.byref(out))
        if st:
            raise_status(st, p)
        t._ptr = out.value or 0
        t.d_in = int(t.info()["config"]["d_in"])
        return t

    def _handle(self) -> int:
        if not self._ptr:
            raise ClosedError(Status.INVALID_ARGUMENT, "the trainer is closed")
        return self._ptr

    def set_scale(self, x: Any) -> None:
        """Set the activation scale √d_in / mean‖x‖ from a sample ``[n, d_in]``
        (folded into the weights at save)."""
        a, _ = _arrays.rows(x, self.d_in, "x", "d_in")
        with self._lock:
            check(lib.saeplug_trainer_set_scale(self._handle(), _arrays.addr(a), a.size, a.shape[0]))

    def step(self, x: Any) -> Stats:
        """One step on the batch ``x`` ``[n, d_in]`` (float32); NaN rows are refused
        and leave the trainer unchanged."""
        a, _ = _arrays.rows(x, self.d_in, "x", "d_in")
        s = TrainStats()
        with self._lock:
            check(lib.saeplug_trainer_step(self._handle(), _arrays.addr(a), a.size, a.shape[0], ctypes.byref(s)))
        return Stats._from(s)

    def info(self) -> Dict[str, Any]:
        """Steps done, the activation scale and the configuration."""
        i = TrainerInfo()
        with self._lock:
            check(lib.saeplug_trainer_get_info(self._handle(), ctypes.byref(i)))
            c = i.config
            cfg = {f[0]: getattr(c, f[0]) for f in TrainConfig._fields_ if f[0] not in ("matryoshka", "struct_size")}
            cfg["matryoshka"] = [c.matryoshka[j] for j in range(c.n_matryoshka)] if c.n_matryoshka else []
        cfg["arch"] = {v: k for k, v in _ARCHS.items()}.get(cfg["arch"], cfg["arch"])
        return {"steps_done": int(i.steps_done), "scale": float(i.scale), "config": cfg}

    def save(self, dir: PathLike) -> None:
        """Write the SAE as a SAELens v6 folder (cfg.json + sae_weights.safetensors)."""
        with self._lock:
            check(lib.saeplug_trainer_save(self._handle(), encode_path(dir, "dir")))

    def save_checkpoint(self, path: PathLike) -> None:
        """Write the whole training state atomically (see :meth:`load_checkpoint`)."""
        with self._lock:
            check(lib.saeplug_trainer_save_checkpoint(self._handle(), encode_path(path, "path")))

    def close(self) -> None:
        """Free the trainer now."""
        self._release()


def train_store(
    store: PathLike,
    out: PathLike,
    arch: str = "topk",
    d_sae: int = 4096,
    tokens: int = 0,
    progress: Optional[Callable[[int, int, Stats], Optional[bool]]] = None,
    progress_every: int = 10,
    **options: Any,
) -> Stats:
    """Train on an activation store (``saeplug-llama capture``) as ``saeplug train
    --input STORE`` does — rows shuffled by the seed, scale from the first 64
    batches, cycling over a small store — for ``tokens`` rows (0: one pass), and
    write the SAELens folder ``out``. ``progress(step, total_steps, stats)`` is
    called every ``progress_every`` steps; returning True stops the run with
    :class:`CancelledError` (the state is kept in ``out/checkpoint.safetensors``).
    Returns the last step's stats."""
    cfg, _keep = _config(arch, 0, d_sae, options)
    final = TrainStats()
    raised: List[BaseException] = []

    def cb(p: Any, _user: Any) -> int:
        if progress is None:
            return 0
        try:
            pr: TrainProgress = p.contents
            return 1 if progress(int(pr.step), int(pr.total_steps), Stats._from(pr.stats)) else 0
        except BaseException as e:  # stop the run; re-raised below
            raised.append(e)
            return 1

    fn = PROGRESS_FN(cb)
    s = os.fspath(store)
    st = lib.saeplug_train_store(
        encode_path(s, "store"),
        ctypes.byref(cfg),
        int(tokens),
        encode_path(out, "out"),
        int(progress_every),
        fn,
        None,
        ctypes.byref(final),
    )
    if raised:
        raise raised[0]
    if st:
        raise_status(st, s)
    return Stats._from(final)


def eval_store(
    sae: Sae,
    store: PathLike,
    split: str = "heldout",
    max_rows: int = 0,
    ctx: Optional[Context] = None,
) -> EvalReport:
    """Evaluate ``sae`` on a split (``"train"`` or ``"heldout"``) of an activation
    store, at most ``max_rows`` rows (0: all): L0, centred FVU, dead and dense
    latents, the feature-density histogram."""
    if split not in _SPLITS:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"unknown split {split!r}; expected train or heldout")
    c = sae._ctx(ctx)
    r = EvalResult()
    s = os.fspath(store)
    st = lib.saeplug_eval_store(sae._handle(), c._ptr, encode_path(s, "store"), _SPLITS[split], int(max_rows), ctypes.byref(r))
    if st:
        raise_status(st, s)
    return EvalReport(
        rows=int(r.rows),
        l0=r.l0,
        fvu=r.fvu,
        mse=r.mse,
        dead_latents=int(r.dead_latents),
        dense_latents=int(r.dense_latents),
        dead_fraction=r.dead_fraction,
        dense_fraction=r.dense_fraction,
        histogram_lo=r.histogram_lo,
        histogram_bin_width=r.histogram_bin_width,
        histogram=[int(v) for v in r.density_histogram[: r.histogram_bins]],
    )
