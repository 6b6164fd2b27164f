"""Peer for `saeplug bench ito`: scikit-learn's orthogonal_mp_gram on the same
decoder and inputs (same machine, same run). Prints one JSON line.

usage: peer_omp.py SAE_DIR X.npy K"""
import json
import sys
import time

import numpy as np
from safetensors.numpy import load_file
from sklearn.linear_model import orthogonal_mp_gram


def main():
    sae_dir, x_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    w = load_file(f"{sae_dir}/sae_weights.safetensors")
    D, b = w["W_dec"], w["b_dec"]          # [n, d], rows = atoms
    X = np.load(x_path) - b                # [rows, d]
    t0 = time.perf_counter()
    gram = D @ D.T                         # [n, n], once per dictionary
    t1 = time.perf_counter()
    xy = D @ X.T                           # [n, rows]
    coef = orthogonal_mp_gram(gram, xy, n_nonzero_coefs=k, copy_Gram=False, copy_Xy=False)
    t2 = time.perf_counter()
    resid = X - coef.T @ D
    print(json.dumps({
        "peer": f"scikit-learn orthogonal_mp_gram (numpy {np.__version__})",
        "gram_seconds": t1 - t0,
        "solve_seconds": t2 - t1,
        "mean_residual": float(np.linalg.norm(resid, axis=1).mean()),
    }))


if __name__ == "__main__":
    main()
