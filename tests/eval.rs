//! `saeplug-llama eval` on the real engine (llama.cpp running SmolLM2-135M):
//! SAEs whose scores are known exactly (an exact reconstruction: score 1, KL 0;
//! an all-zero SAE: score 0), an SAE of the wrong width (refused), the real
//! SAELens SAE of the fixtures (scores reported; FVU, L0 and dead latents
//! against an f64 reference on the same activations captured by `capture`),
//! and the clean CE against logits dumped by `generate`.

mod common;

use std::path::Path;
use std::process::Command;

use common::llama::*;
use common::*;

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing or not a number in {v}"))
}

/// `saeplug-llama eval` of `sae` at layer 6 over the tutorial; the JSON.
fn eval(exe: &Path, model: &Path, sae: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    eval_with_log(exe, model, sae, out, extra).0
}

/// [`eval`], with the program's stdout and stderr.
fn eval_with_log(
    exe: &Path,
    model: &Path,
    sae: &Path,
    out: &Path,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let j = out.join(format!(
        "{}.json",
        sae.file_name().unwrap().to_string_lossy()
    ));
    let o = run_ok(
        Command::new(exe)
            .args(["eval", "-m"])
            .arg(model)
            .arg("--sae")
            .arg(sae)
            .args(["--layer", "6", "-t", "2", "--json"])
            .arg(&j)
            .args(extra)
            .arg(corpus()),
    );
    for line in [
        "CE loss",
        "KL(clean",
        "L0",
        "FVU",
        "dead latents",
        "dense latents",
    ] {
        assert!(o.contains(line), "no '{line}' in the table:\n{o}");
    }
    (json(&j), o)
}

#[test]
fn eval_scores_of_exact_and_zero_saes() {
    let Some(dir) = llama_dir() else { return };
    let out = scratch("eval_exact");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/py/make_eval_saes.py"))
            .arg("576")
            .arg(&out),
    );

    // The exact SAE (relu(x) - relu(-x) = x): the spliced run is the clean run.
    let e = eval(&exe, &model, &out.join("exact"), &out, &["--tokens", "508"]);
    assert_eq!((num(&e, "sequences"), num(&e, "tokens")), (4.0, 508.0));
    assert_eq!(
        num(&e, "predictions"),
        4.0 * 126.0,
        "BOS predictions counted"
    );
    let (c, s, a) = (
        num(&e, "ce_loss_clean"),
        num(&e, "ce_loss_spliced"),
        num(&e, "ce_loss_ablated"),
    );
    assert!(c > 0.5 && c < 8.0, "implausible clean CE {c}");
    assert!(a > c + 1.0, "ablation barely hurts: {a} vs {c}");
    assert!((s - c).abs() <= 1e-5 * c, "exact SAE: CE {s} vs clean {c}");
    assert!((num(&e, "ce_loss_score") - 1.0).abs() < 1e-5, "{e}");
    assert!(num(&e, "kl_div_spliced").abs() < 1e-6, "{e}");
    assert!(num(&e, "kl_div_ablated") > 0.5, "{e}");
    assert!((num(&e, "kl_div_score") - 1.0).abs() < 1e-6, "{e}");
    assert!(num(&e, "fvu") < 1e-10, "{e}");
    // Exactly one of x_d, -x_d is positive in each row (no exact zeros here).
    assert!((num(&e, "l0") - 576.0).abs() < 0.01, "{e}");
    let first: Vec<i64> = e["first_sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(first.len(), 128);

    // The zero SAE: the spliced run is the ablated run.
    let z = eval(&exe, &model, &out.join("zero"), &out, &["--tokens", "508"]);
    assert_eq!(num(&z, "ce_loss_spliced"), num(&z, "ce_loss_ablated"));
    assert!((num(&z, "ce_loss_clean") - c).abs() <= 1e-6 * c);
    assert!(num(&z, "ce_loss_score").abs() < 1e-6, "{z}");
    assert!(num(&z, "kl_div_score").abs() < 1e-6, "{z}");
    // Centred FVU of x_hat = 0: sum ||x||^2 / sum ||x - mean||^2 = 1 + n ||mean||^2 / (...) > 1.
    assert!(num(&z, "fvu") > 1.0, "{z}");
    assert_eq!(num(&z, "l0"), 0.0);
    assert_eq!(num(&z, "dead_latents"), 1152.0);

    // An SAE for another width is refused, naming both widths.
    let o = Command::new(&exe)
        .args(["eval", "-m"])
        .arg(&model)
        .arg("--sae")
        .arg(out.join("wrong_d_in"))
        .args(["--layer", "6"])
        .arg(corpus())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("d_in is 577") && err.contains("n_embd 576"),
        "unclear error:\n{err}"
    );

    // The clean CE of one prediction (ctx 3: BOS, t1 -> t2) against logits dumped
    // by `generate` for the prompt BOS, t1, in f64.
    let one = eval(
        &exe,
        &model,
        &out.join("exact"),
        &out,
        &["--ctx", "3", "--tokens", "2"],
    );
    assert_eq!(num(&one, "predictions"), 1.0);
    let t: Vec<i64> = one["first_sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(&t[..], &first[..3], "eval's sequences are not the corpus");
    let dump = out.join("logits.bin");
    run_ok(
        Command::new(&exe)
            .args(["generate", "-m"])
            .arg(&model)
            .args(["-n", "0", "-t", "2", "--prompt-tokens"])
            .arg(format!("{},{}", t[0], t[1]))
            .arg("--dump-logits")
            .arg(&dump),
    );
    let z = floats(&dump);
    let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    let ce_ref = lse - z[t[2] as usize] as f64;
    let ce = num(&one, "ce_loss_clean");
    assert!(
        (ce - ce_ref).abs() < 1e-3 * ce_ref.abs().max(1.0),
        "clean CE {ce} vs generate's logits {ce_ref}"
    );
}

