//! `saeplug train` as a child process: the folder it writes opens in saeplug and
//! reconstructs its input, metrics and the plot are written, an interrupted run
//! (a stop after N steps, or SIGINT) resumes to the same bits as an uninterrupted
//! one, and bad input is refused before anything is written.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use saeplug::train::toy::ToyModel;
use saeplug::weights::write_npy;
use saeplug::{Backend, CpuBackend, Sae};

const D_IN: usize = 32;

fn toy_input(dir: &Path, rows: usize) -> (std::path::PathBuf, Vec<f32>) {
    let toy = ToyModel::new(D_IN, 64, 3.0, 0.0, 1);
    let x: Vec<f32> = toy.sample(rows, 2).iter().map(|v| v * 7.0).collect();
    let p = dir.join("acts.npy");
    write_npy(&p, &[rows, D_IN], &x).unwrap();
    (p, x)
}

fn train(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let defaults = [
        ("--arch", "topk"),
        ("--k", "4"),
        ("--d-sae", "128"),
        ("--batch-size", "256"),
        ("--lr", "1e-3"),
        ("--threads", "2"),
        ("--log-every", "5"),
        ("--dead-window", "25600"),
    ];
    let mut c = saeplug();
    c.arg("train")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out);
    for (k, v) in defaults {
        if !extra.contains(&k) {
            c.args([k, v]);
        }
    }
    c.args(extra);
    c
}

/// FVU of `sae` on `x`, computed here in f64.
fn fvu(sae: &Sae, x: &[f32]) -> f64 {
    let cpu = CpuBackend::new(2);
    let n = x.len() / D_IN;
    let mut f = vec![0.0; n * sae.d_sae()];
    let dn = cpu.encode(sae, x, &mut f).unwrap();
    let mut r = vec![0.0; x.len()];
    cpu.decode(sae, &f, &dn, &mut r).unwrap();
    let mut mean = [0.0f64; D_IN];
    for row in x.chunks(D_IN) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v) / n as f64;
        }
    }
    let var: f64 = x
        .iter()
        .enumerate()
        .map(|(i, v)| (f64::from(*v) - mean[i % D_IN]).powi(2))
        .sum();
    let err: f64 = x
        .iter()
        .zip(&r)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum();
    err / var
}

#[test]
fn trains_a_saelens_folder_that_saeplug_opens_with_metrics_and_plot() {
    let dir = scratch("train-cli-basic");
    let (input, x) = toy_input(&dir, 20_000);
    let out = dir.join("sae");
    let log = run_ok(&mut train(&input, &out, &["--tokens", "400000"]));
    assert!(log.contains("tokens/s"), "{log}");
    let sae = Sae::open(&out).unwrap();
    assert_eq!((sae.d_in(), sae.d_sae()), (D_IN, 128));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["architecture"], "topk");
    assert_eq!(cfg["k"], 4);
    assert_eq!(cfg["metadata"]["sae_lens_version"], "6.0.0");
    // Raw-unit input (the scale is folded in): a trained SAE explains most variance;
    // the untrained one (step 0 checkpoint of the same seed) does not.
    let trained = fvu(&sae, &x[..5000 * D_IN]);
    assert!(trained < 0.25, "FVU {trained}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,tokens,loss,mse,fvu,l0,dead_frac,lr")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 313); // 1563 steps, a row every 5 and the last
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    assert!(last[4] < first[4] / 2.0, "FVU {} -> {}", first[4], last[4]);
    assert_eq!(last[5], 4.0); // L0 = k
    assert!(last[7] < 1e-5); // lr decayed to ~0
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 4);
}

