//! Bad input gets a clear error, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, CpuBackend, ErrorKind, Sae, TopKOrder};

fn copy_case(case: &str, name: &str) -> PathBuf {
    let src = saelens_fixtures().join(case);
    let dst = scratch(name);
    for f in ["cfg.json", "sae_weights.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

fn open_err(p: &Path) -> saeplug::Error {
    match Sae::open(p) {
        Ok(_) => panic!("{} opened but should have failed", p.display()),
        Err(e) => e,
    }
}

fn expect(p: &Path, kind: ErrorKind, needle: &str) {
    let e = open_err(p);
    let msg = e.to_string();
    assert_eq!(e.kind(), kind, "{msg}");
    assert!(msg.contains(needle), "message '{msg}' lacks '{needle}'");
}

fn st_file(d: &Path) -> PathBuf {
    d.join("sae_weights.safetensors")
}

#[test]
fn truncated_file() {
    let d = copy_case("standard", "trunc");
    let b = std::fs::read(st_file(&d)).unwrap();
    std::fs::write(st_file(&d), &b[..b.len() / 2]).unwrap();
    expect(&d, ErrorKind::Format, "truncated");
    std::fs::write(st_file(&d), &b[..5]).unwrap();
    expect(&d, ErrorKind::Format, "shorter than its 8-byte header");
    std::fs::write(st_file(&d), b"").unwrap();
    expect(&d, ErrorKind::Format, "0 bytes");
}

#[test]
fn header_lying_about_sizes() {
    let d = copy_case("standard", "lying");
    let mut b = std::fs::read(st_file(&d)).unwrap();
    // Header length larger than the file.
    let mut c = b.clone();
    c[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(st_file(&d), &c).unwrap();
    expect(&d, ErrorKind::Format, "header claims");
    // A shape that does not match its data_offsets span.
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
    let h2 = h
        .replacen("[64,256]", "[65,256]", 1)
        .replacen("[64, 256]", "[65, 256]", 1);
    assert_ne!(h, h2, "fixture header format changed");
    b.splice(8..8 + n, h2.bytes());
    std::fs::write(st_file(&d), &b).unwrap();
    expect(&d, ErrorKind::Format, "needs");
    // Garbage JSON.
    let mut g = (n as u64).to_le_bytes().to_vec();
    g.extend(std::iter::repeat_n(b'{', n));
    std::fs::write(st_file(&d), &g).unwrap();
    expect(&d, ErrorKind::Format, "not valid JSON");
}

fn write_saelens(d: &Path, cfg: serde_json_lite::Cfg, tensors: &[(&str, Vec<usize>)]) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(d.join("cfg.json"), cfg.0).unwrap();
    let data: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone(), vec![0.1; s.iter().product()]))
        .collect();
    let refs: Vec<(&str, &[usize], &[f32])> = data
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    saeplug::weights::write_safetensors(&st_file(d), &refs, &Default::default()).unwrap();
}

mod serde_json_lite {
    pub struct Cfg(pub String);
    pub fn cfg(arch: &str, extra: &str) -> Cfg {
        Cfg(format!(
            r#"{{"d_in": 8, "d_sae": 16, "architecture": "{arch}", {extra} "metadata": {{"sae_lens_version": "6.1.0"}}}}"#
        ))
    }
}
use serde_json_lite::cfg;

fn std_tensors() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("W_enc", vec![8, 16]),
        ("W_dec", vec![16, 8]),
        ("b_enc", vec![16]),
        ("b_dec", vec![8]),
    ]
}

