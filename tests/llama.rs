//! The real engine: llama.cpp (built by scripts/build-llama.sh from the
//! llama-cpp-python sdist) running SmolLM2-135M-Instruct, steered through
//! saeplug's adapter (bindings/llama.cpp) and the `saeplug-llama` program.

mod common;

use std::path::Path;
use std::process::Command;

use common::llama::*;
use common::*;

const LAYER: u32 = 6;

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    max_abs_diff(a, b) / scale
}

fn tokens(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("TOKENS:"))
        .unwrap_or("")
        .to_string()
}

fn tps(out: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix("TOKENS_PER_SECOND: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn steering_smollm2_through_the_plugin() {
    let Some(dir) = llama_dir() else { return };
    let out = scratch("llama");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let sl = |args: &[&str]| -> String {
        let mut c = Command::new(&exe);
        c.arg("-m").arg(&model).args(["-t", "2"]).args(args);
        run_ok(&mut c)
    };
    let prompt = "The history of astronomy begins with ancient observers who tracked the Sun, the Moon and the planets across the sky, and built calendars from their motions.";
    let p = |x: &Path| x.display().to_string();

    // 1. Capture real residual activations at l_out-6 and build an SAE from them.
    let acts = out.join("acts.bin");
    sl(&[
        "-p",
        prompt,
        "-n",
        "24",
        "--capture",
        &p(&acts),
        "--capture-layer",
        &LAYER.to_string(),
    ]);
    let n_embd = 576;
    assert!(floats(&acts).len() >= 20 * n_embd, "capture too short");
    let sae_dir = out.join("sae");
    run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/py/make_llama_sae.py"))
            .arg(&acts)
            .arg(n_embd.to_string())
            .arg(&sae_dir),
    );
    let sae = p(&sae_dir);
    let layer = LAYER.to_string();

    // 2. Unsteered reference, with a recording of the (unedited) features.
    let u_logits = out.join("u.bin");
    let rec0 = out.join("rec0.json");
    sl(&[
        "-p",
        prompt,
        "-n",
        "0",
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--record",
        &p(&rec0),
        "--dump-logits",
        &p(&u_logits),
    ]);
    let plain = out.join("plain.bin");
    let u_gen = sl(&["-p", prompt, "-n", "8", "--dump-logits", &p(&plain)]);
    let u = floats(&u_logits);
    assert_eq!(
        u,
        floats(&plain),
        "a hook with no edits must not change the logits"
    );

    // 3. Adding c * d_0 through the plugin == llama.cpp's control-vector path.
    let a_logits = out.join("a.bin");
    sl(&[
        "-p",
        prompt,
        "-n",
        "0",
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--vector-feature",
        "0:6.0",
        "--dump-logits",
        &p(&a_logits),
    ]);
    let cvec = out.join("cvec.gguf");
    run_ok(
        Command::new(repo_root().join(if cfg!(debug_assertions) {
            "target/debug/saeplug"
        } else {
            "target/release/saeplug"
        }))
        .args([
            "export-cvec",
            "--sae",
            &sae,
            "--layer",
            &layer,
            "--feature",
            "0:6.0",
            "--out",
            &p(&cvec),
        ]),
    );
    let b_logits = out.join("b.bin");
    sl(&[
        "-p",
        prompt,
        "-n",
        "0",
        "--cvec",
        &p(&cvec),
        "--dump-logits",
        &p(&b_logits),
    ]);
    let (a, b) = (floats(&a_logits), floats(&b_logits));
    assert!(
        rel(&a, &u) > 1e-2,
        "the steering vector changed nothing (test vacuous)"
    );
    let e = rel(&a, &b);
    eprintln!("plugin vs llama.cpp control vector: max rel logit diff {e:.2e}");
    assert!(
        e <= 1e-3,
        "plugin steering differs from the control-vector path: {e}"
    );

    // 4. Clamping a feature to its current value changes nothing.
    let r0 = json(&rec0);
    let tokens_seen = r0["tokens"].as_u64().unwrap();
    let last = tokens_seen - 1;
    let mut best = (0usize, 0.0f64);
    for (f, tops) in r0["top"].as_object().unwrap() {
        for t in tops.as_array().unwrap() {
            if t[0].as_u64() == Some(last) && t[1].as_f64().unwrap() > best.1 {
                best = (f.parse().unwrap(), t[1].as_f64().unwrap());
            }
        }
    }
    let (g, cur) = best;
    assert!(cur > 0.0, "no feature fires at the last position");
    let d_logits = out.join("d.bin");
    sl(&[
        "-p",
        prompt,
        "-n",
        "0",
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--positions",
        "last",
        "--clamp",
        &format!("{g}:{cur}"),
        "--dump-logits",
        &p(&d_logits),
    ]);
    let e = rel(&floats(&d_logits), &u);
    assert!(
        e <= 1e-4,
        "clamp to the current value changed the logits by {e}"
    );

    // 5. Clamping to a large value moves the measured activation to the target and
    //    changes generation; ablation removes the feature.
    let target = 5.0 * cur + 10.0;
    let rec1 = out.join("rec1.json");
    let s_gen = sl(&[
        "-p",
        prompt,
        "-n",
        "8",
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--clamp",
        &format!("{g}:{target}"),
        "--record",
        &p(&rec1),
    ]);
    // Where the feature fired before, it now measures exactly the target (error-
    // preserving clamp: x + (v - f) d; where it was off, ReLU had clipped a negative
    // pre-activation p and the measurement is p + v, as in SAELens).
    let r1 = json(&rec1);
    let fired_before: Vec<u64> = r0["top"][g.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0].as_u64().unwrap())
        .collect();
    assert!(fired_before.contains(&last));
    let after: std::collections::HashMap<u64, f64> = r1["top"][g.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t[0].as_u64().unwrap(), t[1].as_f64().unwrap()))
        .collect();
    for pos in &fired_before {
        let m = after.get(pos).copied().unwrap_or(0.0);
        assert!(
            (m - target).abs() <= 1e-3 * target,
            "position {pos}: measured {m} vs target {target}"
        );
    }
    // Generated positions (after the prompt) are steered too.
    assert!(
        after.keys().any(|&p| p > last),
        "no generated position measured the clamp"
    );
    assert_ne!(
        tokens(&s_gen),
        tokens(&u_gen),
        "clamping to {target} did not change generation"
    );
    let rec2 = out.join("rec2.json");
    sl(&[
        "-p",
        prompt,
        "-n",
        "8",
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--ablate",
        &g.to_string(),
        "--record",
        &p(&rec2),
    ]);
    let r2 = json(&rec2);
    let top = r2["top"]
        .get(g.to_string())
        .and_then(|t| t[0][1].as_f64())
        .unwrap_or(0.0);
    assert!(top < 1e-3, "ablated feature still measures {top}");
    // The recording is notebook-readable JSON with the documented fields.
    for k in [
        "d_sae",
        "tokens",
        "firing_count",
        "mean_activation",
        "mean_when_firing",
        "top",
    ] {
        assert!(r1.get(k).is_some(), "recording lacks {k}");
    }

    // 6. Throughput: unsteered vs one clamped feature vs full SAE replacement.
    let n = "48";
    let t_plain = tps(&sl(&["-p", prompt, "-n", n]));
    let t_clamp = tps(&sl(&[
        "-p",
        prompt,
        "-n",
        n,
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--clamp",
        &format!("{g}:{target}"),
    ]));
    let t_full = tps(&sl(&[
        "-p",
        prompt,
        "-n",
        n,
        "--sae",
        &sae,
        "--layer",
        &layer,
        "--replace",
        "with-error",
    ]));
    eprintln!(
        "SmolLM2-135M decode tokens/s: unsteered {t_plain:.1}, one clamped feature {t_clamp:.1} ({:+.1}%), full SAE replacement {t_full:.1} ({:+.1}%)",
        100.0 * (t_clamp / t_plain - 1.0),
        100.0 * (t_full / t_plain - 1.0)
    );
    assert!(t_plain > 0.0 && t_clamp > 0.0 && t_full > 0.0);
}

