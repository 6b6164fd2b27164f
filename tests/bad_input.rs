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

// ---------------------------------------------------------------------------
// Hardening cases run in a child process: this test binary re-executed with
// SAEPLUG_CHILD_CASE set runs one operation (`child_case` below) and prints its
// outcome. An abort (allocation failure), SIGBUS or hang in the child fails the
// parent test instead of killing the test runner.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `case` on `arg` in a child process; the child's one-line outcome
/// (`OK ...` or `ERR <kind> <message>`). Fails on a crash or after `secs` seconds.
fn in_child(case: &str, arg: &Path, secs: u64) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["child_case", "--exact", "--nocapture", "--test-threads=1"])
        .env("SAEPLUG_CHILD_CASE", case)
        .env("SAEPLUG_CHILD_ARG", arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait child") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "case '{case}' on {} hung (killed after {secs} s)",
                arg.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().expect("child output");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        status.success(),
        "case '{case}' on {} crashed ({status}):\n{out}{}",
        arg.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .find_map(|l| l.split_once("CHILD-RESULT: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("case '{case}' printed no result:\n{out}"))
        .to_string()
}

fn outcome<T>(r: saeplug::Result<T>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(e) => format!("ERR {:?} {e}", e.kind()),
    }
}

/// The child side: does nothing unless re-executed by `in_child`.
#[test]
fn child_case() {
    let Ok(case) = std::env::var("SAEPLUG_CHILD_CASE") else {
        return;
    };
    let arg = PathBuf::from(std::env::var_os("SAEPLUG_CHILD_ARG").unwrap_or_default());
    let r = match case.as_str() {
        "open" => outcome(Sae::open(&arg)),
        "encode" => outcome(Sae::open(&arg).and_then(|sae| {
            let x = vec![0.5f32; sae.d_in()];
            CpuBackend::new(1).encode_sparse(&sae, &x).map(|_| ())
        })),
        "read_npy" => outcome(saeplug::weights::read_npy(&arg)),
        "safetensors" => outcome(saeplug::weights::SafeTensors::open(&arg)),
        "open_regular" => outcome(saeplug::weights::open_regular(&arg)),
        "map" => outcome(saeplug::weights::MappedFile::open(&arg)),
        // Open, truncate the weights file to nothing, then check before any use.
        "truncate_then_check" => outcome(Sae::open(&arg).and_then(|sae| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(arg.join("sae_weights.safetensors"))
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            sae.check_unchanged()
        })),
        other => format!("unknown case {other}"),
    };
    println!("\nCHILD-RESULT: {r}");
}

fn expect_child(case: &str, arg: &Path, kind: ErrorKind, needles: &[&str]) {
    let r = in_child(case, arg, 20);
    let want = format!("ERR {kind:?} ");
    assert!(
        r.starts_with(&want),
        "{case} {}: want {want}..., got {r}",
        arg.display()
    );
    for n in needles {
        assert!(r.contains(n), "{case} {}: '{r}' lacks '{n}'", arg.display());
    }
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(st.success());
}

#[test]
fn fifos_devices_and_folders_are_refused_not_read() {
    let root = scratch("special");
    // A FIFO with no writer: opening it for reading would block forever.
    let fifo = root.join("x.npy");
    mkfifo(&fifo);
    for case in ["read_npy", "safetensors", "open_regular", "map"] {
        expect_child(
            case,
            &fifo,
            ErrorKind::Format,
            &["FIFO", "not a regular file"],
        );
    }
    // cfg.json as a FIFO next to good weights: read_json must not block.
    let d = copy_case("standard", "fifo_cfg");
    std::fs::remove_file(d.join("cfg.json")).unwrap();
    mkfifo(&d.join("cfg.json"));
    expect_child("open", &d, ErrorKind::Format, &["cfg.json", "FIFO"]);
    // The SAE path itself a FIFO.
    expect_child(
        "open",
        &fifo,
        ErrorKind::Format,
        &["neither a regular file nor a folder"],
    );
    // A device that reads forever, and a folder where a file is expected.
    for case in ["read_npy", "safetensors", "open_regular"] {
        expect_child(case, Path::new("/dev/zero"), ErrorKind::Format, &["device"]);
        expect_child(case, &root, ErrorKind::Format, &["directory"]);
    }
    let d = copy_case("standard", "dir_weights");
    std::fs::remove_file(st_file(&d)).unwrap();
    std::fs::create_dir(st_file(&d)).unwrap();
    std::fs::write(d.join("sae_weights.safetensors/x"), b"").unwrap();
    expect_child("open", &d, ErrorKind::Format, &["no SAE found"]);
}

