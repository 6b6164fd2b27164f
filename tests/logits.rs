//! `saeplug-llama logits` on the real model (SmolLM2-135M, its unembedding tied
//! to token_embd, Q8_0): each feature's logit effects equal numpy's on the
//! matrix dequantised by the `gguf` Python package (tests/py/check_logits.py,
//! 1e-3 relative), and an SAE whose d_in is not the model's n_embd is refused.

mod common;

use std::process::Command;

use common::llama::*;
use common::*;

#[test]
fn logit_effects_equal_numpy_on_the_gguf_package_dequantisation() {
    let Some(dir) = llama_dir() else { return };
    let out = scratch("logits");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let sae = repo_root().join("../shared/fixtures/smollm2-l6-topk");
    let j = out.join("logits.json");
    let log = run_ok(
        Command::new(&exe)
            .args(["logits", "-m"])
            .arg(&model)
            .arg("--sae")
            .arg(&sae)
            .args(["--features", "0,1,7,100,555,1024,2000,2303", "--out"])
            .arg(&j),
    );
    assert!(log.contains("output_norm gain folded in"), "{log}");
    let ok = run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/py/check_logits.py"))
            .arg(&model)
            .arg(&sae)
            .arg(&j),
    );
    assert!(ok.contains("ok 8 features"), "{ok}");

    // An SAE for 577 inputs: refused, saying why.
    run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/py/make_eval_saes.py"))
            .arg("576")
            .arg(&out),
    );
    let o = Command::new(&exe)
        .args(["logits", "-m"])
        .arg(&model)
        .arg("--sae")
        .arg(out.join("wrong_d_in"))
        .arg("--out")
        .arg(out.join("wrong.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted an SAE of the wrong width");
    assert!(
        err.contains("d_in is 577") && err.contains("n_embd is 576"),
        "{err}"
    );
}
