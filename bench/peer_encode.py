"""Peer for `saeplug bench encode`: times torch.relu((x - b_dec) @ W_enc + b_enc) on
the same SAE file and inputs, CPU, same machine, same run. Prints one JSON line.

usage: peer_encode.py SAE_DIR X.npy ITERS
Falls back to numpy when torch is not installed (the JSON says which peer ran)."""
import json
import sys
import time

import numpy as np


def load(sae_dir):
    from safetensors.numpy import load_file
    w = load_file(f"{sae_dir}/sae_weights.safetensors")
    return w["W_enc"], w["b_enc"], w["b_dec"]


def main():
    sae_dir, x_path, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
    w_enc, b_enc, b_dec = load(sae_dir)
    x = np.load(x_path)
    try:
        import torch
        torch.set_grad_enabled(False)
        W, be, bd, X = (torch.from_numpy(a) for a in (w_enc, b_enc, b_dec, x))
        f = lambda: torch.relu((X - bd) @ W + be)
        peer = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        f = lambda: np.maximum((x - b_dec) @ w_enc + b_enc, 0)
        peer = f"numpy {np.__version__}"
    for _ in range(3):
        f()
    t = time.perf_counter()
    for _ in range(iters):
        out = f()
    dt = (time.perf_counter() - t) / iters
    print(json.dumps({"peer": peer, "seconds_per_call": dt, "l0": float((np.asarray(out) > 0).sum(1).mean())}))


if __name__ == "__main__":
    main()
