//! Non-SAELens layouts (Gemma Scope 1 npz, Gemma Scope 2 bf16 safetensors,
//! sparsify f16 topk/groupmax) and SAELens pre-6 configs and normalisation modes,
//! written by numpy in tests/py/make_formats.py with expected outputs computed
//! there in float64, independently of saeplug. Also checked against the f64 oracle.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use saeplug::format::npz::Npz;
use saeplug::{Architecture, Backend, CpuBackend, Format, Normalization, Sae, TopKOrder};

fn make_cases() -> Vec<PathBuf> {
    let out = scratch("formats");
    let script = repo_root().join("tests/py/make_formats.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("python3 must be installed (with numpy) to run the format tests");
    assert!(
        o.status.success(),
        "make_formats.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

#[test]
fn numpy_written_formats_match_numpy_f64() {
    let cpu = CpuBackend::default();
    let cases = make_cases();
    assert_eq!(cases.len(), 7);
    for dir in cases {
        let name = dir.display().to_string();
        let exp = Npz::open(&dir.join("expected.npz")).unwrap();
        let x = exp.tensor("x").unwrap().as_slice().to_vec();
        let want_f = exp.tensor("feature_acts").unwrap().as_slice().to_vec();
        let want_r = exp.tensor("recon").unwrap().as_slice().to_vec();
        // Gemma Scope 1 is opened through its params.npz path, the rest by folder.
        let path = if dir.join("params.npz").exists() {
            dir.join("params.npz")
        } else {
            dir.clone()
        };
        let sae = Sae::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut f = vec![0.0; want_f.len()];
        let dn = cpu.encode(&sae, &x, &mut f).unwrap();
        let e = max_abs_diff(&f, &want_f);
        assert!(e <= 1e-4, "{name}: feature_acts err {e}");
        let mut r = vec![0.0; want_r.len()];
        cpu.decode(&sae, &f, &dn, &mut r).unwrap();
        let e = max_abs_diff(&r, &want_r);
        assert!(e <= 1e-4, "{name}: recon err {e}");
        // Sparse round trip, and the f64 oracle.
        let codes = cpu.encode_sparse(&sae, &x).unwrap();
        let mut r2 = vec![0.0; want_r.len()];
        cpu.decode_sparse(&sae, &codes, &mut r2).unwrap();
        assert!(max_abs_diff(&r2, &want_r) <= 1e-4, "{name}: sparse recon");
        let e = max_abs_diff64(&r, &saeplug::reference::reconstruct(&sae, &x));
        assert!(e <= 1e-4, "{name}: reference recon err {e}");
        assert!(
            f.iter().any(|v| *v != 0.0),
            "{name}: no feature fired, test is vacuous"
        );

        let c = sae.config();
        match c.format {
            Format::GemmaScope1 | Format::GemmaScope2 => {
                assert_eq!(c.architecture, Architecture::JumpRelu);
                assert!(!c.apply_b_dec_to_input);
            }
            Format::Sparsify => {
                assert!(matches!(c.architecture, Architecture::TopK { order, .. }
                    if order == TopKOrder::ReluThenTopK || order == TopKOrder::GroupMax));
                // f16 encoder converted once; the f32 tensors stay mapped.
                assert_eq!(sae.copied_tensors(), vec!["encoder.weight"], "{name}");
            }
            Format::SaeLens => {
                assert!(sae.copied_tensors().is_empty(), "{name}");
                if name.ends_with("layer_norm") {
                    assert_eq!(c.normalization, Normalization::LayerNorm);
                }
                if name.ends_with("pre6_topk") {
                    assert_eq!(c.hook_name.as_deref(), Some("blocks.2.hook_resid_pre"));
                }
            }
            _ => {}
        }
        if c.format == Format::GemmaScope2 {
            assert_eq!(c.hook_name.as_deref(), Some("model.layers.5.output"));
            assert_eq!(sae.copied_tensors().len(), 5, "bf16 tensors are converted");
        }
    }
}

#[test]
fn saved_saelens_folder_round_trips() {
    let dir = scratch("roundtrip");
    for arch in [
        Architecture::Standard,
        Architecture::JumpRelu,
        Architecture::Gated,
        Architecture::TopK {
            k: 5,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: true,
        },
    ] {
        let sae = saeplug::synthetic::random_sae(24, 80, arch, 3).unwrap();
        let d = dir.join(arch.name());
        sae.save_saelens(&d).unwrap();
        let back = Sae::open(&d).unwrap();
        assert!(back.copied_tensors().is_empty());
        assert_eq!(back.config().architecture, arch);
        let x = saeplug::synthetic::sparse_data(&sae, 9, 4, 0.05, 1);
        let cpu = CpuBackend::new(1);
        let mut a = vec![0.0; 9 * 80];
        let mut b = vec![0.0; 9 * 80];
        cpu.encode(&sae, &x, &mut a).unwrap();
        cpu.encode(&back, &x, &mut b).unwrap();
        assert_eq!(a, b, "{arch:?}");
        let want = saeplug::reference::encode(&sae, &x);
        assert!(max_abs_diff64(&a, &want) <= 1e-4, "{arch:?} vs reference");
    }
}

/// `write_npz` archives are read by numpy (values, shapes, member CRCs checked
/// by Python's zipfile) and mapped in place by `Npz::open`; a Gemma Scope 1
/// params.npz written this way loads as an SAE.
#[test]
fn written_npz_is_read_by_numpy_and_mapped_in_place() {
    use saeplug::format::npz::write_npz;
    let dir = scratch("npz-write");
    let mut rng = saeplug::synthetic::Rng::new(4);
    let (d, ds) = (12, 40);
    let w_enc = rng.normal_vec(d * ds, 1.0);
    let w_dec = rng.normal_vec(ds * d, 1.0);
    let b_enc = rng.normal_vec(ds, 0.1);
    let b_dec = rng.normal_vec(d, 0.1);
    let threshold: Vec<f32> = rng.normal_vec(ds, 0.1).iter().map(|v| v.abs()).collect();
    let path = dir.join("params.npz");
    write_npz(
        &path,
        &[
            ("W_enc", &[d, ds], &w_enc),
            ("W_dec", &[ds, d], &w_dec),
            ("b_enc", &[ds], &b_enc),
            ("b_dec", &[d], &b_dec),
            ("threshold", &[ds], &threshold),
        ],
    )
    .unwrap();
    // numpy: zipfile.testzip() checks every CRC; arrays printed as float64 sums.
    let script = r#"
import sys, zipfile, numpy as np
p = sys.argv[1]
assert zipfile.ZipFile(p).testzip() is None
z = np.load(p)
for k in ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"]:
    a = z[k]
    assert a.dtype == np.float32
    print(k, ",".join(map(str, a.shape)), repr(float(a.astype(np.float64).sum())), repr(float(a.flat[-1])))
"#;
    let out = run_ok(Command::new("python3").arg("-c").arg(script).arg(&path));
    let npz = Npz::open(&path).unwrap();
    for (line, (name, data)) in out.lines().zip([
        ("W_enc", &w_enc),
        ("W_dec", &w_dec),
        ("b_enc", &b_enc),
        ("b_dec", &b_dec),
        ("threshold", &threshold),
    ]) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], name);
        let sum: f64 = data.iter().map(|&v| v as f64).sum();
        let numpy_sum: f64 = f[2].parse().unwrap();
        assert!(
            (sum - numpy_sum).abs() <= 1e-9 * sum.abs().max(1.0),
            "{name}"
        );
        assert_eq!(
            f[3].parse::<f32>().unwrap(),
            *data.last().unwrap(),
            "{name}"
        );
        let t = npz.tensor(name).unwrap();
        assert!(
            t.is_mapped(),
            "{name} was copied: not 64-byte aligned in the archive"
        );
        assert_eq!(t.as_slice(), &data[..], "{name}");
        assert_eq!(
            t.shape()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
            f[1]
        );
    }
    let sae = Sae::open(&path).unwrap();
    assert_eq!(sae.config().format, Format::GemmaScope1);
    assert_eq!(sae.config().architecture, Architecture::JumpRelu);
    assert!(
        sae.copied_tensors().is_empty(),
        "{:?}",
        sae.copied_tensors()
    );
    // Bad names and shapes are refused before anything is written.
    assert!(write_npz(&dir.join("bad.npz"), &[("a/b", &[1], &[0.0])]).is_err());
    assert!(write_npz(&dir.join("bad.npz"), &[("a", &[2], &[0.0])]).is_err());
    assert!(!dir.join("bad.npz").exists());
}
