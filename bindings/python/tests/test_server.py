"""The steering server (python -m saeplug.server) through the official openai
client: steered and unsteered requests sent in parallel return exactly what each
gives alone (greedy decoding), steering changes the output, and the features
endpoint agrees with encoding the CLI's captured activations."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import SMOLLM2
from test_llama_cpp import MODEL, _cli, _tool

LAYER = 6


@pytest.fixture(scope="module")
def server():
    tool = _tool()
    try:
        import llama_cpp  # noqa: F401
        import openai
    except ImportError as e:
        pytest.fail(f"missing package ({e}): pip install openai; scripts/install-llama-cpp-python.sh")
    p = subprocess.Popen(
        [sys.executable, "-m", "saeplug.server", "--model", str(MODEL), "--sae", str(SMOLLM2), "--layer",
         str(LAYER), "--port", "0", "-c", "512", "-t", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = p.stdout.readline() if p.stdout else ""
    if "http://" not in line:
        p.kill()
        pytest.fail(f"the server did not start: {line!r} {p.stderr.read() if p.stderr else ''}")
    base = line.strip().split()[-1]
    client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=300)
    yield client, tool
    p.terminate()
    p.wait(timeout=30)


PROMPT = "The capital of France is"
STEER_A = {"edits": [{"feature": 12, "op": "clamp", "value": 30.0}]}
STEER_B = {"edits": [{"feature": 5, "op": "add", "value": 40.0}], "layer": LAYER, "positions": "all"}


def _complete(client, steer=None) -> str:
    kw = {"extra_body": {"saeplug": steer}} if steer else {}
    r = client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=12, temperature=0, **kw)
    return r.choices[0].text


def _chat(client, steer=None) -> str:
    kw = {"extra_body": {"saeplug": steer}} if steer else {}
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Name a planet."}], max_tokens=10, temperature=0, **kw
    )
    return r.choices[0].message.content or ""


def test_parallel_requests_return_what_they_give_alone(server):
    client, _ = server
    alone = {name: _complete(client, s) for name, s in (("plain", None), ("a", STEER_A), ("b", STEER_B))}
    assert alone["a"] != alone["plain"] and alone["b"] != alone["plain"], alone
    chat_alone = {name: _chat(client, s) for name, s in (("plain", None), ("a", STEER_A))}
    assert chat_alone["a"] != chat_alone["plain"], chat_alone
    jobs = [("plain", None), ("a", STEER_A), ("b", STEER_B)] * 3
    with ThreadPoolExecutor(max_workers=len(jobs) + 2) as ex:
        futs = [(n, ex.submit(_complete, client, s)) for n, s in jobs]
        chats = [(n, ex.submit(_chat, client, s)) for n, s in (("a", STEER_A), ("plain", None))]
        for n, f in futs:
            assert f.result() == alone[n], (n, f.result(), alone[n])
        for n, f in chats:
            assert f.result() == chat_alone[n], (n, f.result(), chat_alone[n])


def test_bad_edits_are_refused_and_the_server_keeps_serving(server):
    import openai

    client, _ = server
    with pytest.raises(openai.BadRequestError, match="feature"):
        _complete(client, {"edits": [{"feature": 10**6, "op": "clamp", "value": 1.0}]})
    with pytest.raises(openai.BadRequestError, match="unknown edit"):
        _complete(client, {"edits": [{"feature": 1, "op": "explode", "value": 1.0}]})
    with pytest.raises(openai.BadRequestError, match="not a block"):
        _complete(client, {"edits": [{"feature": 1, "op": "clamp", "value": 1.0}], "layer": 99})
    assert _complete(client) == _complete(client)


def test_features_endpoint_matches_the_cli_capture(server):
    import saeplug

    client, tool = server
    r = client.post("/saeplug/features", body={"prompt": PROMPT, "top_k": 5}, cast_to=object)
    toks = r["tokens"]
    assert r["layer"] == LAYER and len(toks) >= 4
    ids = ",".join(str(t["token"]) for t in toks)
    with tempfile.TemporaryDirectory() as d:
        _cli(tool, "-t", "2", "-c", "512", "-fa", "off", "--prompt-tokens", ids, "-n", "0", "--capture",
             f"{d}/acts.bin", "--capture-layer", str(LAYER))  # fmt: skip
        sae = saeplug.Sae.open(SMOLLM2)
        x = np.fromfile(f"{d}/acts.bin", dtype="<f4").reshape(len(toks), sae.d_in)
    f = sae.encode(x)
    for i, t in enumerate(toks):
        want = np.argsort(-f[i], kind="stable")[:5]
        got = [j for j, _ in t["features"]]
        assert got == [int(j) for j in want if f[i, j] > 0], (i, got, want)
        for j, v in t["features"]:
            assert abs(v - float(f[i, j])) <= 1e-4 * max(1.0, abs(float(f[i, j])))
