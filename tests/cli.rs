//! The `saeplug` binary: demo runs, inspect describes, encode writes what SAELens computes.

mod common;

use std::process::Command;

use common::*;
use saeplug::weights::{SafeTensors, read_npy};

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

/// Run `c` with a deadline; a process still running then is killed and fails the test.
fn run_within(c: &mut Command, secs: u64) -> std::process::Output {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(secs) {
            child.kill().ok();
            let o = child.wait_with_output().unwrap();
            panic!(
                "{c:?} still running after {secs} s (killed): {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `c` must fail with a usage error (exit status 2, nothing run) mentioning `want`.
fn usage_error(c: &mut Command, want: &str) {
    let o = run_within(c, 60);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{c:?}: {err}");
    assert!(o.stdout.is_empty(), "{c:?} printed {:?}", o.stdout);
    assert!(err.contains(want), "{c:?}: expected '{want}' in: {err}");
}

#[test]
fn a_misspelled_option_is_an_error() {
    let dir = saelens_fixtures().join("gated");
    let io = fixture_io(&dir);
    let out = scratch("cli-misspelled");
    let x = out.join("x.npy");
    saeplug::weights::write_npy(&x, &[io.n, 64], &io.x).unwrap();
    let f = out.join("f.npy");
    usage_error(
        saeplug()
            .arg("encode")
            .arg(&dir)
            .arg("--input")
            .arg(&x)
            .arg("--output")
            .arg(&f)
            .args(["--solvr", "gp"]),
        "unexpected argument '--solvr'",
    );
    assert!(!f.exists(), "the encoder ran despite the misspelled option");
    // The same for an input that does not exist: the unknown option is reported first.
    usage_error(
        saeplug().args([
            "encode", "SAE", "--input", "x.npy", "--output", "f.npy", "--solvr", "gp",
        ]),
        "unexpected argument '--solvr'",
    );
    usage_error(saeplug().arg("encdoe"), "unrecognized subcommand 'encdoe'");
    usage_error(
        saeplug().args(["sweep", "--k", "4", "--k8"]),
        "unexpected argument '--k8'",
    );
}

#[test]
fn every_subcommand_has_its_own_help() {
    let top = ok(saeplug().arg("--help"));
    for sub in [
        "demo",
        "inspect",
        "encode",
        "steer",
        "export-cvec",
        "decompose",
        "sweep",
        "train",
        "bench",
    ] {
        assert!(
            top.contains(sub),
            "saeplug --help does not list {sub}: {top}"
        );
    }
    for (args, options) in [
        (&["demo"][..], &[][..]),
        (&["inspect"], &["<PATH>"]),
        (
            &["encode"],
            &[
                "--input",
                "--output",
                "--solver",
                "--k",
                "--tol",
                "--backend",
                "--threads",
            ],
        ),
        (
            &["steer"],
            &[
                "--clamp",
                "--ablate",
                "--positions",
                "--replace",
                "--backend",
            ],
        ),
        (
            &["export-cvec"],
            &["--sae", "--layer", "--feature", "--coef"],
        ),
        (&["decompose"], &["--vector", "--solver", "--threads"]),
        (&["sweep"], &["--input", "--k", "--backend"]),
        (
            &["train"],
            &[
                "--input",
                "--arch",
                "--d-sae",
                "--tokens",
                "--resume",
                "--checkpoint-every",
                "--matryoshka",
            ],
        ),
        (&["bench"], &["encode", "gpu", "ito", "open"]),
        (&["bench", "encode"], &["--d-in", "--batch", "--no-peer"]),
        (&["bench", "gpu"], &["--peak-tflops"]),
        (&["bench", "ito"], &["--k", "--gpu"]),
        (&["bench", "open"], &["--mb"]),
    ] {
        let help = ok(saeplug().args(args).arg("--help"));
        let usage = format!("Usage: saeplug {}", args.join(" "));
        assert!(help.contains(&usage), "{args:?} --help: {help}");
        for o in options {
            assert!(help.contains(o), "{args:?} --help lacks {o}: {help}");
        }
    }
    // `help SUB` says the same as `SUB --help`.
    assert_eq!(
        ok(saeplug().args(["help", "encode"])),
        ok(saeplug().args(["encode", "--help"]))
    );
}

#[test]
fn invalid_values_are_refused_before_any_work() {
    let dir = saelens_fixtures().join("standard");
    let sae = dir.to_str().unwrap().to_string();
    let io = fixture_io(&dir);
    let out = scratch("cli-invalid");
    let x = out.join("x.npy");
    saeplug::weights::write_npy(&x, &[io.n, 64], &io.x).unwrap();
    let x = x.to_str().unwrap().to_string();
    let f = out.join("f.npy");
    let fs = f.to_str().unwrap().to_string();
    let missing = out.join("missing.npy").to_str().unwrap().to_string();
    let no_dir = out.join("no/such/f.npy").to_str().unwrap().to_string();
    let encode = |extra: &[&str]| -> Vec<String> {
        ["encode", &sae, "--input", &x, "--output", &fs]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            encode(&["--solver", "gp", "--k", "0"]),
            "must be at least 1",
        ),
        (encode(&["--solver", "gp", "--k=-3"]), "not a whole number"),
        (
            encode(&["--solver", "gp", "--k", "1e3"]),
            "not a whole number",
        ),
        (
            encode(&["--solver", "lasso"]),
            "possible values: mp, omp, gp",
        ),
        (encode(&["--solver", "gp", "--tol", "nan"]), "not finite"),
        (encode(&["--solver", "gp", "--tol=-1"]), "negative"),
        (encode(&["--k", "8"]), "--solver"), // --k means nothing without a solver
        (encode(&["--threads", "100000"]), "at most"),
        (encode(&["--threads", "two"]), "not a whole number"),
        (
            encode(&["--backend", "tpu"]),
            "possible values: cpu, gpu, auto",
        ),
        (encode(&["--chunk", "0"]), "must be at least 1"),
        (
            vec![
                "encode".into(),
                sae.clone(),
                "--input".into(),
                missing,
                "--output".into(),
                fs.clone(),
            ],
            "missing.npy",
        ),
        (
            vec![
                "encode".into(),
                sae.clone(),
                "--input".into(),
                x.clone(),
                "--output".into(),
                no_dir,
            ],
            "output folder",
        ),
        (
            vec![
                "encode".into(),
                out.join("no-sae").to_str().unwrap().into(),
                "--input".into(),
                x.clone(),
                "--output".into(),
                fs.clone(),
            ],
            "no-sae",
        ),
        (
            [
                "steer", &sae, "--input", &x, "--output", &fs, "--clamp", "3",
            ]
            .map(String::from)
            .to_vec(),
            "not F:V",
        ),
        (
            [
                "steer", &sae, "--input", &x, "--output", &fs, "--scale", "x:2",
            ]
            .map(String::from)
            .to_vec(),
            "feature index",
        ),
        (
            [
                "steer", &sae, "--input", &x, "--output", &fs, "--add", "3:inf",
            ]
            .map(String::from)
            .to_vec(),
            "not finite",
        ),
        (
            ["steer", &sae, "--input", &x, "--output", &fs, "--ablate=-1"]
                .map(String::from)
                .to_vec(),
            "--ablate",
        ),
        (
            [
                "steer",
                &sae,
                "--input",
                &x,
                "--output",
                &fs,
                "--positions",
                "first:0",
            ]
            .map(String::from)
            .to_vec(),
            "must be at least 1",
        ),
        (
            [
                "steer",
                &sae,
                "--input",
                &x,
                "--output",
                &fs,
                "--replace",
                "all",
            ]
            .map(String::from)
            .to_vec(),
            "possible values: with-error, recon",
        ),
        (
            ["export-cvec", "--sae", &sae, "--layer=-1", "--out", &fs]
                .map(String::from)
                .to_vec(),
            "--layer",
        ),
        (
            [
                "export-cvec",
                "--sae",
                &sae,
                "--layer",
                "2",
                "--out",
                &fs,
                "--feature",
                "123:4.0x",
            ]
            .map(String::from)
            .to_vec(),
            "not a number",
        ),
        (
            [
                "export-cvec",
                "--sae",
                &sae,
                "--layer",
                "2",
                "--out",
                &fs,
                "--coef",
                "2",
            ]
            .map(String::from)
            .to_vec(),
            "--vector",
        ),
        (
            ["decompose", "--sae", &sae, "--vector", &x, "--k", "0"]
                .map(String::from)
                .to_vec(),
            "must be at least 1",
        ),
        (
            ["sweep", "--k", "4,x"].map(String::from).to_vec(),
            "not a whole number",
        ),
        (
            ["sweep", "--k", "0"].map(String::from).to_vec(),
            "must be at least 1",
        ),
        (["sweep", &sae].map(String::from).to_vec(), "--input"),
        (
            ["bench", "encode", "--batch", "0"]
                .map(String::from)
                .to_vec(),
            "must be at least 1",
        ),
        (
            ["bench", "gpu", "--peak-tflops", "inf"]
                .map(String::from)
                .to_vec(),
            "finite",
        ),
        (
            ["bench", "ito", "--d-in", "1.5"].map(String::from).to_vec(),
            "not a whole number",
        ),
        (
            ["bench", "fast"].map(String::from).to_vec(),
            "unrecognized subcommand",
        ),
    ];
    for (args, want) in &cases {
        usage_error(saeplug().args(args), want);
        assert!(!f.exists(), "{args:?} wrote its output");
    }
    // Checked against the SAE once it is open, still before the input is read.
    let o = run_within(
        saeplug().args(encode(&["--solver", "gp", "--k", "100000"])),
        60,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("d_sae"));
    assert!(!f.exists());
}

#[test]
fn non_regular_input_files_are_refused_without_hanging() {
    let dir = saelens_fixtures().join("standard");
    let sae = dir.to_str().unwrap().to_string();
    let out = scratch("cli-fifo");
    let fifo = out.join("x.npy");
    std::fs::remove_file(&fifo).ok();
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo failed");
    let fifo = fifo.to_str().unwrap().to_string();
    let folder = out.join("folder.npy");
    std::fs::create_dir_all(&folder).unwrap();
    let folder = folder.to_str().unwrap().to_string();
    let y = out.join("y.npy").to_str().unwrap().to_string();
    for (input, kind) in [
        (fifo.as_str(), "FIFO"),
        ("/dev/zero", "character device"),
        (folder.as_str(), "directory"),
    ] {
        for args in [
            vec!["encode", &sae, "--input", input, "--output", &y],
            vec![
                "steer", &sae, "--input", input, "--output", &y, "--ablate", "1",
            ],
            vec!["decompose", "--sae", &sae, "--vector", input],
            vec![
                "export-cvec",
                "--sae",
                &sae,
                "--layer",
                "1",
                "--out",
                &y,
                "--vector",
                input,
            ],
            vec!["sweep", &sae, "--input", input],
        ] {
            // Nothing ever opens the FIFO's other end: reading it would block forever.
            let o = run_within(saeplug().args(&args), 30);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{args:?} succeeded");
            assert!(
                err.contains(kind) && err.contains("not a regular file"),
                "{args:?}: {err}"
            );
        }
    }
    // An SAE "file" that is a FIFO or a device is refused too.
    for path in [fifo.as_str(), "/dev/zero"] {
        let o = run_within(saeplug().args(["inspect", path]), 30);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("not an SAE folder or file"));
    }
}

#[test]
fn chunked_encode_matches_saelens_and_progress_is_opt_in() {
    let dir = saelens_fixtures().join("jumprelu");
    let io = fixture_io(&dir);
    let out = scratch("cli-chunks");
    let x = out.join("x.npy");
    saeplug::weights::write_npy(&x, &[io.n, 64], &io.x).unwrap();
    let f = out.join("f.npy");
    let run = |extra: &[&str]| {
        let o = run_within(
            saeplug()
                .arg("encode")
                .arg(&dir)
                .arg("--input")
                .arg(&x)
                .arg("--output")
                .arg(&f)
                .args(["--chunk", "3", "--threads", "1", "--backend", "cpu"])
                .args(extra),
            120,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Chunks of 3 rows (the last one shorter) give what SAELens computed.
        let got = read_npy(&f).unwrap();
        assert_eq!(got.shape(), &[io.n, 256]);
        assert!(max_abs_diff(got.as_slice(), &io.feature_acts) <= 1e-4);
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(
        io.n > 3 && !io.n.is_multiple_of(3),
        "the fixture should give a short last chunk"
    );
    assert_eq!(
        run(&[]),
        "",
        "progress drawn on a non-terminal without --progress"
    );
    let shown = run(&["--progress"]);
    assert!(
        shown.contains(&format!("{}/{} rows", io.n, io.n)),
        "{shown}"
    );
}

#[test]
fn bench_commands_run_at_small_sizes() {
    let out = ok(saeplug().args([
        "bench",
        "encode",
        "--d-in",
        "32",
        "--d-sae",
        "64",
        "--batch",
        "2",
        "--iters",
        "1",
        "--no-peer",
        "--threads",
        "1",
        "--no-roofline",
    ]));
    assert!(
        out.contains("saeplug cpu (1 threads, ") && out.contains("encode d_in 32, d_sae 64"),
        "{out}"
    );
    // Forced ISA and bf16 weights, with the limits measured in the same run.
    let out = ok(saeplug().args([
        "bench",
        "encode",
        "--d-in",
        "32",
        "--d-sae",
        "64",
        "--batch",
        "2",
        "--iters",
        "1",
        "--no-peer",
        "--threads",
        "1",
        "--isa",
        "portable",
        "--weights",
        "bf16",
    ]));
    assert!(out.contains("portable, PackedBf16"), "{out}");
    assert!(
        out.contains("roofline: FMA peak") && out.contains("% of the FMA peak"),
        "{out}"
    );
    let o = saeplug()
        .args(["bench", "encode", "--isa", "sse9", "--no-peer"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sse9"));
    // The kernel table against the rooflines, at a toy size.
    let out = ok(saeplug().args([
        "bench",
        "cpu",
        "--d-in",
        "32",
        "--d-sae",
        "64",
        "--batch",
        "4",
        "--iters",
        "1",
        "--no-peer",
        "--threads",
        "1",
    ]));
    for want in [
        "encode PackedF32 batch 4",
        "encode PackedBf16 batch 1",
        "dense decode",
        "sparse decode",
        "ITO correlation",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let out = ok(saeplug().args([
        "bench",
        "ito",
        "--d-in",
        "32",
        "--d-sae",
        "64",
        "--k",
        "4",
        "--batch",
        "2",
        "--no-peer",
        "--threads",
        "1",
    ]));
    assert_eq!(out.matches("(cpu, 1 threads)").count(), 3, "{out}");
    let out = ok(saeplug().args(["bench", "open", "--mb", "1"]));
    assert!(out.contains("best of 10"), "{out}");
    // --k above --d-sae is refused before the SAE is written.
    let o = saeplug()
        .args(["bench", "ito", "--d-in", "8", "--d-sae", "16", "--k", "17"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--k 17 > --d-sae 16"));
}
