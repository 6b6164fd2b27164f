//! `saeplug record` over an activation store: its top examples, context windows
//! and the values on their tokens equal a brute-force recomputation (every row
//! encoded densely, sorted by value then row); a feature that never fires is
//! reported as such; an SAE of another width than the store's rows is refused.

mod common;

use std::path::Path;

use common::*;
use saeplug::store::{Split, StoreSpec, StoreWriter};
use saeplug::weights::{SafeTensors, write_safetensors};
use saeplug::{Architecture, Backend, CpuBackend, Sae};

const D: usize = 16;
const N: usize = 700;
const SEQ: usize = 37;

fn token(r: usize) -> i32 {
    (r * 7 % 1000) as i32
}

/// A store of N rows of width D in sequences of SEQ rows, shards of 100 rows.
fn store(dir: &Path) -> Vec<f32> {
    let x = saeplug::synthetic::Rng::new(3).normal_vec(N * D, 1.0);
    let mut spec = StoreSpec::new(D, "l_out-6");
    spec.shard_rows = 100;
    let mut w = StoreWriter::create(dir, spec).unwrap();
    let toks: Vec<i32> = (0..N).map(token).collect();
    let seq: Vec<u32> = (0..N).map(|r| (r / SEQ) as u32).collect();
    let pos: Vec<u32> = (0..N).map(|r| (1 + r % SEQ) as u32).collect();
    w.append(Split::Train, &x, &toks, &seq, &pos).unwrap();
    w.finish().unwrap();
    x
}

