"""saeplug.llama_cpp: steering and recording inside llama-cpp-python against the
saeplug-llama tool (bit-identical logits, identical recordings), and the
OpenAI-compatible steering server with the official ``openai`` client.

Needs the llama.cpp cache of scripts/build-llama.sh ($SAEPLUG_LLAMA_DIR, default
~/.cache/saeplug/llama), the saeplug-llama tool and its libsaeplug_llama.so
($SAEPLUG_LLAMA_TOOL, from bindings/llama.cpp/build.sh), llama-cpp-python installed
against that build (scripts/install-llama-cpp-python.sh) and loaded from it
(LLAMA_CPP_LIB_PATH). scripts/test-python.sh sets all of this up; anything missing
fails the tests (they never skip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import numpy as np
import pytest

from conftest import SMOLLM2

LLAMA_DIR = Path(os.environ.get("SAEPLUG_LLAMA_DIR", Path.home() / ".cache" / "saeplug" / "llama"))
MODEL = LLAMA_DIR / "model.gguf"
LAYER = 6
PROMPT = ("The history of astronomy begins with ancient observers who tracked the Sun, the Moon and the "
          "planets across the sky, and built calendars from their motions.")  # fmt: skip


def _tool() -> str:
    tool = os.environ.get("SAEPLUG_LLAMA_TOOL")
    assert tool and os.access(tool, os.X_OK), (
        "set SAEPLUG_LLAMA_TOOL to the saeplug-llama executable (bash bindings/llama.cpp/build.sh prints it; "
        "scripts/test-python.sh does this)"
    )
    assert MODEL.is_file(), f"llama.cpp cache missing: {MODEL} (bash scripts/build-llama.sh)"
    lib = os.environ.get("LLAMA_CPP_LIB_PATH")
    assert lib and Path(lib, "libllama.so").is_file(), (
        "set LLAMA_CPP_LIB_PATH to the llama.cpp build's bin folder (so that llama-cpp-python loads the "
        "libllama the adapter was built against)"
    )
    return tool


@pytest.fixture(scope="module")
def env():
    tool = _tool()
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.fail(f"llama-cpp-python is not installed ({e}); run scripts/install-llama-cpp-python.sh")
    import saeplug

    sae = saeplug.Sae.open(SMOLLM2)
    return tool, sae


def _cli(tool: str, *args: str) -> str:
    r = subprocess.run([tool, "-m", str(MODEL), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _llm(n_ctx: int, n_batch: int, threads: int = 2):
    import llama_cpp

    return llama_cpp.Llama(str(MODEL), n_ctx=n_ctx, n_batch=n_batch, n_threads=threads, n_threads_batch=threads,
                           verbose=False)  # fmt: skip


def _logits(llm) -> np.ndarray:
    import llama_cpp

    p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(p, shape=(llm.n_vocab(),)).copy()


def _greedy(llm, toks: List[int], n: int) -> List[int]:
    """saeplug-llama's loop: the prompt, then argmax (first maximum) one token at a time."""
    llm.reset()
    llm.eval(toks)
    out = []
    for _ in range(n):
        best = int(np.argmax(_logits(llm)))
        out.append(best)
        if llm._model.token_is_eog(best) if hasattr(llm._model, "token_is_eog") else best == llm.token_eos():
            break
        llm.eval([best])
    return out


FA = {"auto": "LLAMA_FLASH_ATTN_TYPE_AUTO", "off": "LLAMA_FLASH_ATTN_TYPE_DISABLED"}


CASES = [
    # n_batch, flash attention, positions, edits (CLI flag, hook method, feature, value)
    (512, "auto", "all", [("--clamp", "clamp", 12, 25.0)]),
    (8, "off", "all", [("--clamp", "clamp", 12, 25.0), ("--ablate", "ablate", 5, 0.0)]),
    (8, "auto", "last", [("--add", "add", 5, 30.0), ("--scale", "scale", 12, 4.0)]),
    # positions 0..20 span three batches of 8: each batch's pos0 must reach the adapter
    (8, "off", "first:20", [("--clamp", "clamp", 12, 25.0)]),
]


