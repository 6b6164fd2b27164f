"""Write the SAELens folders of the engine-evaluation test (tests/eval.rs).

usage: make_eval_saes.py D_IN OUT_DIR
  OUT_DIR/exact: d_sae = 2 D_IN, W_enc = [I, -I], W_dec = [I; -I], zero biases, ReLU
                 (relu(x) - relu(-x) = x: it reconstructs every row exactly);
  OUT_DIR/zero:  the same shapes, every weight 0 (it reconstructs every row as 0);
  OUT_DIR/wrong_d_in: the exact SAE for D_IN + 1 inputs."""
import json
import os
import struct
import sys

import numpy as np


def write(out, w_enc, w_dec):
    d_in, d_sae = w_enc.shape
    tensors = {
        "W_enc": w_enc.astype(np.float32),
        "W_dec": w_dec.astype(np.float32),
        "b_enc": np.zeros(d_sae, np.float32),
        "b_dec": np.zeros(d_in, np.float32),
    }
    os.makedirs(out, exist_ok=True)
    header, off, blobs = {}, 0, []
    for k, v in tensors.items():
        b = np.ascontiguousarray(v).tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out, "sae_weights.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(out, "cfg.json"), "w") as f:
        json.dump({"d_in": d_in, "d_sae": d_sae, "architecture": "standard", "dtype": "float32",
                   "apply_b_dec_to_input": False, "normalize_activations": "none",
                   "metadata": {"sae_lens_version": "6.0.0", "hook_name": "blocks.6.hook_resid_post"}}, f)


def exact(d_in):
    eye = np.eye(d_in)
    return np.concatenate([eye, -eye], axis=1), np.concatenate([eye, -eye], axis=0)


def main():
    d_in, out = int(sys.argv[1]), sys.argv[2]
    write(os.path.join(out, "exact"), *exact(d_in))
    write(os.path.join(out, "zero"), np.zeros((d_in, 2 * d_in)), np.zeros((2 * d_in, d_in)))
    write(os.path.join(out, "wrong_d_in"), *exact(d_in + 1))


if __name__ == "__main__":
    main()
