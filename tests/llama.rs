//! The real engine: llama.cpp (built by scripts/build-llama.sh from the
//! llama-cpp-python sdist) running SmolLM2-135M-Instruct, steered through
//! saeplug's adapter (bindings/llama.cpp) and the `saeplug-llama` program.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const LAYER: u32 = 6;

fn llama_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SAEPLUG_LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/saeplug/llama")
        });
    let ok = dir.join("src/include/llama.h").is_file()
        && dir.join("build/bin/libllama.so").is_file()
        && dir.join("model.gguf").is_file();
    if ok {
        return Some(dir);
    }
    if std::env::var("SAEPLUG_ALLOW_NO_LLAMA").as_deref() == Ok("1") {
        eprintln!(
            "NO LLAMA.CPP BUILD at {}; SAEPLUG_ALLOW_NO_LLAMA=1 set, this test checks nothing",
            dir.display()
        );
        return None;
    }
    panic!(
        "llama.cpp build or model missing in {}: run scripts/build-llama.sh (or set SAEPLUG_ALLOW_NO_LLAMA=1)",
        dir.display()
    );
}

/// Build the static saeplug library and compile saeplug-llama against llama.cpp.
fn build(dir: &Path, out: &Path) -> PathBuf {
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args(["build", "-q", "-p", "saeplug-ffi", "-p", "saeplug-cli"]);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    if profile == "release" {
        c.arg("--release");
    }
    run_ok(&mut c);
    let lib = repo_root()
        .join("target")
        .join(profile)
        .join("libsaeplug_ffi.a");
    let bin = dir.join("build/bin");
    let exe = out.join("saeplug-llama");
    let b = repo_root().join("bindings/llama.cpp");
    run_ok(
        Command::new("gcc")
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-I{}", repo_root().join("include").display()))
            .arg(format!("-I{}", dir.join("src/include").display()))
            .arg(format!("-I{}", dir.join("src/ggml/include").display()))
            .arg(b.join("saeplug_llama.c"))
            .arg(b.join("main.c"))
            .arg(&lib)
            .arg(format!("-L{}", bin.display()))
            .args([
                "-lllama",
                "-lggml",
                "-lggml-base",
                "-lpthread",
                "-ldl",
                "-lm",
            ])
            .arg(format!("-Wl,-rpath,{}", bin.display()))
            .arg("-o")
            .arg(&exe),
    );
    exe
}

fn floats(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

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

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
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
