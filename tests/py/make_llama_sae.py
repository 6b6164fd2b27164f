"""Build a test SAE for SmolLM2 from residual activations captured through the
llama.cpp adapter: b_dec = mean activation, the first 64 decoder rows are the top
principal directions of the centred activations, the rest random unit vectors;
tied encoder W_enc = W_dec^T; ReLU ("standard"); apply_b_dec_to_input true.
Nothing is trained.

usage: make_llama_sae.py ACTS.bin N_EMBD OUT_DIR"""
import json
import os
import struct
import sys

import numpy as np


def main():
    acts_path, n_embd, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    a = np.fromfile(acts_path, dtype=np.float32).reshape(-1, n_embd).astype(np.float64)
    b_dec = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - b_dec, full_matrices=False)
    rng = np.random.default_rng(0)
    d_sae = 1024
    n_pc = min(64, vt.shape[0])
    rest = rng.standard_normal((d_sae - n_pc, n_embd))
    w_dec = np.concatenate([vt[:n_pc], rest])
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    tensors = {
        "W_dec": w_dec.astype(np.float32),
        "W_enc": np.ascontiguousarray(w_dec.T).astype(np.float32),
        "b_enc": np.zeros(d_sae, np.float32),
        "b_dec": b_dec.astype(np.float32),
    }
    os.makedirs(out, exist_ok=True)
    header, off, blobs = {}, 0, []
    for k, v in tensors.items():
        b = v.tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out, "sae_weights.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(out, "cfg.json"), "w") as f:
        json.dump({"d_in": n_embd, "d_sae": d_sae, "architecture": "standard", "dtype": "float32",
                   "apply_b_dec_to_input": True, "normalize_activations": "none",
                   "metadata": {"sae_lens_version": "6.0.0", "hook_name": "blocks.6.hook_resid_post"}}, f)


if __name__ == "__main__":
    main()
