"""Check `saeplug-llama logits` against numpy (tests/logits.rs).

usage: check_logits.py MODEL.gguf SAE_DIR LOGITS.json

The unembedding is read and dequantised by the `gguf` package (GGUFReader,
gguf.quants.dequantize), independently of ggml; output_norm.weight's gain is
folded in; each feature's effects W_U' @ W_dec[f] are computed in float64. For
every feature in the JSON: each listed token's logit equals numpy's to 1e-3
relative, the listed top (bottom) tokens are numpy's top (bottom) ones (up to
near-ties), the histogram range is numpy's min and max and its counts sum to the
vocabulary. Prints "ok N features" on success, raises otherwise."""
import json
import os
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

model, sae_dir, out = sys.argv[1:4]
r = gguf.GGUFReader(model)
tensors = {t.name: t for t in r.tensors}
t = tensors.get("output.weight") or tensors["token_embd.weight"]
w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
n_embd = int(t.shape[0])
w = w.reshape(-1, n_embd)
g = gguf.quants.dequantize(tensors["output_norm.weight"].data, tensors["output_norm.weight"].tensor_type)
w = w * np.asarray(g, np.float64).reshape(1, n_embd)
w_dec = load_file(os.path.join(sae_dir, "sae_weights.safetensors"))["W_dec"].astype(np.float64)

res = json.load(open(out))
assert res["unembedding"]["norm_gain_folded"] is True, res["unembedding"]
assert res["unembedding"]["n_vocab"] == w.shape[0], (res["unembedding"], w.shape)
assert res["features"], "no features in the output"
for f in res["features"]:
    e = w @ w_dec[f["feature"]]
    scale = np.abs(e).max()
    order = np.argsort(-e, kind="stable")
    for key, ref in (("top", order), ("bottom", order[::-1])):
        got = f[key]
        k = len(got)
        assert k == 10, (key, k)
        for item in got:
            want = e[item["token"]]
            assert abs(item["logit"] - want) <= 1e-3 * abs(want) + 1e-6 * scale, (f["feature"], key, item, want)
        # The listed tokens are the k most extreme, up to near-ties at the k-th.
        kth = e[ref[k - 1]]
        tol = 1e-3 * abs(kth) + 1e-6 * scale
        for item in got:
            v = e[item["token"]]
            assert (v >= kth - tol) if key == "top" else (v <= kth + tol), (f["feature"], key, item, kth)
        vals = [item["logit"] for item in got]
        assert vals == sorted(vals, reverse=(key == "top")), (key, vals)
    h = f["histogram"]
    assert abs(h["lo"] - e.min()) <= 1e-3 * abs(e.min()) + 1e-6 * scale, (h["lo"], e.min())
    assert abs(h["hi"] - e.max()) <= 1e-3 * abs(e.max()) + 1e-6 * scale, (h["hi"], e.max())
    assert sum(h["counts"]) == w.shape[0], sum(h["counts"])
    nb = len(h["counts"])
    ref_counts = np.bincount(np.minimum(((e - e.min()) / (e.max() - e.min()) * nb).astype(int), nb - 1), minlength=nb)
    diff = np.abs(np.asarray(h["counts"]) - ref_counts).sum()
    assert diff <= 20, (f["feature"], diff, h["counts"], ref_counts.tolist())
print("ok", len(res["features"]), "features")