#[test]
fn wrong_shapes_missing_tensors_unknown_arch() {
    let root = scratch("shapes");
    let d = root.join("ok");
    write_saelens(&d, cfg("standard", ""), &std_tensors());
    Sae::open(&d).unwrap();

    let d = root.join("shape");
    let mut t = std_tensors();
    t[1].1 = vec![8, 16];
    write_saelens(&d, cfg("standard", ""), &t);
    expect(
        &d,
        ErrorKind::Shape,
        "'W_dec' has shape [8, 16], expected [16, 8]",
    );

    let d = root.join("missing");
    write_saelens(&d, cfg("standard", ""), &std_tensors()[..3]);
    expect(&d, ErrorKind::MissingTensor, "missing tensor 'b_dec'");

    let d = root.join("jumprelu_no_threshold");
    write_saelens(&d, cfg("jumprelu", ""), &std_tensors());
    expect(&d, ErrorKind::MissingTensor, "threshold");

    let d = root.join("unknown");
    write_saelens(&d, cfg("quantum_sae", ""), &std_tensors());
    expect(&d, ErrorKind::UnknownArchitecture, "quantum_sae");

    let d = root.join("k_too_big");
    write_saelens(&d, cfg("topk", r#""k": 17,"#), &std_tensors());
    expect(&d, ErrorKind::InvalidArgument, "k = 17");

    let d = root.join("topk_no_k");
    write_saelens(&d, cfg("topk", ""), &std_tensors());
    expect(&d, ErrorKind::Format, "without 'k'");

    let d = root.join("transcoder");
    write_saelens(&d, cfg("transcoder", ""), &std_tensors());
    expect(&d, ErrorKind::Unsupported, "transcoder");

    let d = root.join("bad_cfg");
    write_saelens(
        &d,
        serde_json_lite::Cfg("{\"d_in\": 8,".into()),
        &std_tensors(),
    );
    expect(&d, ErrorKind::Format, "not valid JSON");

    let d = root.join("no_d_sae");
    write_saelens(
        &d,
        serde_json_lite::Cfg("{\"d_in\": 8}".into()),
        &std_tensors(),
    );
    expect(&d, ErrorKind::Format, "'d_sae'");

    let d = root.join("empty_dir");
    std::fs::create_dir_all(&d).unwrap();
    expect(&d, ErrorKind::Format, "no SAE found");

    expect(
        &root.join("does_not_exist"),
        ErrorKind::Io,
        "does_not_exist",
    );
}

#[test]
fn npz_errors() {
    let root = scratch("npz");
    let good = root.join("params.npz");
    let script = "import numpy as np, sys\n\
        r = np.random.default_rng(0)\n\
        w = dict(W_enc=r.random((8,16),dtype=np.float32), W_dec=r.random((16,8),dtype=np.float32),\n\
                 b_enc=np.zeros(16,np.float32), b_dec=np.zeros(8,np.float32), threshold=np.zeros(16,np.float32))\n\
        np.savez(sys.argv[1], **w)\n\
        np.savez_compressed(sys.argv[2], **w)\n";
    let comp = root.join("compressed.npz");
    let st = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&good)
        .arg(&comp)
        .status()
        .expect("python3 with numpy");
    assert!(st.success());
    Sae::open(&good).unwrap();
    expect(&comp, ErrorKind::Unsupported, "np.savez");
    let b = std::fs::read(&good).unwrap();
    let t = root.join("trunc.npz");
    std::fs::write(&t, &b[..b.len() - 40]).unwrap();
    let e = open_err(&t);
    assert_eq!(e.kind(), ErrorKind::Format, "{e}");
    std::fs::write(&t, &b[..b.len() / 2]).unwrap();
    assert_eq!(open_err(&t).kind(), ErrorKind::Format);
    std::fs::write(&t, b"PK").unwrap();
    assert_eq!(open_err(&t).kind(), ErrorKind::Format);
    // Random byte corruption of the zip directory and npy headers: never a panic.
    let mut rng = Rng::new(5);
    for i in 0..400 {
        let mut c = b.clone();
        for _ in 0..1 + rng.next_u64() % 3 {
            // Half the time aim at the central directory at the end of the file.
            let at = if i % 2 == 0 {
                c.len() - 1 - (rng.next_u64() % 500) as usize
            } else {
                (rng.next_u64() % c.len() as u64) as usize
            };
            c[at] = rng.next_u64() as u8;
        }
        std::fs::write(&t, &c).unwrap();
        let r = std::panic::catch_unwind(|| Sae::open(&t).map(|_| ()));
        assert!(
            r.is_ok(),
            "Sae::open panicked on corrupt npz (iteration {i})"
        );
    }
}

#[test]
fn random_corruption_never_panics() {
    // Flip bytes in the header region and in random places; every outcome must be
    // Ok or a clean error.
    let d = copy_case("jumprelu", "corrupt");
    let orig = std::fs::read(st_file(&d)).unwrap();
    let mut rng = Rng::new(9);
    let mut errors = 0;
    for i in 0..300 {
        let mut b = orig.clone();
        let flips = 1 + (rng.next_u64() % 4) as usize;
        for _ in 0..flips {
            let at = if i % 2 == 0 {
                (rng.next_u64() % 600) as usize
            } else {
                (rng.next_u64() % b.len() as u64) as usize
            };
            b[at] = rng.next_u64() as u8;
        }
        if i % 7 == 0 {
            b.truncate((rng.next_u64() % b.len() as u64) as usize);
        }
        std::fs::write(st_file(&d), &b).unwrap();
        let r = std::panic::catch_unwind(|| Sae::open(&d).map(|_| ()));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(_)) => errors += 1,
            Err(_) => panic!("Sae::open panicked on corrupt input (iteration {i})"),
        }
    }
    assert!(errors > 50, "corruption was detected only {errors} times");
}