fn capture_line(out: &str) -> (f64, f64) {
    let l = out
        .lines()
        .find(|l| l.starts_with("CAPTURE:"))
        .unwrap_or_else(|| panic!("no CAPTURE line in:\n{out}"));
    let field = |k: &str| -> f64 {
        let w: Vec<&str> = l.split_whitespace().collect();
        let i = w.iter().position(|x| *x == k).expect(k);
        w[i + 1].parse().unwrap()
    };
    (field("tokens_decoded"), field("tokens_per_second"))
}

fn sha256sum(p: &Path) -> String {
    let o = run_ok(Command::new("sha256sum").arg(p));
    o.split_whitespace().next().unwrap().to_string()
}

#[test]
fn capture_smollm2_into_an_activation_store() {
    use saeplug::store::{ActivationStore, Split, StoreDType};
    let Some(dir) = llama_dir() else { return };
    let out = scratch("llama_capture");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let corpus = corpus();
    let store_dir = out.join("acts");
    let p = |x: &Path| x.display().to_string();
    let cap = run_ok(
        Command::new(&exe)
            .args(["capture", "-m"])
            .arg(&model)
            .args([
                "--layer", "6", "--ctx", "128", "--tokens", "20480", "-t", "2", "--out",
            ])
            .arg(&store_dir)
            .arg(&corpus),
    );
    let (decoded, tps_capture) = capture_line(&cap);
    assert!(
        cap.contains("tokens/s") && cap.contains("ETA"),
        "no progress line:\n{cap}"
    );

    // The manifest.
    let s = ActivationStore::open(&store_dir).unwrap();
    let m = s.manifest().clone();
    assert_eq!(
        (m.layer, m.hook_name.as_str(), m.context_length),
        (Some(6), "l_out-6", 128)
    );
    assert!(m.bos_excluded && m.complete && m.dtype == StoreDType::F32);
    assert_eq!(m.d_in, 576);
    let info = m.model.clone().expect("model recorded");
    assert_eq!(info.file, "model.gguf");
    assert_eq!(info.bytes, std::fs::metadata(&model).unwrap().len());
    assert_eq!(
        info.sha256,
        sha256sum(&model),
        "model hash differs from sha256sum"
    );
    let (n_tr, n_ho) = (s.n_rows(Split::Train), s.n_rows(Split::Heldout));
    assert!(n_tr + n_ho >= 20_000, "only {} rows", n_tr + n_ho);
    assert_eq!((n_tr + n_ho) % 127, 0);
    let n_seq = (n_tr + n_ho) / 127;
    assert_eq!(decoded as usize, n_seq * 128);
    let bos: i32 = m.metadata["bos_token"].parse().unwrap();
    assert!(bos >= 0, "SmolLM2 has a BOS token");

    // Every sequence: positions 1..=127 in order (BOS excluded), no BOS token;
    // the held-out sequences are exactly every 20th.
    let mut rows_of_seq: std::collections::BTreeMap<u32, (Split, usize)> = Default::default();
    for split in [Split::Train, Split::Heldout] {
        let n = s.n_rows(split);
        let (seq, pos) = s.positions(split, 0, n).unwrap();
        let toks = s.tokens(split, 0, n).unwrap();
        assert!(
            toks.iter().all(|&t| t != bos && t >= 0),
            "a BOS token was stored"
        );
        for (k, chunk) in seq.chunks(127).enumerate() {
            assert!(
                chunk.iter().all(|&q| q == chunk[0]),
                "sequence rows not contiguous"
            );
            let want: Vec<u32> = (1..128).collect();
            assert_eq!(
                pos[k * 127..(k + 1) * 127],
                want[..],
                "positions of sequence {}",
                chunk[0]
            );
            let held = ((chunk[0] as f64 + 1.0) * 0.05).floor() > (chunk[0] as f64 * 0.05).floor();
            assert_eq!(
                held,
                split == Split::Heldout,
                "sequence {} in the wrong split",
                chunk[0]
            );
            rows_of_seq.insert(chunk[0], (split, k * 127));
        }
    }
    assert_eq!(rows_of_seq.len(), n_seq);
    assert_eq!(*rows_of_seq.keys().last().unwrap() as usize, n_seq - 1);

    // Independent check: the rows equal what the existing raw-capture path
    // (generate mode, --capture) sees when the same tokens are decoded alone.
    let mut worst = 0.0f32;
    for q in [0u32, 19, (n_seq - 1) as u32] {
        let (split, start) = rows_of_seq[&q];
        let toks = s.tokens(split, start, 127).unwrap();
        let ids: Vec<String> = std::iter::once(bos)
            .chain(toks.iter().copied())
            .map(|t| t.to_string())
            .collect();
        let raw = out.join(format!("seq{q}.bin"));
        run_ok(
            Command::new(&exe)
                .arg("-m")
                .arg(&model)
                .args(["-t", "2", "-n", "0", "--prompt-tokens", &ids.join(",")])
                .args(["--capture", &p(&raw), "--capture-layer", "6"]),
        );
        let reference = floats(&raw);
        assert_eq!(reference.len(), 128 * 576);
        let got = s.rows(split, start, 127).unwrap();
        let e = rel(&got, &reference[576..]);
        worst = worst.max(e);
        // numpy reads the same rows from the shards.
        let py = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file
d, q = sys.argv[1], int(sys.argv[2])
m = json.load(open(d + "/manifest.json"))
acts, pos = [], []
for split in ("train", "heldout"):
    for sh in m["splits"][split]["shards"]:
        t = load_file(d + "/" + sh["file"])
        sel = t["seq"] == q
        acts.append(t["acts"][sel]); pos.append(t["pos"][sel])
acts = np.concatenate(acts).astype(np.float64); pos = np.concatenate(pos)
ref = np.fromfile(sys.argv[3], dtype=np.float32).reshape(128, 576).astype(np.float64)
assert list(pos) == list(range(1, 128)), pos
print("NUMPY-REL", np.abs(acts - ref[pos]).max() / np.abs(ref[1:]).max())
"#;
        let o = run_ok(
            Command::new("python3")
                .args(["-c", py])
                .arg(&store_dir)
                .arg(q.to_string())
                .arg(&raw),
        );
        let np_rel: f64 = o
            .lines()
            .find_map(|l| l.strip_prefix("NUMPY-REL "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(np_rel <= 1e-4, "numpy: sequence {q} differs by {np_rel}");
    }
    eprintln!("captured rows vs the record path, decoded alone: max rel diff {worst:.2e}");
    assert!(
        worst <= 1e-4,
        "captured rows differ from the record path by {worst}"
    );

    // Two layers in one pass, stored as F16: DIR/l_out-3 and DIR/l_out-6; layer
    // 6's rows are the F32 store's rounded to f16 (same batches, same sums).
    let two = out.join("two");
    run_ok(
        Command::new(&exe)
            .args(["capture", "-m"])
            .arg(&model)
            .args([
                "--layer", "3", "--layer", "6", "--dtype", "f16", "--tokens", "1016",
            ])
            .args(["-t", "2", "--out"])
            .arg(&two)
            .arg(&corpus),
    );
    let s3 = ActivationStore::open(&two.join("l_out-3")).unwrap();
    let s6 = ActivationStore::open(&two.join("l_out-6")).unwrap();
    assert_eq!(s3.manifest().layer, Some(3));
    assert_eq!(s6.manifest().dtype, StoreDType::F16);
    let n6 = s6.n_rows(Split::Train);
    assert_eq!(n6, 8 * 127); // sequences 0..7, none held out
    let a = s6.rows(Split::Train, 0, n6).unwrap();
    let b: Vec<f32> = s
        .rows(Split::Train, 0, n6)
        .unwrap()
        .iter()
        .map(|v| half::f16::from_f32(*v).to_f32())
        .collect();
    assert_eq!(a, b, "the F16 store is not the F32 capture rounded");
    let a3 = s3.rows(Split::Train, 0, 127).unwrap();
    assert!(
        rel(&a3, &a[..127 * 576]) > 1e-2,
        "layers 3 and 6 hold the same rows"
    );

    // Throughput: the same decoding without the callback or a store (plain
    // llama.cpp prompt processing of the same batches).
    let plain = run_ok(
        Command::new(&exe)
            .args(["capture", "-m"])
            .arg(&model)
            .args(["--layer", "6", "--no-store", "--tokens", "20480", "-t", "2"])
            .arg(&corpus),
    );
    let (_, tps_plain) = capture_line(&plain);
    eprintln!(
        "capture tokens/s: {tps_capture:.1} with the store, {tps_plain:.1} plain prompt processing ({:.0}%)",
        100.0 * tps_capture / tps_plain
    );
    assert!(tps_capture > 0.0 && tps_plain > 0.0);
}

#[test]
fn long_prompts_are_decoded_batch_by_batch() {
    let Some(dir) = llama_dir() else { return };
    let out = scratch("llama_long");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    // About 900 tokens of English: over the old 512-token limit.
    let text = std::fs::read_to_string(corpus().join("introduction.rst.txt")).unwrap();
    let cut = text.char_indices().nth(3600).map_or(text.len(), |(i, _)| i);
    let prompt = out.join("prompt.txt");
    std::fs::write(&prompt, &text[..cut]).unwrap();
    let p = |x: &Path| x.display().to_string();
    let run = |b: &str| -> (Vec<f32>, Vec<f32>) {
        let (rows, logits) = (
            out.join(format!("rows{b}.bin")),
            out.join(format!("logits{b}.bin")),
        );
        run_ok(
            Command::new(&exe)
                .arg("-m")
                .arg(&model)
                .args(["-t", "2", "-n", "4", "-b", b, "-f", &p(&prompt)])
                .args([
                    "--capture",
                    &p(&rows),
                    "--capture-layer",
                    "6",
                    "--dump-logits",
                    &p(&logits),
                ]),
        );
        (floats(&rows), floats(&logits))
    };
    let (r_small, l_small) = run("100");
    let (r_big, l_big) = run("2048");
    let n_rows = r_big.len() / 576;
    assert!(n_rows > 600, "prompt of only {n_rows} tokens (+ generated)");
    assert_eq!(
        r_small.len(),
        r_big.len(),
        "batch-by-batch decoding saw other rows"
    );
    let e_rows = rel(&r_small, &r_big);
    let e_logits = rel(&l_small, &l_big);
    eprintln!(
        "long prompt ({n_rows} rows): batch 100 vs 2048: rows {e_rows:.2e}, logits {e_logits:.2e}"
    );
    assert!(
        e_rows <= 1e-4 && e_logits <= 1e-3,
        "rows {e_rows}, logits {e_logits}"
    );
    // The context is an option: too small a one is refused with a clear message.
    let o = Command::new(&exe)
        .arg("-m")
        .arg(&model)
        .args(["-c", "256", "-n", "4", "-f", &p(&prompt)])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("exceeds the context (-c 256)"));
}

/// Every layer on an RPC device (a ggml-rpc-server on localhost): the adapter
/// reads and writes l_out through ggml_backend_tensor_get/set (its device-buffer
/// path), and the results are bit-identical to the CPU run.
#[test]
fn every_layer_on_an_rpc_server_gives_the_cpu_results() {
    use saeplug::store::{ActivationStore, Split};
    let Some(dir) = llama_dir() else { return };
    let out = scratch("llama_rpc");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let server = rpc_server(&dir);
    let p = |x: &Path| x.display().to_string();
    let prompt = "The history of astronomy begins with ancient observers who tracked the Sun, the Moon and the planets across the sky.";
    let sl = |args: &[&str]| -> String {
        run_ok(
            Command::new(&exe)
                .arg("-m")
                .arg(&model)
                .args(["-t", "2", "-p", prompt])
                .args(args),
        )
    };
    let rpc = ["--rpc", server.1.as_str(), "-ngl", "99"];
    // Raw rows and logits, CPU vs RPC.
    let (acts, l_cpu) = (out.join("acts.bin"), out.join("l_cpu.bin"));
    sl(&[
        "-n",
        "0",
        "--capture",
        &p(&acts),
        "--capture-layer",
        "6",
        "--dump-logits",
        &p(&l_cpu),
    ]);
    let (acts_rpc, l_rpc) = (out.join("acts_rpc.bin"), out.join("l_rpc.bin"));
    let o = sl(&[
        &rpc[..],
        &[
            "-n",
            "0",
            "--capture",
            &p(&acts_rpc),
            "--capture-layer",
            "6",
            "--dump-logits",
            &p(&l_rpc),
        ],
    ]
    .concat());
    assert!(
        o.contains("RPC"),
        "the model did not go to the RPC device:\n{o}"
    );
    assert_eq!(
        floats(&acts),
        floats(&acts_rpc),
        "l_out-6 rows differ on RPC"
    );
    assert_eq!(floats(&l_cpu), floats(&l_rpc), "logits differ on RPC");
    // A clamp (written back into the device tensor) changes the logits, identically.
    let sae = out.join("sae");
    run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/py/make_llama_sae.py"))
            .arg(&acts)
            .arg("576")
            .arg(&sae),
    );
    let steer = ["--sae", &p(&sae), "--layer", "6", "--clamp", "0:20.0"];
    let (c_cpu, c_rpc) = (out.join("c_cpu.bin"), out.join("c_rpc.bin"));
    sl(&[&steer[..], &["-n", "0", "--dump-logits", &p(&c_cpu)]].concat());
    sl(&[
        &rpc[..],
        &steer[..],
        &["-n", "0", "--dump-logits", &p(&c_rpc)],
    ]
    .concat());
    let (a, b) = (floats(&c_cpu), floats(&c_rpc));
    assert!(
        rel(&a, &floats(&l_cpu)) > 1e-3,
        "the clamp changed nothing (test vacuous)"
    );
    assert_eq!(a, b, "clamped logits differ on RPC");
    // Capture through the RPC device equals capture on the CPU.
    let corpus = corpus();
    let cap = |dst: &Path, extra: &[&str]| {
        run_ok(
            Command::new(&exe)
                .args(["capture", "-m"])
                .arg(&model)
                .args(["--layer", "6", "--tokens", "508", "-t", "2", "--out"])
                .arg(dst)
                .args(extra)
                .arg(&corpus),
        );
        ActivationStore::open(dst)
            .unwrap()
            .rows(Split::Train, 0, 508)
            .unwrap()
    };
    let r_cpu = cap(&out.join("s_cpu"), &[]);
    let r_rpc = cap(&out.join("s_rpc"), &rpc);
    assert_eq!(r_cpu, r_rpc, "captured rows differ on RPC");
    drop(server);
}