#[test]
fn eval_the_smollm2_layer6_topk_sae() {
    use saeplug::store::{ActivationStore, Split};
    let Some(dir) = llama_dir() else { return };
    let out = scratch("eval_real");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let sae_dir = repo_root().join("../shared/fixtures/smollm2-l6-topk");
    let svg = out.join("density.svg");
    let r = eval(
        &exe,
        &model,
        &sae_dir,
        &out,
        &["--tokens", "2032", "--svg", svg.to_str().unwrap()],
    );
    eprintln!("smollm2-l6-topk in llama.cpp: {r}");
    let score = num(&r, "ce_loss_score");
    assert!(score > 0.7 && score <= 1.0, "ce_loss_score {score}");
    let kls = num(&r, "kl_div_score");
    assert!(kls > 0.7 && kls <= 1.0, "kl_div_score {kls}");
    assert!(num(&r, "kl_div_spliced") > 0.0);
    assert!(num(&r, "ce_loss_spliced") > num(&r, "ce_loss_clean"));
    let (fvu, l0) = (num(&r, "fvu"), num(&r, "l0"));
    assert!(fvu > 0.03 && fvu < 0.4, "FVU {fvu} (documented: 0.133)");
    assert!(l0 > 31.0 && l0 <= 32.0, "TopK 32: L0 {l0}");
    let d_sae = num(&r, "d_sae") as u64;
    let dead = num(&r, "dead_latents") as u64;
    let hist: u64 = r["log10_density_histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(hist + dead, d_sae, "the histogram holds every live latent");
    let pic = std::fs::read_to_string(&svg).unwrap();
    assert!(pic.starts_with("<svg") && pic.trim_end().ends_with("</svg>"));
    assert!(pic.matches("<rect").count() > 5, "no bars:\n{pic}");

    // The same activations through capture (same sequences, BOS dropped), then
    // FVU (centred), L0 and dead latents in f64 with the reference SAE.
    let store = out.join("acts");
    run_ok(
        Command::new(&exe)
            .args(["capture", "-m"])
            .arg(&model)
            .args([
                "--layer",
                "6",
                "--ctx",
                "128",
                "--tokens",
                "2032",
                "--heldout",
                "0",
                "-t",
                "2",
                "--out",
            ])
            .arg(&store)
            .arg(corpus()),
    );
    let s = ActivationStore::open(&store).unwrap();
    let n = s.n_rows(Split::Train);
    assert_eq!(n, 2032);
    let x = s.rows(Split::Train, 0, n).unwrap();
    let sae = saeplug::Sae::open(&sae_dir).unwrap();
    let (d, m) = (sae.d_in(), sae.d_sae());
    let f = saeplug::reference::encode(&sae, &x);
    let xh = saeplug::reference::reconstruct(&sae, &x);
    let mut mean = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for (mj, &v) in mean.iter_mut().zip(row) {
            *mj += v as f64 / n as f64;
        }
    }
    let (mut err, mut var) = (0.0f64, 0.0f64);
    for (i, row) in x.chunks_exact(d).enumerate() {
        for j in 0..d {
            err += (row[j] as f64 - xh[i * d + j]).powi(2);
            var += (row[j] as f64 - mean[j]).powi(2);
        }
    }
    let fvu_ref = err / var;
    let l0_ref = f.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    let dead_ref = (0..m)
        .filter(|&j| (0..n).all(|i| f[i * m + j] <= 0.0))
        .count() as f64;
    eprintln!("reference: FVU {fvu_ref} L0 {l0_ref} dead {dead_ref}");
    assert!(
        (fvu - fvu_ref).abs() < 1e-3 * fvu_ref,
        "FVU {fvu} vs f64 {fvu_ref}"
    );
    assert!((l0 - l0_ref).abs() < 0.01, "L0 {l0} vs f64 {l0_ref}");
    assert!(
        (dead as f64 - dead_ref).abs() <= 2.0,
        "dead {dead} vs f64 {dead_ref}"
    );
}

/// Every layer on an RPC device: eval reads, splices and zeroes l_out through
/// ggml_backend_tensor_get/set, and every figure equals the CPU run's.
#[test]
fn eval_with_every_layer_on_an_rpc_server_gives_the_cpu_figures() {
    let Some(dir) = llama_dir() else { return };
    let out = scratch("eval_rpc");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let sae_dir = repo_root().join("../shared/fixtures/smollm2-l6-topk");
    let args = ["--tokens", "254", "-b", "256"];
    let cpu = eval(&exe, &model, &sae_dir, &out, &args);
    let server = rpc_server(&dir);
    let on_rpc = out.join("rpc");
    std::fs::create_dir_all(&on_rpc).unwrap();
    let (rpc, log) = eval_with_log(
        &exe,
        &model,
        &sae_dir,
        &on_rpc,
        &[&args[..], &["--rpc", server.1.as_str(), "-ngl", "99"]].concat(),
    );
    drop(server);
    assert!(
        log.contains("RPC0") && log.contains("offloaded 31/31 layers"),
        "no layer on the RPC device:\n{log}"
    );
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    assert!(num(&cpu, "ce_loss_score") > 0.7, "{cpu}");
    assert_eq!(strip(cpu), strip(rpc));
}