@pytest.mark.parametrize("n_batch,fa,positions,edits", CASES)
def test_steered_logits_are_bit_identical_to_the_cli(env, n_batch, fa, positions, edits):
    import llama_cpp
    import saeplug
    import saeplug.llama_cpp as spl

    tool, sae = env
    n_ctx = 96
    llm = _llm(n_ctx, n_batch)
    toks = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    assert len(toks) > n_batch or n_batch == 512  # several batches when n_batch is small
    steer = spl.attach(llm, flash_attn_type=getattr(llama_cpp, FA[fa]))
    ids = ",".join(map(str, toks))
    common = ["-t", "2", "-c", str(n_ctx), "-b", str(n_batch), "-fa", fa, "--prompt-tokens", ids, "-n", "0"]
    with tempfile.TemporaryDirectory() as d:
        # Unsteered.
        llm.reset()
        llm.eval(toks)
        u_py = _logits(llm)
        _cli(tool, *common, "--dump-logits", f"{d}/u.bin")
        u_cli = np.fromfile(f"{d}/u.bin", dtype="<f4")
        assert np.array_equal(u_py, u_cli), f"unsteered logits differ: max {np.abs(u_py - u_cli).max()}"
        # The same edits through Python and through the CLI.
        kind, _, n = positions.partition(":")
        hook = saeplug.Hook(sae, LAYER).positions(kind, int(n or 0))
        flags: List[str] = []
        for flag, method, feat, value in edits:
            if method == "ablate":
                hook.ablate(feat)
                flags += [flag, str(feat)]
            else:
                getattr(hook, method)(feat, value)
                flags += [flag, f"{feat}:{value}"]
        with steer.using([hook]):
            llm.eval(toks)
            s_py = _logits(llm)
        _cli(tool, *common, "--sae", str(SMOLLM2), "--layer", str(LAYER), "--positions", positions, *flags,
             "--dump-logits", f"{d}/s.bin")  # fmt: skip
        s_cli = np.fromfile(f"{d}/s.bin", dtype="<f4")
        assert np.array_equal(s_py, s_cli), f"steered logits differ from the CLI's: max {np.abs(s_py - s_cli).max()}"
        assert np.abs(s_py - u_py).max() > 1e-2, "the edits did not change the logits"
        # After the block the hooks are gone: unsteered again, bit for bit.
        llm.reset()
        llm.eval(toks)
        assert np.array_equal(_logits(llm), u_py)


def test_recording_while_generating_equals_the_cli(env):
    import llama_cpp
    import saeplug
    import saeplug.llama_cpp as spl

    tool, sae = env
    n_ctx, n_batch, n_gen = 96, 16, 12
    llm = _llm(n_ctx, n_batch)
    toks = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    steer = spl.attach(llm, flash_attn_type=llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO)
    hook = saeplug.Hook(sae, LAYER).clamp(12, 10.0)
    rec = saeplug.Recorder(sae, top_n=64)
    with steer.using([hook], [(rec, LAYER)]):
        gen = _greedy(llm, toks, n_gen)
        py = rec.to_dict()
    with tempfile.TemporaryDirectory() as d:
        out = _cli(tool, "-t", "2", "-c", str(n_ctx), "-b", str(n_batch), "-fa", "auto",
                   "--prompt-tokens", ",".join(map(str, toks)), "-n", str(n_gen), "--sae", str(SMOLLM2),
                   "--layer", str(LAYER), "--clamp", "12:10.0", "--record", f"{d}/rec.json")  # fmt: skip
        cli = json.loads(Path(f"{d}/rec.json").read_text())
    cli_gen = [int(t) for t in next(l for l in out.splitlines() if l.startswith("TOKENS:")).split()[1:]]
    assert gen == cli_gen
    # Both decode every generated token (the loop decodes a token after picking it).
    assert py["tokens"] == len(toks) + len(gen) == cli["tokens"]
    assert any(int(k) == 12 for k in py["top"]), "the clamped feature was not recorded"
    assert py == cli


def test_a_mismatched_adapter_is_refused(env):
    """An adapter whose baked-in ggml version differs is refused before any decode."""
    import llama_cpp.llama_cpp as lc
    import saeplug.llama_cpp as spl

    class Fake:
        def __init__(self, real):
            self.real = real

        def saeplug_llama_built_ggml_version(self):
            return b"0.0.1"

        def saeplug_llama_ggml_symbol(self):
            return self.real.saeplug_llama_ggml_symbol()

    real = spl._load_adapter(spl.adapter_path())
    spl._check_same_llama(real, lc._lib)  # the real pair passes
    with pytest.raises(spl.AdapterMismatchError, match="another llama.cpp"):
        spl._check_same_llama(Fake(real), lc._lib)

    class Other(Fake):
        def saeplug_llama_built_ggml_version(self):
            return self.real.saeplug_llama_built_ggml_version()

        def saeplug_llama_ggml_symbol(self):
            return 1234

    with pytest.raises(spl.AdapterMismatchError, match="same libggml-base loaded: False"):
        spl._check_same_llama(Other(real), lc._lib)


def test_an_error_inside_the_callback_raises_and_the_model_recovers(env):
    """A hook whose SAE does not fit the model (d_in 64 on a 576-wide residual)
    fails inside llama_decode: the decode raises with saeplug's message, the hooks
    are removed, and the next decode is the unsteered one."""
    import saeplug
    import saeplug.llama_cpp as spl

    from conftest import SAELENS

    _, sae = env
    llm = _llm(64, 64)
    toks = llm.tokenize(b"The capital of France is", add_bos=True, special=False)
    steer = spl.attach(llm)
    with pytest.raises(saeplug.SaeplugError, match="already attached"):
        spl.attach(llm)
    with pytest.raises(saeplug.InvalidArgumentError, match="not a block"):
        steer.add_hook(saeplug.Hook(sae, 30).clamp(1, 1.0))  # SmolLM2-135M has blocks 0..29
    llm.eval(toks)
    u = _logits(llm)
    small = saeplug.Sae.open(SAELENS / "standard")
    assert small.d_in != sae.d_in
    with pytest.raises(saeplug.SaeplugError, match="inside llama_decode") as e:
        with steer.using([saeplug.Hook(small, LAYER).clamp(1, 3.0)]):
            llm.eval(toks)
    assert e.value.status != saeplug.Status.OK
    llm.reset()
    llm.eval(toks)
    assert np.array_equal(_logits(llm), u)
    del steer
    llm.close()