/// The loop closed with no Python in it: capture SmolLM2's layer-6 residual
/// stream into an activation store, train a small TopK SAE on its train split
/// with `saeplug train`, and on the held-out split compare its FVU at L0 = k with
/// the best rank-k PCA reconstruction of the same rows (numpy's eigh, centred):
/// an SAE that learned nothing cannot beat it.
#[test]
fn trained_sae_beats_rank_k_pca_on_held_out_smollm2_activations() {
    use saeplug::store::{ActivationStore, Split};
    let Some(dir) = llama_dir() else { return };
    let out = scratch("llama_pipeline");
    let exe = build(&dir, &out);
    let store_dir = out.join("acts");
    let cap = run_ok(
        Command::new(&exe)
            .args(["capture", "-m"])
            .arg(dir.join("model.gguf"))
            .args([
                "--layer", "6", "--ctx", "128", "--tokens", "24000", "-t", "2", "--out",
            ])
            .arg(&store_dir)
            .arg(corpus()),
    );
    let (decoded, tps) = capture_line(&cap);
    eprintln!("captured {decoded} tokens at {tps:.0} tokens/s");
    let k = 32;
    let sae_dir = out.join("sae");
    let train = run_ok(
        saeplug()
            .args(["train", "--input"])
            .arg(&store_dir)
            .args([
                "--arch",
                "topk",
                "--k",
                "32",
                "--d-sae",
                "1152",
                "--batch-size",
                "256",
                "--lr",
                "1e-3",
                "--tokens",
                "300000",
                "--seed",
                "1",
                "--threads",
                "2",
                "--output",
            ])
            .arg(&sae_dir),
    );
    eprintln!("{}", train.lines().last().unwrap_or(""));

    // Held-out rows, the trained SAE's reconstruction, its FVU (centred).
    let store = ActivationStore::open(&store_dir).unwrap();
    let n = store.n_rows(Split::Heldout);
    assert!(n >= 500, "held-out split has {n} rows");
    let d = store.d_in();
    let x = store.rows(Split::Heldout, 0, n).unwrap();
    let sae = saeplug::Sae::open(&sae_dir).unwrap();
    let cpu = saeplug::CpuBackend::new(2);
    use saeplug::Backend;
    let codes = cpu.encode_sparse(&sae, &x).unwrap();
    let l0 = codes.indices.len() as f64 / n as f64;
    let mut recon = vec![0.0f32; x.len()];
    cpu.decode_sparse(&sae, &codes, &mut recon).unwrap();
    let mut mean = vec![0f64; d];
    for row in x.chunks(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m += *v as f64 / n as f64);
    }
    let total: f64 = x
        .chunks(d)
        .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| (*v as f64 - m).powi(2)))
        .sum();
    let err: f64 = x
        .iter()
        .zip(&recon)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let fvu_sae = err / total;

    // The best rank-k reconstruction of the same rows (numpy, an independent oracle).
    let xp = out.join("heldout.npy");
    saeplug::weights::write_npy(&xp, &[n, d], &x).unwrap();
    let py = run_ok(Command::new("python3").arg("-c").arg(format!(
        "import numpy as np\n\
         x = np.load('{}').astype(np.float64)\n\
         x -= x.mean(0)\n\
         w = np.linalg.eigh(x.T @ x)[0]\n\
         print(w[:-{k}].sum() / w.sum())",
        xp.display()
    )));
    let fvu_pca: f64 = py.trim().parse().unwrap();
    // For reference: the SAELens-trained SAE for this hook (d_sae 4608) on the same rows.
    // (`../shared/fixtures/smollm2-l6-topk`, beside the SAELens fixture cases.)
    let peer_dir = saelens_fixtures()
        .parent()
        .expect("fixtures folder")
        .join("smollm2-l6-topk");
    let peer = saeplug::Sae::open(&peer_dir).unwrap();
    let pc = cpu.encode_sparse(&peer, &x).unwrap();
    let mut pr = vec![0.0f32; x.len()];
    cpu.decode_sparse(&peer, &pc, &mut pr).unwrap();
    let fvu_peer = x
        .iter()
        .zip(&pr)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum::<f64>()
        / total;
    eprintln!(
        "held-out ({n} rows): trained TopK SAE (d_sae 1152) FVU {fvu_sae:.4} at L0 {l0:.1}; best rank-{k} PCA FVU {fvu_pca:.4}; SAELens's smollm2-l6-topk (d_sae 4608) FVU {fvu_peer:.4}"
    );
    assert!(l0 <= k as f64 + 1e-9, "L0 {l0} above k");
    assert!(
        fvu_sae < fvu_pca,
        "the SAE (FVU {fvu_sae}) does not beat rank-{k} PCA ({fvu_pca})"
    );
}