#[test]
fn an_interrupted_run_resumes_to_the_same_bits() {
    let dir = scratch("train-cli-resume");
    let (input, _) = toy_input(&dir, 3000);
    for arch in ["topk", "standard", "jumprelu", "batchtopk"] {
        let straight = dir.join(format!("straight-{arch}"));
        let parts = dir.join(format!("parts-{arch}"));
        let args = [
            "--tokens",
            "25600",
            "--checkpoint-every",
            "2560",
            "--arch",
            arch,
        ];
        run_ok(&mut train(&input, &straight, &args));
        let o = train(
            &input,
            &parts,
            &[&args[..], &["--stop-after", "37"]].concat(),
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(130), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
        assert!(!parts.join("sae_weights.safetensors").exists());
        run_ok(&mut train(&input, &parts, &["--resume"]));
        for f in ["sae_weights.safetensors", "cfg.json", "metrics.csv"] {
            assert_eq!(
                std::fs::read(straight.join(f)).unwrap(),
                std::fs::read(parts.join(f)).unwrap(),
                "{arch}: {f} differs after resume"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_resume_finishes_the_same() {
    let dir = scratch("train-cli-sigint");
    let (input, _) = toy_input(&dir, 3000);
    let straight = dir.join("straight");
    let parts = dir.join("parts");
    let args = ["--tokens", "600000", "--d-sae", "256"];
    let mut child = train(&input, &parts, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has logged a few rows, then interrupt.
    let csv = parts.join("metrics.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&csv).map_or(0, |s| s.lines().count()) < 4 {
        assert!(t0.elapsed().as_secs() < 60, "no metrics after 60 s");
        if let Some(st) = child.try_wait().unwrap() {
            panic!("training ended before the interrupt: {st}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("interrupted at step"), "{err}");
    assert!(parts.join("checkpoint.safetensors").exists());
    run_ok(&mut train(&input, &parts, &["--resume"]));
    run_ok(&mut train(&input, &straight, &args));
    assert_eq!(
        std::fs::read(straight.join("sae_weights.safetensors")).unwrap(),
        std::fs::read(parts.join("sae_weights.safetensors")).unwrap()
    );
}

#[test]
fn bad_input_is_refused_before_training() {
    let dir = scratch("train-cli-bad");
    let (input, mut x) = toy_input(&dir, 500);
    let fail = |c: &mut Command, want: &str| {
        let o = c.output().unwrap();
        let s = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.status.success(), "{c:?} succeeded: {s}");
        assert!(s.contains(want), "{c:?}: wanted '{want}' in: {s}");
    };
    // NaN and Inf rows are refused, naming the row; nothing is written.
    x[137 * D_IN + 5] = f32::NAN;
    let nan = dir.join("nan.npy");
    write_npy(&nan, &[500, D_IN], &x).unwrap();
    let out = dir.join("out-nan");
    fail(&mut train(&nan, &out, &[]), "row 137");
    assert!(!out.join("sae_weights.safetensors").exists());
    x[137 * D_IN + 5] = 0.0;
    x[3] = f32::INFINITY;
    write_npy(&nan, &[500, D_IN], &x).unwrap();
    fail(&mut train(&nan, &out, &[]), "non-finite");
    // Sizes.
    let out = dir.join("out");
    fail(&mut train(&input, &out, &["--d-sae", "0"]), "at least 1");
    fail(
        &mut train(&input, &out, &["--k", "129"]),
        "k 129 must be in 1..=d_sae (128)",
    );
    fail(
        &mut train(&input, &out, &["--matryoshka", "64,32"]),
        "Matryoshka",
    );
    fail(
        &mut train(&input, &out, &["--arch", "jumprelu", "--ghost-grads"]),
        "ghost grads",
    );
    fail(
        &mut train(&input, &out, &["--resume"]),
        "checkpoint.safetensors",
    );
    assert!(!out.join("sae_weights.safetensors").exists());
    // A checkpoint resumed on an input of another width.
    let ck = dir.join("ck");
    let o = train(&input, &ck, &["--stop-after", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{o:?}");
    let narrow = dir.join("narrow.npy");
    write_npy(&narrow, &[100, 16], &[0.5; 1600]).unwrap();
    fail(&mut train(&narrow, &ck, &["--resume"]), "d_in 32");
    // A corrupt checkpoint is an error, not a crash.
    std::fs::write(ck.join("checkpoint.safetensors"), b"\x08\0\0\0\0\0\0\0{}").unwrap();
    fail(&mut train(&input, &ck, &["--resume"]), "checkpoint");
    // A matrix that is not [n, d_in].
    let flat = dir.join("flat.npy");
    write_npy(&flat, &[64], &[0.0; 64]).unwrap();
    fail(&mut train(&flat, &out, &[]), "[n, d_in]");
    let missing = dir.join("missing.npy");
    fail(&mut train(&missing, &out, &[]), "missing.npy");
}

/// `--backend gpu` trains on the wgpu backend (lavapipe in CI): a few steps give
/// the weights the CPU run gives to GPU rounding, and the folder opens.
#[test]
fn trains_on_the_gpu_like_on_the_cpu() {
    if gpu_or_fail(saeplug::WgpuOptions::default()).is_none() {
        return;
    }
    let dir = scratch("train-cli-gpu");
    let (input, x) = toy_input(&dir, 2000);
    let mut weights = Vec::new();
    for backend in ["cpu", "gpu"] {
        let out = dir.join(backend);
        let log = run_ok(&mut train(
            &input,
            &out,
            &["--tokens", "2560", "--backend", backend],
        ));
        assert!(log.contains("tokens/s"), "{log}");
        if backend == "gpu" {
            assert!(log.contains("training on "), "{log}");
        }
        let sae = Sae::open(&out).unwrap();
        assert!(fvu(&sae, &x[..500 * D_IN]).is_finite());
        weights.push(sae.weights().w_dec.as_slice().to_vec());
    }
    let scale = weights[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = weights[0]
        .iter()
        .zip(&weights[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= 1e-3 * scale,
        "10 steps: GPU and CPU decoders differ by {diff} (scale {scale})"
    );
    assert!(scale > 0.0);
}