#[test]
fn bad_compute_arguments() {
    let sae = random_sae(8, 16, Architecture::Standard, 1).unwrap();
    let cpu = CpuBackend::default();
    let mut out = vec![0.0; 16];
    // NaN input.
    let mut x = vec![0.5f32; 8];
    x[3] = f32::NAN;
    let e = cpu.encode(&sae, &x, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
    assert!(e.to_string().contains("row 0, column 3"), "{e}");
    x[3] = f32::INFINITY;
    assert_eq!(
        cpu.encode_sparse(&sae, &x).unwrap_err().kind(),
        ErrorKind::NonFinite
    );
    // Wrong lengths.
    let e = cpu.encode(&sae, &[0.0; 7], &mut out).unwrap_err();
    assert!(e.to_string().contains("not a multiple of d_in = 8"), "{e}");
    let e = cpu.encode(&sae, &[0.0; 8], &mut [0.0; 15]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = cpu
        .decode(&sae, &[0.0; 16], &[], &mut [0.0; 9])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = cpu
        .decode(&sae, &[f32::NAN; 16], &[], &mut [0.0; 8])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // Sparse codes out of range / inconsistent.
    let mut codes = cpu.encode_sparse(&sae, &[0.3; 8]).unwrap();
    codes.indices.push(16);
    codes.values.push(1.0);
    *codes.row_offsets.last_mut().unwrap() += 1;
    let e = cpu.decode_sparse(&sae, &codes, &mut [0.0; 8]).unwrap_err();
    assert!(e.to_string().contains("16 >= d_sae"), "{e}");
    codes.row_offsets[1] = 0;
    assert!(cpu.decode_sparse(&sae, &codes, &mut [0.0; 8]).is_err());
    // Empty batches are fine.
    assert!(cpu.encode(&sae, &[], &mut []).is_ok());
    let c = cpu.encode_sparse(&sae, &[]).unwrap();
    assert_eq!(c.n_rows(), 0);
    assert!(cpu.decode_sparse(&sae, &c, &mut []).is_ok());
    // k > d_sae is refused when building.
    let e = random_sae(
        8,
        16,
        Architecture::TopK {
            k: 17,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: false,
        },
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn file_change_is_detected() {
    let d = copy_case("standard", "changed");
    let sae = Sae::open(&d).unwrap();
    sae.check_unchanged().unwrap();
    // Replace the file (a new inode; the map keeps the old one alive) with a longer one.
    let mut b = std::fs::read(st_file(&d)).unwrap();
    b.extend_from_slice(&[0; 16]);
    std::fs::write(st_file(&d).with_extension("new"), &b).unwrap();
    std::fs::rename(st_file(&d).with_extension("new"), st_file(&d)).unwrap();
    let e = sae.check_unchanged().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileChanged, "{e}");
}
