#!/usr/bin/env python3
"""One feature's activation on one row of an activation store, computed here in
numpy (f64) from the SAE's own weights: the independent reference the dashboard
test compares a page's value with.

    encode_row.py SAE_DIR STORE_DIR SPLIT ROW FEATURE   ->  prints the value

SAELens formulas: x' = x - b_dec when apply_b_dec_to_input; h = x' W_enc + b_enc;
standard: ReLU(h); jumprelu: h where h > threshold; topk: ReLU of the k largest
(of h · ||W_dec|| when rescale_acts_by_decoder_norm, the code being that product).
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def main():
    sae, store, split, row, feat = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    cfg = json.loads((sae / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(sae / "sae_weights.safetensors")).items()}
    man = json.loads((store / "manifest.json").read_text())
    r = row
    for sh in man["splits"][split]["shards"]:
        if r < sh["rows"]:
            x = load_file(str(store / sh["file"]))["acts"][r].astype(np.float64)
            break
        r -= sh["rows"]
    else:
        raise SystemExit(f"row {row} is not in split {split}")
    if cfg.get("apply_b_dec_to_input", True):
        x = x - w["b_dec"]
    h = x @ w["W_enc"] + w["b_enc"]
    arch = cfg.get("architecture", "standard")
    if arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm", False):
            h = h * np.linalg.norm(w["W_dec"], axis=1)
        k = int(cfg["k"])
        top = np.argsort(-h, kind="stable")[:k]
        v = max(h[feat], 0.0) if feat in top else 0.0
    elif arch == "jumprelu":
        v = h[feat] if h[feat] > w["threshold"][feat] else 0.0
    else:
        v = max(h[feat], 0.0)
    print(repr(float(v)))


if __name__ == "__main__":
    main()
