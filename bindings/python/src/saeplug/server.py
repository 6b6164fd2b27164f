"""A steering server: llama-cpp-python behind an OpenAI-compatible HTTP API, with
per-request SAE feature edits.

    python -m saeplug.server --model model.gguf --sae SAE_DIR --layer 6 [--port 8080]

Endpoints (JSON, non-streaming):

* ``POST /v1/completions`` and ``POST /v1/chat/completions``: OpenAI's request
  and response shapes (llama-cpp-python's ``create_completion`` /
  ``create_chat_completion``), plus an optional field
  ``"saeplug": {"edits": [{"feature": 12, "op": "clamp", "value": 8.0}, ...],
  "layer": 6, "positions": "all" | "last" | {"first": P} | {"range": [A, B]}}``
  (ops: clamp, add, ablate, scale; ``layer`` defaults to ``--layer``). With the
  official client: ``client.completions.create(..., extra_body={"saeplug": {...}})``.
* ``POST /v1/saeplug/features``: ``{"prompt": "...", "top_k": 8}`` (and optionally
  ``"saeplug"`` edits) returns, for every prompt token, its ``top_k`` SAE features
  at the SAE's layer (after any edits of that layer):
  ``{"tokens": [{"position": 0, "token": 1, "text": "...", "features": [[id, act], ...]}, ...]}``.
* ``GET /v1/models``.

Requests are served one at a time (a lock around each generation), each on a
fresh KV cache, so concurrent requests never see each other's edits. Standard
library HTTP only (``http.server``): no extra dependency beyond llama-cpp-python.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._errors import InvalidArgumentError, SaeplugError
from ._sae import Sae
from .llama_cpp import Steering, attach, hook_from_edits

_PASS = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
         "logprobs", "top_logprobs", "repeat_penalty", "top_k", "min_p")  # fmt: skip


class BadRequest(Exception):
    pass


class SteeringService:
    """The model, the SAE and the steering state behind the HTTP handlers."""

    def __init__(self, llm: Any, sae: Sae, layer: int, steer: Optional[Steering] = None) -> None:
        self.llm = llm
        self.sae = sae
        self.layer = layer
        self.steer = steer or attach(llm)
        self.model_name = str(getattr(llm, "model_path", "model"))

    def _hooks(self, spec: Any) -> List[Any]:
        if spec is None:
            return []
        if not isinstance(spec, dict):
            raise BadRequest("'saeplug' must be an object")
        edits = spec.get("edits", [])
        if not isinstance(edits, list):
            raise BadRequest("'saeplug.edits' must be a list")
        if not edits:
            return []
        layer = spec.get("layer", self.layer)
        if not isinstance(layer, int) or layer < 1:
            raise BadRequest("'saeplug.layer' must be an integer >= 1")
        try:
            return [hook_from_edits(self.sae, layer, edits, spec.get("positions"))]
        except (SaeplugError, ValueError, TypeError) as e:
            raise BadRequest(str(e)) from None

    def _kwargs(self, body: Dict[str, Any]) -> Dict[str, Any]:
        if body.get("stream"):
            raise BadRequest("streaming is not supported by the saeplug server")
        return {k: body[k] for k in _PASS if k in body and body[k] is not None}

    def completion(self, body: Dict[str, Any]) -> Dict[str, Any]:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string")
        kw = self._kwargs(body)
        hooks = self._hooks(body.get("saeplug"))
        with self.steer.using(hooks):
            out: Dict[str, Any] = self.llm.create_completion(prompt=prompt, **kw)
        out["model"] = body.get("model") or self.model_name
        return out

    def chat(self, body: Dict[str, Any]) -> Dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        kw = self._kwargs(body)
        kw.pop("top_logprobs", None)
        hooks = self._hooks(body.get("saeplug"))
        with self.steer.using(hooks):
            out: Dict[str, Any] = self.llm.create_chat_completion(messages=messages, **kw)
        out["model"] = body.get("model") or self.model_name
        return out

    def features(self, body: Dict[str, Any]) -> Dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("'prompt' must be a non-empty string")
        top_k = body.get("top_k", 8)
        if not isinstance(top_k, int) or not 1 <= top_k <= self.sae.d_sae:
            raise BadRequest(f"'top_k' must be an integer in 1..{self.sae.d_sae}")
        hooks = self._hooks(body.get("saeplug"))
        toks = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        if len(toks) > self.llm.n_ctx():
            raise BadRequest(f"the prompt has {len(toks)} tokens; the context holds {self.llm.n_ctx()}")
        rows: List[np.ndarray] = []
        with self.steer.using(hooks):
            self.steer.add_rows_callback(self.sae_layer(body), rows.append)
            self.llm.eval(toks)
        x = np.concatenate(rows, axis=0) if rows else np.zeros((0, self.sae.d_in), np.float32)
        if x.shape[0] != len(toks):
            raise RuntimeError(f"captured {x.shape[0]} rows for {len(toks)} tokens")
        f = self.sae.encode(x)
        out = []
        for i, t in enumerate(toks):
            idx = np.argsort(-f[i], kind="stable")[:top_k]
            feats = [[int(j), float(f[i, j])] for j in idx if f[i, j] > 0]
            text = self.llm.detokenize([t]).decode("utf-8", errors="replace")
            out.append({"position": i, "token": int(t), "text": text, "features": feats})
        return {"object": "saeplug.features", "layer": self.sae_layer(body), "tokens": out}

    def sae_layer(self, body: Dict[str, Any]) -> int:
        spec = body.get("saeplug") or {}
        layer = spec.get("layer", self.layer) if isinstance(spec, dict) else self.layer
        return int(layer)

    def models(self) -> Dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": int(time.time()),
                                            "owned_by": "saeplug"}]}  # fmt: skip


def make_handler(service: SteeringService) -> type:
    routes = {
        "/v1/completions": service.completion,
        "/v1/chat/completions": service.chat,
        "/v1/saeplug/features": service.features,
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, obj: Any) -> None:
            data = json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, msg: str, kind: str) -> None:
            self._send(code, {"error": {"message": msg, "type": kind, "code": code}})

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                self._send(200, service.models())
            elif path == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if not path.startswith("/v1"):
                path = "/v1" + path
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
            except (ValueError, BadRequest) as e:
                self._error(400, f"bad JSON body: {e}", "invalid_request_error")
                return
            fn = routes.get(path)
            if fn is None:
                self._error(404, f"no route {self.path}", "not_found")
                return
            try:
                self._send(200, fn(body))
            except (BadRequest, InvalidArgumentError) as e:
                self._error(400, str(e), "invalid_request_error")
            except Exception as e:  # the server keeps serving
                self._error(500, f"{type(e).__name__}: {e}", "server_error")

    return Handler


def serve(service: SteeringService, host: str = "127.0.0.1", port: int = 8080) -> Tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the HTTP server in a background thread; returns (server, thread)."""
    httpd = ThreadingHTTPServer((host, port), make_handler(service))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    return httpd, t


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m saeplug.server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the GGUF model")
    ap.add_argument("--sae", required=True, help="the SAE folder (any format saeplug reads)")
    ap.add_argument("--layer", type=int, required=True, help="the block whose output the SAE reads (l_out-N)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-c", "--n-ctx", type=int, default=2048)
    ap.add_argument("-b", "--n-batch", type=int, default=512)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--adapter", default=None, help="libsaeplug_llama.so (default: $SAEPLUG_LLAMA_ADAPTER)")
    a = ap.parse_args(argv)
    import llama_cpp

    llm = llama_cpp.Llama(a.model, n_ctx=a.n_ctx, n_batch=a.n_batch, n_threads=a.threads,
                          n_threads_batch=a.threads, verbose=False)  # fmt: skip
    sae = Sae.open(a.sae)
    service = SteeringService(llm, sae, a.layer, attach(llm, adapter=a.adapter))
    httpd = ThreadingHTTPServer((a.host, a.port), make_handler(service))
    print(f"saeplug server on http://{a.host}:{httpd.server_address[1]}/v1", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
