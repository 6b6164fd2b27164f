"""Write SAE files in every non-SAELens layout saeplug loads, plus the expected
encode/decode outputs computed here in float64 numpy, independently of saeplug.

usage: python3 make_formats.py OUTDIR
Each case is OUTDIR/<case>/ with the SAE files and expected.npz (x, feature_acts, recon).
"""
import json
import os
import struct
import sys

import numpy as np

D_IN, D_SAE, N = 48, 160, 24
rng = np.random.default_rng(1234)


def st_write(path, tensors):
    """Minimal safetensors writer: tensors = {name: (dtype_str, np.ndarray of raw)}."""
    header, blobs, off = {}, [], 0
    for name, (dt, arr) in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_bf16(a):
    """Round-to-nearest-even f32 -> bf16 bits, and the f64 value they hold."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    bits = u.astype(np.uint16)
    val = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return bits, val


def weights():
    w_dec = rng.standard_normal((D_SAE, D_IN))
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    w_enc = w_dec.T + 0.1 * rng.standard_normal((D_IN, D_SAE))
    return dict(
        W_enc=w_enc.astype(np.float32),
        W_dec=w_dec.astype(np.float32),
        b_enc=(0.1 * rng.standard_normal(D_SAE)).astype(np.float32),
        b_dec=(0.1 * rng.standard_normal(D_IN)).astype(np.float32),
        threshold=(0.3 * rng.random(D_SAE)).astype(np.float32),
    )


def f64(w):
    return {k: v.astype(np.float64) for k, v in w.items()}


def x_batch():
    return rng.standard_normal((N, D_IN)).astype(np.float32)


def save_expected(d, x, f, recon):
    np.savez(os.path.join(d, "expected.npz"), x=x.astype(np.float32),
             feature_acts=f.astype(np.float32), recon=recon.astype(np.float32))


def topk_mask(vals, k, key):
    idx = np.argsort(-key, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(vals)
    np.put_along_axis(out, idx, np.take_along_axis(vals, idx, axis=1), axis=1)
    return out


def gemma_scope_1(out):
    d = os.path.join(out, "gemma_scope_1", "layer_3", "width_16k", "average_l0_20")
    os.makedirs(d, exist_ok=True)
    w = weights()
    np.savez(os.path.join(d, "params.npz"), **w)
    w, x = f64(w), x_batch()
    pre = x @ w["W_enc"] + w["b_enc"]
    f = np.where(pre > w["threshold"], np.maximum(pre, 0), 0)
    save_expected(d, x, f, f @ w["W_dec"] + w["b_dec"])
    return d


def gemma_scope_2(out):
    d = os.path.join(out, "gemma_scope_2", "resid_post", "layer_5_width_16k_l0_small")
    os.makedirs(d, exist_ok=True)
    w = weights()
    tensors, wf = {}, {}
    for k, v in w.items():
        bits, val = to_bf16(v)
        tensors[k.lower()] = ("BF16", bits)
        wf[k] = val
    st_write(os.path.join(d, "params.safetensors"), tensors)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architecture": "jump_relu", "model_name": "gemma-3-270m",
                   "hf_hook_point_in": "model.layers.5.output", "width": D_SAE}, f)
    x = x_batch()
    pre = x @ wf["W_enc"] + wf["b_enc"]
    f = np.where(pre > wf["threshold"], np.maximum(pre, 0), 0)
    save_expected(d, x, f, f @ wf["W_dec"] + wf["b_dec"])
    return d


def sparsify(out, activation, k):
    d = os.path.join(out, "sparsify_" + activation, "layers.4")
    os.makedirs(d, exist_ok=True)
    w = weights()
    enc_t = np.ascontiguousarray(w["W_enc"].T).astype(np.float16)  # nn.Linear weight [d_sae, d_in]
    st_write(os.path.join(d, "sae.safetensors"), {
        "encoder.weight": ("F16", enc_t),
        "encoder.bias": ("F32", w["b_enc"]),
        "W_dec": ("F32", w["W_dec"]),
        "b_dec": ("F32", w["b_dec"]),
    })
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump({"d_in": D_IN, "activation": activation, "expansion_factor": 0,
                   "num_latents": D_SAE, "k": k, "normalize_decoder": True,
                   "multi_topk": False, "skip_connection": False, "transcode": False}, f)
    x = x_batch().astype(np.float64)
    we = enc_t.astype(np.float64)
    pre = np.maximum((x - w["b_dec"]) @ we.T + w["b_enc"], 0)  # ReLU first (sparsify)
    if activation == "topk":
        f = topk_mask(pre, k, pre)
    else:  # groupmax
        g = pre.reshape(N, k, -1)
        f = np.zeros_like(g)
        am = g.argmax(axis=2)
        np.put_along_axis(f, am[..., None], np.take_along_axis(g, am[..., None], axis=2), axis=2)
        f = f.reshape(N, -1)
    save_expected(d, x, f, f @ w["W_dec"] + w["b_dec"])
    return d


def saelens(out, name, cfg, arch_fn, norm=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    w = weights()
    st_write(os.path.join(d, "sae_weights.safetensors"), {
        k: ("F32", w[k]) for k in ["W_enc", "W_dec", "b_enc", "b_dec"]})
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    w, x = f64(w), x_batch().astype(np.float64) * 3 + 1
    xin = x
    if norm == "layer_norm":
        mu = x.mean(axis=1, keepdims=True)
        sd = (x - mu).std(axis=1, ddof=1, keepdims=True)
        xin = (x - mu) / (sd + 1e-5)
    elif norm == "constant_norm_rescale":
        s = np.sqrt(D_IN) / np.linalg.norm(x, axis=1, keepdims=True)
        xin = x * s
    if cfg.get("apply_b_dec_to_input", True):
        xin = xin - w["b_dec"]
    f = arch_fn(xin @ w["W_enc"] + w["b_enc"])
    y = f @ w["W_dec"] + w["b_dec"]
    if norm == "layer_norm":
        y = y * sd + mu
    elif norm == "constant_norm_rescale":
        y = y / s
    save_expected(d, x, f, y)
    return d


def main(out):
    relu = lambda p: np.maximum(p, 0)
    cases = [
        gemma_scope_1(out),
        gemma_scope_2(out),
        sparsify(out, "topk", 12),
        sparsify(out, "groupmax", 16),
        # Pre-6.0 SAELens config: flat keys, activation_fn_str topk, kwargs k.
        saelens(out, "saelens_pre6_topk", {
            "d_in": D_IN, "d_sae": D_SAE, "hook_point": "blocks.2.hook_resid_pre",
            "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 10},
            "apply_b_dec_to_input": True, "normalize_activations": False,
            "finetuning_scaling_factor": False},
            lambda p: relu(topk_mask(p, 10, p))),
        saelens(out, "saelens_layer_norm", {
            "d_in": D_IN, "d_sae": D_SAE, "architecture": "standard", "apply_b_dec_to_input": True,
            "normalize_activations": "layer_norm", "metadata": {"sae_lens_version": "6.5.0"}},
            relu, "layer_norm"),
        saelens(out, "saelens_constant_norm", {
            "d_in": D_IN, "d_sae": D_SAE, "architecture": "standard", "apply_b_dec_to_input": False,
            "normalize_activations": "constant_norm_rescale", "metadata": {"sae_lens_version": "6.5.0"}},
            relu, "constant_norm_rescale"),
    ]
    for c in cases:
        print(c)


if __name__ == "__main__":
    main(sys.argv[1])