/// A SAELens folder whose cfg.json is `cfg` and whose weights are the standard
/// 8 x 16 tensors.
fn saelens_with_cfg(name: &str, cfg: &str) -> PathBuf {
    let d = scratch(name);
    write_saelens(&d, serde_json_lite::Cfg(cfg.into()), &std_tensors());
    d
}

#[test]
fn untrusted_sizes_are_checked_before_allocating() {
    // cfg d_sae of 2^60 for a batchtopk SAE (whose threshold is built from a cfg
    // scalar): used to allocate d_sae floats and abort.
    let d = saelens_with_cfg(
        "huge_dsae",
        r#"{"d_in": 8, "d_sae": 1152921504606846976, "architecture": "batchtopk", "topk_threshold": 0.5, "metadata": {"sae_lens_version": "6.1.0"}}"#,
    );
    expect_child(
        "open",
        &d,
        ErrorKind::Shape,
        &["expected [8, 1152921504606846976]"],
    );
    let d = saelens_with_cfg(
        "huge_din",
        r#"{"d_in": 18446744073709551615, "d_sae": 18446744073709551615, "architecture": "standard", "metadata": {"sae_lens_version": "6.1.0"}}"#,
    );
    expect_child("open", &d, ErrorKind::Shape, &["W_enc"]);
    // A safetensors header length of 2^40 in a 16-byte file, and one just over
    // the reference reader's 100,000,000-byte cap in a sparse file that long.
    let root = scratch("huge_sizes");
    let p = root.join("hdr.safetensors");
    let mut b = (1u64 << 40).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}      ");
    std::fs::write(&p, &b).unwrap();
    expect_child(
        "safetensors",
        &p,
        ErrorKind::Format,
        &["header claims 1099511627776 bytes"],
    );
    let f = std::fs::File::create(&p).unwrap();
    std::io::Write::write_all(&mut &f, &100_000_001u64.to_le_bytes()).unwrap();
    f.set_len(8 + 100_000_001).unwrap();
    expect_child(
        "safetensors",
        &p,
        ErrorKind::Format,
        &["100000000-byte limit"],
    );
    // An npy shape of 2^62 x 4 elements, and one whose product overflows.
    let npy = |shape: &str| {
        let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[0; 16]);
        let p = root.join("big.npy");
        std::fs::write(&p, &b).unwrap();
        p
    };
    expect_child(
        "read_npy",
        &npy("(4611686018427387904,)"),
        ErrorKind::Format,
        &["overflows"],
    );
    expect_child(
        "read_npy",
        &npy("(1000000, 1000000)"),
        ErrorKind::Format,
        &["needs 4000000000000 bytes"],
    );
    // An npz whose zip directory claims a 4 GiB member.
    let script = "import numpy as np, sys\nnp.savez(sys.argv[1], W=np.zeros(4, np.float32))\n";
    let z = root.join("m.npz");
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(&z)
        .status()
        .expect("python3");
    assert!(st.success());
    let mut b = std::fs::read(&z).unwrap();
    let cd = (0..b.len() - 4)
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 1, 2])
        .unwrap();
    b[cd + 20..cd + 28].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff]);
    std::fs::write(&z, &b).unwrap();
    expect_child("open", &z, ErrorKind::Format, &["past the end of the file"]);
}

