#!/usr/bin/env python3
"""Same-run training benchmark: `saeplug train` against SAELens 6's own SAETrainer.

Not part of CI (SAELens pulls torch). Both trainers see the same activations in the
same order (the train split of an activation store written by `saeplug-llama capture`,
exported once to a row-shuffled f32 .npy), the same hyperparameters (batch, lr with
the last 20% of steps decayed linearly to 0, L1 warm-up over the first 5%, activation
norm scaling estimated on 64 batches, dead window of 1000 steps, AuxK coefficient 1,
decoder rows initialised at norm 0.1) and the same token budget; threads are pinned to
the same count; TopK ranks h·‖W_dec‖ (SAELens's training default). Held-out FVU (centred), L0 and the dead fraction (latents that never
fire on the held-out split) are computed here in numpy from each saved folder, for
both trainers with the same code. SAELens then loads the saeplug output itself
(`SAE.load_from_disk`) and its encode/decode are compared with numpy's.

    python3 scripts/bench-train-saelens.py --store acts/ --work /tmp/bench \
        --saeplug target/release/saeplug --arch topk --k 32 --d-sae 4608
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def export_split(store: Path, split: str, out: Path, seed: int) -> int:
    """Concatenate a split's `acts` to an f32 .npy, rows shuffled by `seed`."""
    if out.exists():
        return np.load(out, mmap_mode="r").shape[0]
    man = json.loads((store / "manifest.json").read_text())
    shards = man["splits"][split]["shards"]
    names = [s if isinstance(s, str) else s["file"] for s in shards]
    parts = [load_file(str(store / n))["acts"].astype(np.float32) for n in names]
    acts = np.concatenate(parts)
    del parts
    rng = np.random.default_rng(seed)
    acts = acts[rng.permutation(acts.shape[0])]
    tmp = out.with_suffix(".tmp.npy")
    np.save(tmp, acts)
    tmp.rename(out)
    return acts.shape[0]


def load_sae(folder: Path):
    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    return cfg, {k: v.astype(np.float64) for k, v in w.items()}


def encode_np(cfg, w, x):
    arch = cfg.get("architecture", "standard")
    xin = x - w["b_dec"] if cfg.get("apply_b_dec_to_input", True) else x
    h = xin @ w["W_enc"] + w["b_enc"]
    if arch == "topk":
        k = int(cfg["k"])
        if cfg.get("rescale_acts_by_decoder_norm", False):
            h = h * np.linalg.norm(w["W_dec"], axis=1)
        idx = np.argpartition(-h, k - 1, axis=1)[:, :k]
        f = np.zeros_like(h)
        rows = np.arange(h.shape[0])[:, None]
        f[rows, idx] = np.maximum(h[rows, idx], 0.0)
        return f
    if arch == "jumprelu":
        return np.where(h > w["threshold"], h, 0.0)
    return np.maximum(h, 0.0)


def decode_np(cfg, w, f):
    if cfg.get("architecture") == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        f = f / np.linalg.norm(w["W_dec"], axis=1)
    return f @ w["W_dec"] + w["b_dec"]


def evaluate(folder: Path, heldout: np.ndarray, chunk: int = 8192):
    cfg, w = load_sae(folder)
    mean = heldout.mean(axis=0, dtype=np.float64)
    err = tot = 0.0
    l0 = 0
    fired = np.zeros(w["W_enc"].shape[1], dtype=bool)
    for s in range(0, heldout.shape[0], chunk):
        x = heldout[s : s + chunk].astype(np.float64)
        f = encode_np(cfg, w, x)
        xh = decode_np(cfg, w, f)
        err += ((x - xh) ** 2).sum()
        tot += ((x - mean) ** 2).sum()
        nz = f > 0
        l0 += int(nz.sum())
        fired |= nz.any(axis=0)
    n = heldout.shape[0]
    return {"fvu": err / tot, "l0": l0 / n, "dead_fraction": 1.0 - fired.mean()}