/// A random ReLU SAE whose feature 0 can never fire (its bias is -1e6).
fn sae(dir: &Path, d_in: usize) {
    saeplug::synthetic::random_sae(d_in, 40, Architecture::Standard, 9)
        .unwrap()
        .save_saelens(dir)
        .unwrap();
    let p = dir.join("sae_weights.safetensors");
    let st = SafeTensors::open(&p).unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors
        .keys()
        .map(|k| {
            let t = st.tensor(k).unwrap();
            (k.clone(), t.shape().to_vec(), t.as_slice().to_vec())
        })
        .collect();
    drop(st);
    for (k, _, v) in &mut owned {
        if k == "b_enc" {
            v[0] = -1e6;
        }
    }
    let refs: Vec<(&str, &[usize], &[f32])> = owned
        .iter()
        .map(|(k, s, v)| (k.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    write_safetensors(&p, &refs, &Default::default()).unwrap();
}

#[test]
fn top_examples_equal_a_brute_force_recomputation() {
    let dir = scratch("record_brute");
    let x = store(&dir.join("store"));
    sae(&dir.join("sae"), D);
    let out = dir.join("out");
    let (top, ctx) = (6usize, 3usize);
    let log = run_ok(
        saeplug()
            .args(["record", "--sae"])
            .arg(dir.join("sae"))
            .arg("--store")
            .arg(dir.join("store"))
            .args([
                "--top",
                "6",
                "--context",
                "3",
                "--batch",
                "64",
                "--chunk",
                "16",
                "--out",
            ])
            .arg(&out),
    );
    assert!(log.contains("peak RSS"), "{log}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["store"]["rows"], N);
    let chunks: Vec<String> = index["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(chunks.len(), 3); // 40 features, 16 a chunk
    let mut feats = Vec::new();
    for c in &chunks {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(c)).unwrap()).unwrap();
        feats.extend(v["features"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(feats.len(), 40);

    // Brute force: every row encoded densely, then sorted.
    let s = Sae::open(dir.join("sae")).unwrap();
    let mut dense = vec![0.0f32; N * 40];
    CpuBackend::new(1).encode(&s, &x, &mut dense).unwrap();
    let mut live = 0;
    for f in &feats {
        let i = f["feature"].as_u64().unwrap() as usize;
        let mut ev: Vec<(f32, usize)> = (0..N)
            .filter(|&r| dense[r * 40 + i] != 0.0)
            .map(|r| (dense[r * 40 + i], r))
            .collect();
        assert_eq!(f["count"], ev.len(), "feature {i}");
        if i == 0 {
            assert!(ev.is_empty(), "the dead feature fired");
            assert_eq!(f["fired"], false);
            assert_eq!(f["density"], 0.0);
            assert!(f["top"].as_array().unwrap().is_empty());
            continue;
        }
        if ev.is_empty() {
            continue;
        }
        live += 1;
        ev.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
        let got = f["top"].as_array().unwrap();
        assert_eq!(got.len(), top.min(ev.len()));
        for (e, &(v, r)) in got.iter().zip(&ev) {
            assert_eq!(e["row"], r, "feature {i}");
            let gv = e["value"].as_f64().unwrap() as f32;
            assert!(
                (gv - v).abs() <= 1e-5 * v.abs().max(1.0),
                "feature {i} row {r}: {gv} vs {v}"
            );
            // The window: the rows of its sequence within ±ctx.
            let (s0, s1) = ((r / SEQ) * SEQ, (r / SEQ) * SEQ + SEQ);
            let (a, b) = (r.saturating_sub(ctx).max(s0), (r + ctx + 1).min(s1).min(N));
            let want_tokens: Vec<i32> = (a..b).map(token).collect();
            let toks: Vec<i32> = e["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap() as i32)
                .collect();
            assert_eq!(toks, want_tokens, "feature {i} row {r}");
            assert_eq!(e["focus"], r - a);
            assert_eq!(e["pos"], 1 + r % SEQ);
            for (k, act) in e["acts"].as_array().unwrap().iter().enumerate() {
                let want = dense[(a + k) * 40 + i];
                let g = act.as_f64().unwrap() as f32;
                assert!(
                    (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "feature {i} row {r} token {k}: {g} vs {want}"
                );
            }
        }
        let h: u64 = f["histogram"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(h, ev.len() as u64);
        for iv in f["intervals"].as_array().unwrap() {
            let (lo, hi) = (iv["lo"].as_f64().unwrap(), iv["hi"].as_f64().unwrap());
            for smp in iv["samples"].as_array().unwrap() {
                let v = smp["value"].as_f64().unwrap();
                assert!(v >= lo && v <= hi, "sample {v} outside [{lo}, {hi}]");
            }
        }
    }
    assert!(live > 10, "too few live features to test: {live}");
}

#[test]
fn an_sae_of_another_width_is_refused() {
    let dir = scratch("record_width");
    store(&dir.join("store"));
    sae(&dir.join("sae"), D + 1);
    let o = saeplug()
        .args(["record", "--sae"])
        .arg(dir.join("sae"))
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("d_in is 17") && err.contains("16 values"),
        "{err}"
    );
}

/// With the real model's GGUF: token text equals the `gguf` package's vocabulary
/// decoded by GPT-2's byte table (tests/py/check_vocab_text.py), over a store of
/// 576-wide rows whose tokens cover the whole vocabulary; an SAE whose d_in is not
/// the model's n_embd is refused.
#[test]
fn token_text_from_the_model_vocabulary() {
    let Some(llama) = common::llama::llama_dir() else {
        return;
    };
    let model = llama.join("model.gguf");
    let dir = scratch("record_vocab");
    let (n, d) = (1500usize, 576usize);
    let x = saeplug::synthetic::Rng::new(5).normal_vec(n * d, 1.0);
    let mut w = StoreWriter::create(&dir.join("store"), StoreSpec::new(d, "l_out-6")).unwrap();
    let toks: Vec<i32> = (0..n).map(|r| (r * 4999 % 49152) as i32).collect();
    let seq: Vec<u32> = (0..n).map(|r| (r / 100) as u32).collect();
    let pos: Vec<u32> = (0..n).map(|r| (1 + r % 100) as u32).collect();
    w.append(Split::Train, &x, &toks, &seq, &pos).unwrap();
    w.finish().unwrap();
    let sae = repo_root().join("../shared/fixtures/smollm2-l6-topk");
    run_ok(
        saeplug()
            .args(["record", "--sae"])
            .arg(&sae)
            .arg("--store")
            .arg(dir.join("store"))
            .arg("--model")
            .arg(&model)
            .args(["--features", "0,1,2,3,4,5,6,7,8,9", "--out"])
            .arg(dir.join("out")),
    );
    let ok = run_ok(
        std::process::Command::new("python3")
            .arg(repo_root().join("tests/py/check_vocab_text.py"))
            .arg(&model)
            .arg(dir.join("out")),
    );
    assert!(ok.starts_with("ok "), "{ok}");

    // A 16-wide SAE on a 16-wide store, with the 576-wide model: refused.
    let small = scratch("record_vocab_small");
    store(&small.join("store"));
    self::sae(&small.join("sae"), D);
    let o = saeplug()
        .args(["record", "--sae"])
        .arg(small.join("sae"))
        .arg("--store")
        .arg(small.join("store"))
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(small.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("d_in is 16") && err.contains("n_embd 576"),
        "{err}"
    );
}
