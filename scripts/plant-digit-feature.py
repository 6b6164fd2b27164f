#!/usr/bin/env python3
"""Plant a feature that fires on digit tokens into an SAE (issue 13's auto-interp
check: a planted feature with a known meaning, so the detection score of the right
explanation can be compared with a wrong one's).

    plant-digit-feature.py SAE_DIR STORE_DIR MODEL.gguf OUT_SAE_DIR [--feature J] [--rows N]

Reads N rows of the store's train split and their tokens; a token is a "digit"
token when its text (GPT-2 byte-level decoded) is non-empty digits after trimming
spaces. Feature J (default: the first feature that never fires on those rows) gets
the unit direction u = mean(x' | digit) - mean(x' | other), normalised, with x' the
SAE's input (x - b_dec when apply_b_dec_to_input), the threshold t on x'·u that
best separates the two groups (balanced accuracy), and an encoder scale s making
its pre-activation s·(x'·u - t) large next to the SAE's own top-k values; its
decoder row is u. Prints how well the planted feature fires on digits (numpy
encode of the rows with the new weights).
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from safetensors.numpy import load_file, save_file


def byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def vocab(model):
    r = GGUFReader(model)
    f = r.fields["tokenizer.ggml.tokens"]
    dec = byte_decoder()
    out = []
    for i in f.data:
        t = bytes(f.parts[i]).decode("utf-8")
        out.append(bytes(dec.get(c, ord("?")) for c in t).decode("utf-8", "replace"))
    return out


def encode(cfg, w, x):
    if cfg.get("apply_b_dec_to_input", True):
        x = x - w["b_dec"]
    h = x @ w["W_enc"] + w["b_enc"]
    if cfg.get("rescale_acts_by_decoder_norm", False):
        h = h * np.linalg.norm(w["W_dec"], axis=1)
    k = int(cfg["k"])
    idx = np.argpartition(-h, k - 1, axis=1)[:, :k]
    f = np.zeros_like(h)
    rows = np.arange(h.shape[0])[:, None]
    f[rows, idx] = np.maximum(h[rows, idx], 0.0)
    return f


def main():
    p = argparse.ArgumentParser()
    p.add_argument("sae", type=Path)
    p.add_argument("store", type=Path)
    p.add_argument("model")
    p.add_argument("out", type=Path)
    p.add_argument("--feature", type=int, default=None)
    p.add_argument("--rows", type=int, default=30000)
    a = p.parse_args()
    cfg = json.loads((a.sae / "cfg.json").read_text())
    if cfg.get("architecture") != "topk":
        raise SystemExit("this script plants into TopK SAEs")
    w = {k: v.astype(np.float64) for k, v in load_file(str(a.sae / "sae_weights.safetensors")).items()}
    man = json.loads((a.store / "manifest.json").read_text())
    xs, ts = [], []
    n = 0
    for sh in man["splits"]["train"]["shards"]:
        t = load_file(str(a.store / sh["file"]))
        xs.append(t["acts"].astype(np.float64))
        ts.append(t["tokens"])
        n += xs[-1].shape[0]
        if n >= a.rows:
            break
    x = np.concatenate(xs)[: a.rows]
    tok = np.concatenate(ts)[: a.rows]
    voc = vocab(a.model)
    text = [voc[t] for t in tok]
    digit = np.array([s.strip() != "" and s.strip().isdigit() for s in text])
    print(f"{x.shape[0]} rows, {digit.sum()} digit tokens ({digit.mean():.2%})")
    f0 = encode(cfg, w, x)
    j = a.feature
    if j is None:
        j = int(np.flatnonzero((f0 > 0).sum(axis=0) == 0)[0])
    xp = x - w["b_dec"] if cfg.get("apply_b_dec_to_input", True) else x
    u = xp[digit].mean(axis=0) - xp[~digit].mean(axis=0)
    u /= np.linalg.norm(u)
    proj = xp @ u
    cands = np.quantile(proj, np.linspace(0.5, 0.999, 400))
    ba = [((proj[digit] > c).mean() + (proj[~digit] <= c).mean()) / 2 for c in cands]
    t = cands[int(np.argmax(ba))]
    typical = np.quantile(f0[f0 > 0], 0.9)
    gap = np.median(proj[digit] - t)
    s = 3.0 * typical / max(gap, 1e-6)
    w2 = dict(w)
    w2["W_enc"] = w["W_enc"].copy()
    w2["W_enc"][:, j] = s * u
    w2["b_enc"] = w["b_enc"].copy()
    w2["b_enc"][j] = -s * t
    w2["W_dec"] = w["W_dec"].copy()
    w2["W_dec"][j] = u
    f1 = encode(cfg, w2, x)
    fires = f1[:, j] > 0
    tp = (fires & digit).sum()
    print(f"planted feature {j}: threshold {t:.3f}, scale {s:.3f}; fires on {fires.sum()} rows, "
          f"precision {tp / max(fires.sum(), 1):.3f}, recall {tp / max(digit.sum(), 1):.3f}")
    a.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(a.sae / "cfg.json", a.out / "cfg.json")
    save_file({k: v.astype(np.float32) for k, v in w2.items()}, str(a.out / "sae_weights.safetensors"))
    print(json.dumps({"feature": j, "rows": int(x.shape[0]), "digit_rows": int(digit.sum()),
                      "fires": int(fires.sum()), "precision": float(tp / max(fires.sum(), 1)),
                      "recall": float(tp / max(digit.sum(), 1))}))


if __name__ == "__main__":
    main()