def run_saeplug(a, train_npy: Path, out: Path, steps: int):
    cmd = [
        a.saeplug, "train", "--input", str(train_npy), "--output", str(out),
        "--arch", a.arch, "--d-sae", str(a.d_sae), "--k", str(a.k), "--lr", str(a.lr),
        "--batch-size", str(a.batch), "--tokens", str(steps * a.batch),
        "--seed", str(a.seed), "--threads", str(a.threads),
        "--dead-window", str(1000 * a.batch),
    ]
    if a.arch == "standard":
        cmd += ["--l1-coeff", str(a.l1)]
    else:
        cmd += ["--rescale-acts-by-decoder-norm", str(a.rescale).lower()]
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run_saelens(a, train_npy: Path, out: Path, steps: int):
    import torch
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    acts = np.load(train_npy, mmap_mode="r")
    n_batches = acts.shape[0] // a.batch
    warm = round(0.05 * steps)
    common = dict(d_in=acts.shape[1], d_sae=a.d_sae, dtype="float32", device="cpu",
                  normalize_activations="expected_average_only_in")
    if a.arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(
            k=a.k, aux_loss_coefficient=1.0, rescale_acts_by_decoder_norm=a.rescale, **common))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(
            l1_coefficient=a.l1, l1_warm_up_steps=warm, **common))

    def batches():
        # 64 batches for the norm estimate (saeplug: the first <= 64 batches, not
        # consumed), then the training order from row 0, cycling.
        for i in range(min(64, n_batches)):
            yield torch.from_numpy(np.array(acts[i * a.batch : (i + 1) * a.batch]))
        i = 0
        while True:
            s = (i % n_batches) * a.batch
            yield torch.from_numpy(np.array(acts[s : s + a.batch]))
            i += 1

    cfg = SAETrainerConfig(
        total_training_samples=steps * a.batch, train_batch_size_samples=a.batch,
        lr=a.lr, lr_end=a.lr, lr_scheduler_name="constant", lr_warm_up_steps=0,
        lr_decay_steps=round(0.2 * steps), device="cpu", dead_feature_window=1000,
        n_batches_for_norm_estimate=min(64, n_batches),
    )
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=batches())
    t0 = time.perf_counter()
    sae = trainer.fit()
    dt = time.perf_counter() - t0
    sae.save_model(out)
    return dt


def saelens_loads(folder: Path, heldout: np.ndarray):
    """SAELens loads the saeplug folder; its encode/decode equal numpy's."""
    import torch
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(folder), device="cpu")
    x = heldout[:256].astype(np.float32)
    with torch.no_grad():
        f = sae.encode(torch.from_numpy(x)).numpy().astype(np.float64)
        xh = sae.decode(torch.from_numpy(f.astype(np.float32))).numpy()
    cfg, w = load_sae(folder)
    f_np = encode_np(cfg, w, x.astype(np.float64))
    return {
        "saelens_class": type(sae).__name__,
        "max_abs_diff_feature_acts": float(np.abs(f - f_np).max()),
        "max_abs_diff_recon": float(np.abs(xh - decode_np(cfg, w, f_np)).max()),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--saeplug", default="target/release/saeplug")
    p.add_argument("--arch", choices=["topk", "standard"], default="topk")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-sae", type=int, default=4608)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--l1", type=float, default=5.0)
    p.add_argument("--rescale", type=lambda v: v.lower() == "true", default=True,
                   help="TopK rescale_acts_by_decoder_norm (SAELens's training default: true)")
    p.add_argument("--tokens", type=int, default=0, help="token budget (default: one pass)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", choices=["saeplug", "saelens"], default=None)
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    train_npy, held_npy = a.work / "train.npy", a.work / "heldout.npy"
    n = export_split(a.store, "train", train_npy, a.seed)
    export_split(a.store, "heldout", held_npy, a.seed)
    heldout = np.load(held_npy)
    steps = (a.tokens or n) // a.batch
    tag = f"{a.arch}-k{a.k}-d{a.d_sae}-b{a.batch}" if a.arch == "topk" else \
        f"{a.arch}-l1{a.l1}-d{a.d_sae}-b{a.batch}"
    res = {"rows_train": n, "rows_heldout": heldout.shape[0], "steps": steps,
           "tokens": steps * a.batch, "threads": a.threads, "config": tag}
    for who, fn in (("saeplug", run_saeplug), ("saelens", run_saelens)):
        if a.only and a.only != who:
            continue
        out = a.work / f"{who}-{tag}"
        dt = fn(a, train_npy, out, steps)
        res[who] = {"seconds": dt, "tokens_per_s": steps * a.batch / dt, **evaluate(out, heldout)}
        print(who, json.dumps(res[who]), flush=True)
    if "saeplug" in res and "saelens" in res:
        res["speedup"] = res["saeplug"]["tokens_per_s"] / res["saelens"]["tokens_per_s"]
        res["fvu_relative"] = res["saeplug"]["fvu"] / res["saelens"]["fvu"] - 1.0
    if "saeplug" in res:
        res["saelens_loads_saeplug_output"] = saelens_loads(a.work / f"saeplug-{tag}", heldout)
    print(json.dumps(res, indent=2))
    (a.work / f"result-{tag}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    sys.exit(main())
