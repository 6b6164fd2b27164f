//! The `saeplug` binary: demo runs, inspect describes, encode writes what SAELens computes.

mod common;

use std::process::Command;

use common::*;
use saeplug::weights::{SafeTensors, read_npy};

fn saeplug() -> Command {
    let exe = repo_root().join(if cfg!(debug_assertions) {
        "target/debug/saeplug"
    } else {
        "target/release/saeplug"
    });
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args(["build", "-q", "-p", "saeplug-cli"]);
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    assert!(c.status().unwrap().success(), "building the CLI failed");
    Command::new(exe)
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    let s = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{c:?}: {s}");
    s
}

#[test]
fn demo_runs_with_no_arguments() {
    let out = ok(&mut saeplug());
    assert!(out.contains("zero-copy: true"), "{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
}

#[test]
fn inspect_and_encode_a_fixture() {
    let dir = saelens_fixtures().join("gated");
    let out = ok(saeplug().arg("inspect").arg(&dir));
    assert!(
        out.contains("Gated") && out.contains("d_sae:         256"),
        "{out}"
    );
    let io = fixture_io(&dir);
    let scratch = scratch("cli");
    let st_out = scratch.join("out.safetensors");
    ok(saeplug()
        .arg("encode")
        .arg(&dir)
        .arg("--input")
        .arg(dir.join("io.safetensors"))
        .args(["--tensor", "x", "--output"])
        .arg(&st_out));
    let st = SafeTensors::open(&st_out).unwrap();
    let f = st.tensor("feature_acts").unwrap();
    assert!(max_abs_diff(f.as_slice(), &io.feature_acts) <= 1e-4);
    let r = st.tensor("recon").unwrap();
    assert!(max_abs_diff(r.as_slice(), &io.recon) <= 1e-4);
    // .npy in, .npy out.
    let x_npy = scratch.join("x.npy");
    saeplug::weights::write_npy(&x_npy, &[io.n, 64], &io.x).unwrap();
    let npy_out = scratch.join("f.npy");
    ok(saeplug()
        .arg("encode")
        .arg(&dir)
        .arg("--input")
        .arg(&x_npy)
        .arg("--output")
        .arg(&npy_out));
    let f2 = read_npy(&npy_out).unwrap();
    assert_eq!(f2.shape(), &[io.n, 256]);
    assert!(max_abs_diff(f2.as_slice(), &io.feature_acts) <= 1e-4);
    // Errors are reported, not panics.
    let o = saeplug()
        .arg("encode")
        .arg(&dir)
        .arg("--input")
        .arg(&st_out)
        .arg("--output")
        .arg(&npy_out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tensor"));
}

#[test]
fn steer_sweep_export_and_decompose_commands() {
    let dir = saelens_fixtures().join("standard");
    let io = fixture_io(&dir);
    let out = scratch("cli-steer");
    let x_npy = out.join("x.npy");
    saeplug::weights::write_npy(&x_npy, &[io.n, 64], &io.x).unwrap();
    let y_npy = out.join("y.npy");
    // Ablate feature 3 on every row; the library's own edit gives the same result.
    ok(saeplug()
        .arg("steer")
        .arg(&dir)
        .arg("--input")
        .arg(&x_npy)
        .arg("--output")
        .arg(&y_npy)
        .args(["--ablate", "3"]));
    let y = read_npy(&y_npy).unwrap();
    let sae = saeplug::Sae::open(&dir).unwrap();
    let mut want = io.x.clone();
    saeplug::steer::apply_edits(
        &saeplug::CpuBackend::new(1),
        &sae,
        &mut want,
        &[saeplug::steer::Edit::Ablate { feature: 3 }],
        None,
    )
    .unwrap();
    assert_eq!(y.as_slice(), &want[..]);
    assert!(ok(saeplug().args(["sweep", "--k", "4,8"])).contains("gp"));
    let cv = out.join("cv.gguf");
    ok(saeplug()
        .arg("export-cvec")
        .arg("--sae")
        .arg(&dir)
        .args(["--layer", "2", "--feature", "5:1.5", "--out"])
        .arg(&cv));
    assert_eq!(&std::fs::read(&cv).unwrap()[..4], b"GGUF");
    let v_npy = out.join("v.npy");
    let v = saeplug::decompose::recompose(&sae, &[(5, 1.5), (17, -0.5)]);
    saeplug::weights::write_npy(&v_npy, &[64], &v).unwrap();
    let d = ok(saeplug()
        .arg("decompose")
        .arg("--sae")
        .arg(&dir)
        .arg("--vector")
        .arg(&v_npy)
        .args(["--k", "2"]));
    assert!(d.contains("#5") && d.contains("#17"), "{d}");
    // Bad edits are errors, not panics.
    let o = saeplug()
        .arg("steer")
        .arg(&dir)
        .arg("--input")
        .arg(&x_npy)
        .arg("--output")
        .arg(&y_npy)
        .args(["--clamp", "999:1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("999"));
}
