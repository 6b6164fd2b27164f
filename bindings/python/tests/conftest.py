"""Shared helpers: where the fixtures are, and independent readers for the files
the tests compare against (safetensors, GGUF): written from the formats' specs
here, sharing no code with saeplug."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(os.environ.get("SAEPLUG_FIXTURES", REPO / ".." / "shared" / "fixtures")).resolve()
SAELENS = FIXTURES / "saelens"
SMOLLM2 = FIXTURES / "smollm2-l6-topk"


def fixture_cases() -> List[Tuple[str, Path]]:
    """Every SAELens-written case: the five synthetic ones and the real SmolLM2 SAE.
    A missing fixtures folder fails the tests (it never skips them)."""
    assert SAELENS.is_dir(), f"SAELens fixtures missing: {SAELENS} (set SAEPLUG_FIXTURES)"
    cases = [(p.name, p) for p in sorted(SAELENS.iterdir()) if p.is_dir()]
    assert len(cases) >= 5, f"expected the 5 SAELens cases in {SAELENS}, found {cases}"
    assert SMOLLM2.is_dir(), f"fixture missing: {SMOLLM2}"
    cases.append((SMOLLM2.name, SMOLLM2))
    return cases


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32,
              "U32": np.uint32, "I64": np.int64, "U64": np.uint64, "BF16": None}  # fmt: skip


def read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    """safetensors: u64 little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets}}, then the raw little-endian data."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        dt = _ST_DTYPES[t["dtype"]]
        out[name] = np.frombuffer(raw[base + a : base + b], dtype=np.dtype(dt).newbyteorder("<")).reshape(
            t["shape"]
        ).copy()
    return out


def fixture_io(d: Path) -> Dict[str, np.ndarray]:
    io = read_safetensors(d / "io.safetensors")
    for k in ("x", "feature_acts", "recon"):
        assert io[k].dtype == np.float32, (d, k, io[k].dtype)
    return io


# GGUF (llama.cpp's file format), version 3: magic "GGUF", u32 version, u64 tensor
# count, u64 key/value count, the key/values, tensor infos, padding to
# general.alignment (32 by default), tensor data.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip


def read_gguf(path: Path) -> Tuple[Dict[str, object], Dict[str, np.ndarray]]:
    raw = Path(path).read_bytes()
    assert raw[:4] == b"GGUF", "not a GGUF file"
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", raw, 4)
    assert version == 3, version
    off = 24

    def take(fmt: str):
        nonlocal off
        v = struct.unpack_from(fmt, raw, off)[0]
        off += struct.calcsize(fmt)
        return v

    def string() -> str:
        nonlocal off
        n = take("<Q")
        s = raw[off : off + n].decode("utf-8")
        off += n
        return s

    def value(t: int):
        if t in _GGUF_SCALARS:
            return take(_GGUF_SCALARS[t])
        if t == 8:
            return string()
        if t == 9:
            et = take("<I")
            n = take("<Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")

    kv: Dict[str, object] = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("<I")
        dims = [take("<Q") for _ in range(nd)]
        ttype = take("<I")
        toff = take("<Q")
        infos.append((name, dims, ttype, toff))
    align = int(kv.get("general.alignment", 32))  # type: ignore[arg-type]
    data = (off + align - 1) // align * align
    tensors = {}
    for name, dims, ttype, toff in infos:
        assert ttype == 0, f"{name}: expected F32 (type 0), got {ttype}"
        count = int(np.prod(dims))
        a = np.frombuffer(raw, dtype="<f4", count=count, offset=data + toff)
        tensors[name] = a.reshape(list(reversed(dims))).copy()  # GGUF lists dims innermost first
    return kv, tensors


@pytest.fixture
def standard_dir() -> Path:
    return SAELENS / "standard"


def gpu_allowed_missing() -> bool:
    return os.environ.get("SAEPLUG_ALLOW_NO_GPU") == "1"