#[test]
fn replaced_or_truncated_file_is_reported_before_use() {
    // Same size, same mtime second, different inode: replaced under the path.
    let d = copy_case("standard", "replaced");
    let sae = Sae::open(&d).unwrap();
    let b = std::fs::read(st_file(&d)).unwrap();
    let mtime = std::fs::metadata(st_file(&d)).unwrap().modified().unwrap();
    std::fs::write(d.join("new"), &b).unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(d.join("new"))
        .unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    std::fs::rename(d.join("new"), st_file(&d)).unwrap();
    let e = sae.check_unchanged().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileChanged, "{e}");
    assert!(e.to_string().contains("replaced"), "{e}");
    // Truncated in place (the SIGBUS case): reported by the check, in a child so a
    // stray read of the map would crash the child, not the runner.
    let d = copy_case("standard", "truncated_in_place");
    expect_child("truncate_then_check", &d, ErrorKind::FileChanged, &["size"]);
    // Deleted.
    let d = copy_case("standard", "deleted");
    let sae = Sae::open(&d).unwrap();
    std::fs::remove_file(st_file(&d)).unwrap();
    assert_eq!(
        sae.check_unchanged().unwrap_err().kind(),
        ErrorKind::FileChanged
    );
}

#[cfg(unix)]
#[test]
fn atomic_writes_never_follow_planted_symlinks() {
    let root = scratch("symlink");
    let victim = root.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let out = root.join("out.safetensors");
    // The temporary names the old writer used: `<path>.tmp<pid>`.
    let planted = root.join(format!("out.safetensors.tmp{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    saeplug::weights::write_safetensors(&out, &[("x", &[2], &[1.0, 2.0])], &Default::default())
        .unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        saeplug::weights::SafeTensors::open(&out)
            .unwrap()
            .tensor("x")
            .unwrap()
            .as_slice(),
        [1.0, 2.0]
    );
    // A symlink at the output path itself is replaced, not written through.
    let link = root.join("link.npy");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    saeplug::weights::write_npy(&link, &[1], &[3.0]).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        !std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // No temporary file left behind.
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn concurrent_writers_to_one_path_all_succeed() {
    let root = scratch("concurrent");
    let out = root.join("same.safetensors");
    let n = 8;
    let handles: Vec<_> = (0..n)
        .map(|t| {
            let out = out.clone();
            std::thread::spawn(move || {
                (0..10).try_for_each(|_| {
                    let v = vec![t as f32; 1000];
                    saeplug::weights::write_safetensors(
                        &out,
                        &[("v", &[1000], &v)],
                        &Default::default(),
                    )
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    // The survivor is one writer's whole file.
    let st = saeplug::weights::SafeTensors::open(&out).unwrap();
    let v = st.tensor("v").unwrap();
    assert!(v.as_slice().iter().all(|x| *x == v.as_slice()[0]));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
}

#[test]
fn cfg_fields_of_the_wrong_type_are_refused_by_name() {
    let m = r#""metadata": {"sae_lens_version": "6.1.0"}"#;
    for (name, cfg, field) in [
        ("bool_as_string", format!(r#"{{"d_in": 8, "d_sae": 16, "apply_b_dec_to_input": "false", {m}}}"#), "'apply_b_dec_to_input' must be true or false"),
        ("din_as_string", format!(r#"{{"d_in": "8", "d_sae": 16, {m}}}"#), "'d_in' must be a non-negative integer"),
        ("din_float", format!(r#"{{"d_in": 8.5, "d_sae": 16, {m}}}"#), "'d_in' must be a non-negative integer"),
        ("k_as_string", format!(r#"{{"d_in": 8, "d_sae": 16, "architecture": "topk", "k": "4", {m}}}"#), "'k' must be a non-negative integer"),
        ("arch_as_number", format!(r#"{{"d_in": 8, "d_sae": 16, "architecture": 3, {m}}}"#), "'architecture' must be a string"),
        ("rescale_as_int", format!(r#"{{"d_in": 8, "d_sae": 16, "architecture": "topk", "k": 4, "rescale_acts_by_decoder_norm": 1, {m}}}"#), "'rescale_acts_by_decoder_norm' must be true or false"),
        ("hook_as_number", r#"{"d_in": 8, "d_sae": 16, "metadata": {"sae_lens_version": "6.1.0", "hook_name": 5}}"#.to_string(), "'metadata.hook_name' must be a string"),
        ("metadata_as_list", r#"{"d_in": 8, "d_sae": 16, "metadata": []}"#.to_string(), "'metadata' must be an object"),
        ("norm_as_number", format!(r#"{{"d_in": 8, "d_sae": 16, "normalize_activations": 2, {m}}}"#), "'normalize_activations' must be a string or a boolean"),
        ("duplicate_key", format!(r#"{{"d_in": 8, "d_sae": 16, "d_in": 9, {m}}}"#), "duplicate key \"d_in\""),
    ] {
        let d = saelens_with_cfg(name, &cfg);
        expect_child("open", &d, ErrorKind::Format, &[field, "cfg.json"]);
    }
    // null is "not set", as SAELens writes it.
    let d = saelens_with_cfg(
        "nulls",
        r#"{"d_in": 8, "d_sae": 16, "apply_b_dec_to_input": null, "normalize_activations": null, "metadata": {"sae_lens_version": "6.1.0", "hook_name": null}}"#,
    );
    assert_eq!(in_child("open", &d, 20), "OK");
}

#[test]
fn npy_headers_are_python_dict_literals() {
    let root = scratch("npy_headers");
    let write = |name: &str, header: &str| {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let p = root.join(format!("{name}.npy"));
        std::fs::write(&p, &b).unwrap();
        p
    };
    let good = [
        (
            "numpy",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        ),
        (
            "double_quotes",
            r#"{"descr": "<f4", "fortran_order": False, "shape": (2, 3)}"#,
        ),
        (
            "key_order",
            "{'shape': (2,3), 'fortran_order': False, 'descr': '<f4'}",
        ),
        (
            "spaces",
            "{ 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }",
        ),
    ];
    let bad = [
        (
            "extra_key",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}",
            "unexpected key",
        ),
        (
            "list_shape",
            "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}",
            "not a tuple",
        ),
        (
            "int_fortran",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}",
            "not True or False",
        ),
        (
            "no_shape",
            "{'descr': '<f4', 'fortran_order': False}",
            "no 'shape'",
        ),
        (
            "quote_in_key",
            "{'descr': '<f4', 'fortran_order': False, 'sha'pe': (2, 3)}",
            "bad .npy header",
        ),
        (
            "junk_after",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} 7",
            "text after",
        ),
        (
            "negative",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, -3)}",
            "bad dimension",
        ),
    ];
    // numpy itself is the reference: it loads every good header and refuses every bad one.
    let paths: Vec<PathBuf> = good
        .iter()
        .map(|(n, h)| write(n, h))
        .chain(bad.iter().map(|(n, h, _)| write(n, h)))
        .collect();
    let script = "import numpy as np, sys\nfor p in sys.argv[1:]:\n    try:\n        a = np.load(p); print('OK', a.shape)\n    except Exception as e:\n        print('ERR')\n";
    let o = Command::new("python3")
        .args(["-c", script])
        .args(&paths)
        .output()
        .expect("python3 with numpy");
    let verdicts: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(verdicts.len(), paths.len(), "{verdicts:?}");
    for (i, (n, _)) in good.iter().enumerate() {
        assert_eq!(verdicts[i], "OK (2, 3)", "numpy on {n}");
        let t = saeplug::weights::read_npy(&paths[i]).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!((t.shape(), t.as_slice()[5]), (&[2, 3][..], 6.0), "{n}");
    }
    for (i, (n, _, needle)) in bad.iter().enumerate() {
        let p = &paths[good.len() + i];
        assert_eq!(verdicts[good.len() + i], "ERR", "numpy accepted {n}");
        expect_child("read_npy", p, ErrorKind::Format, &[needle, "array"]);
    }
}

#[test]
fn non_finite_weights_are_named() {
    let root = scratch("nonfinite");
    for (name, tensor, index, value) in [
        ("nan_wdec", "W_dec", 21usize, f32::NAN),
        ("inf_benc", "b_enc", 3, f32::INFINITY),
    ] {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cfg.json"), cfg("standard", "").0).unwrap();
        let data: Vec<(String, Vec<usize>, Vec<f32>)> = std_tensors()
            .iter()
            .map(|(n, s)| {
                let mut v = vec![0.1; s.iter().product()];
                if *n == tensor {
                    v[index] = value;
                }
                (n.to_string(), s.clone(), v)
            })
            .collect();
        let refs: Vec<(&str, &[usize], &[f32])> = data
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        saeplug::weights::write_safetensors(&st_file(&d), &refs, &Default::default()).unwrap();
        // Opening stays lazy (no weight page read); the first compute call names it.
        assert_eq!(in_child("open", &d, 20), "OK");
        expect_child(
            "encode",
            &d,
            ErrorKind::Format,
            &[
                &format!("tensor '{tensor}'"),
                &format!("index {index}"),
                "non-finite",
            ],
        );
    }
}

#[test]
fn safetensors_refused_where_the_reference_reader_refuses() {
    let root = scratch("st_reference");
    let file = |name: &str, header: &[u8], data_len: usize| {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend(std::iter::repeat_n(0u8, data_len));
        let p = root.join(format!("{name}.safetensors"));
        std::fs::write(&p, &b).unwrap();
        p
    };
    let t = |name: &str, dtype: &str, shape: &str, b: usize, e: usize| {
        format!(r#""{name}": {{"dtype": "{dtype}", "shape": {shape}, "data_offsets": [{b}, {e}]}}"#)
    };
    let two = |a: String, b: String| format!("{{{a}, {b}}}").into_bytes();
    let one = |a: String| format!("{{{a}}}").into_bytes();
    let cases: Vec<(&str, Vec<u8>, usize, Option<&str>)> = vec![
        (
            "valid",
            two(t("a", "F32", "[2]", 0, 8), t("b", "I64", "[1]", 8, 16)),
            16,
            None,
        ),
        (
            "valid_out_of_order",
            two(t("b", "F32", "[1]", 4, 8), t("a", "F32", "[1]", 0, 4)),
            8,
            None,
        ),
        (
            "valid_empty_tensor",
            two(t("a", "F32", "[0]", 0, 0), t("b", "F32", "[2]", 0, 8)),
            8,
            None,
        ),
        (
            "overlap",
            two(t("a", "F32", "[2]", 0, 8), t("b", "F32", "[1]", 4, 8)),
            8,
            Some("overlaps"),
        ),
        (
            "same_range",
            two(t("a", "F32", "[2]", 0, 8), t("b", "F32", "[2]", 0, 8)),
            8,
            Some("overlaps"),
        ),
        (
            "duplicate_name",
            two(t("a", "F32", "[1]", 0, 4), t("a", "F32", "[1]", 4, 8)),
            8,
            Some("duplicate key"),
        ),
        (
            "duplicate_field",
            br#"{"a": {"dtype": "F32", "dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#
                .to_vec(),
            8,
            Some("duplicate key"),
        ),
        (
            "hole",
            one(t("a", "F32", "[1]", 4, 8)),
            8,
            Some("belong to no tensor"),
        ),
        (
            "trailing_bytes",
            one(t("a", "F32", "[2]", 0, 8)),
            12,
            Some("belong to no tensor"),
        ),
        (
            "beyond_file",
            one(t("a", "F32", "[4]", 0, 16)),
            8,
            Some("truncated"),
        ),
        (
            "bytes_mismatch",
            one(t("a", "F32", "[3]", 0, 8)),
            8,
            Some("needs 12 bytes"),
        ),
        (
            "unknown_dtype",
            one(t("a", "Q4", "[2]", 0, 8)),
            8,
            Some("not a safetensors dtype"),
        ),
        (
            "not_utf8",
            b"{\"a\xff\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}".to_vec(),
            8,
            Some("not valid JSON"),
        ),
        (
            "metadata_not_string",
            format!(
                r#"{{"__metadata__": {{"x": 1}}, {}}}"#,
                t("a", "F32", "[2]", 0, 8)
            )
            .into_bytes(),
            8,
            Some("not a string"),
        ),
        (
            "float_shape",
            br#"{"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}"#.to_vec(),
            8,
            Some("non-negative integers"),
        ),
        (
            "trailing_nul",
            [one(t("a", "F32", "[2]", 0, 8)), vec![0]].concat(),
            8,
            Some("not valid JSON"),
        ),
    ];
    let paths: Vec<PathBuf> = cases.iter().map(|(n, h, d, _)| file(n, h, *d)).collect();
    // The Python safetensors package is the reference.
    let script = "from safetensors.numpy import load_file\nimport sys\nfor p in sys.argv[1:]:\n    try:\n        load_file(p); print('OK')\n    except Exception as e:\n        print('ERR')\n";
    let o = Command::new("python3")
        .args(["-c", script])
        .args(&paths)
        .output()
        .expect("python3 with safetensors");
    let verdicts: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        verdicts.len(),
        cases.len(),
        "{verdicts:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for ((name, _, _, needle), (p, py)) in cases.iter().zip(paths.iter().zip(&verdicts)) {
        match needle {
            None => {
                assert_eq!(py, "OK", "reference refused {name}");
                assert_eq!(in_child("safetensors", p, 20), "OK", "{name}");
            }
            Some(n) => {
                assert_eq!(py, "ERR", "reference accepted {name}");
                expect_child("safetensors", p, ErrorKind::Format, &[n]);
            }
        }
    }
}

/// The `saeplug` CLI binary (built here, as tests/cli.rs does).
fn saeplug_cli() -> PathBuf {
    let exe = common::repo_root().join(if cfg!(debug_assertions) {
        "target/debug/saeplug"
    } else {
        "target/release/saeplug"
    });
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(common::repo_root())
        .args(["build", "-q", "-p", "saeplug-cli"]);
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    assert!(c.status().unwrap().success(), "building the CLI failed");
    exe
}

/// `saeplug inspect PATH` with a timeout: (exit success, stdout + stderr).
fn cli_inspect(exe: &Path, path: &Path) -> (bool, String) {
    let mut child = Command::new(exe)
        .arg("inspect")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run saeplug");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "saeplug inspect {} hung (killed after 20 s)",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().expect("output");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // An error exit is fine; death by a signal (abort, SIGBUS) is not.
    assert!(
        status.code().is_some(),
        "saeplug inspect {} crashed ({status}): {out}",
        path.display()
    );
    (status.success(), out)
}

#[test]
fn cli_inspect_refuses_malformed_sae_files_cleanly() {
    let exe = saeplug_cli();
    let ok = copy_case("standard", "cli_ok");
    let (success, out) = cli_inspect(&exe, &ok);
    assert!(success, "{out}");
    // cfg.json a FIFO (used to block forever).
    let fifo = copy_case("standard", "cli_fifo");
    std::fs::remove_file(fifo.join("cfg.json")).unwrap();
    mkfifo(&fifo.join("cfg.json"));
    // batchtopk with d_sae = 2^60 (used to abort allocating the threshold).
    let huge = saelens_with_cfg(
        "cli_huge",
        r#"{"d_in": 8, "d_sae": 1152921504606846976, "architecture": "batchtopk", "topk_threshold": 0.5, "metadata": {"sae_lens_version": "6.1.0"}}"#,
    );
    // A field of the wrong JSON type (used to become the default silently).
    let typed = saelens_with_cfg(
        "cli_typed",
        r#"{"d_in": 8, "d_sae": 16, "apply_b_dec_to_input": "no", "metadata": {"sae_lens_version": "6.1.0"}}"#,
    );
    // Two tensors sharing bytes (the reference reader refuses it).
    let overlap = copy_case("standard", "cli_overlap");
    let b = std::fs::read(st_file(&overlap)).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&h).unwrap();
    // W_enc pointed at W_dec's bytes (same size): two tensors share one range.
    v["W_enc"]["data_offsets"] = v["W_dec"]["data_offsets"].clone();
    let mut h2 = serde_json::to_string(&v).unwrap();
    assert!(h2.len() <= n, "fixture header layout changed");
    while h2.len() < n {
        h2.push(' ');
    }
    let mut b2 = b.clone();
    b2[8..8 + n].copy_from_slice(h2.as_bytes());
    std::fs::write(st_file(&overlap), &b2).unwrap();
    for (d, needle) in [
        (&fifo, "FIFO"),
        (&huge, "1152921504606846976"),
        (&typed, "'apply_b_dec_to_input' must be true or false"),
        (&overlap, "overlaps"),
    ] {
        let (success, out) = cli_inspect(&exe, d);
        assert!(!success, "{}: {out}", d.display());
        assert!(
            out.contains(needle),
            "{}: '{out}' lacks '{needle}'",
            d.display()
        );
    }
}
