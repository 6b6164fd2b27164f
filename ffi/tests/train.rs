//! Training and evaluation through the C ABI: the same bits as the Rust
//! `Trainer` driven directly, resume, cancellation, and every bad input a
//! status with a message (the crash-prone ones in a child process).

use std::ffi::{CStr, CString, c_void};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use saeplug::store::{Split, StoreSpec, StoreWriter};
use saeplug::train::{
    ActivationSource, Arch, StoreSource, TrainConfig, Trainer, cycle_rows, toy::ToyModel,
};
use saeplug_ffi::*;

fn last_error() -> String {
    let mut buf = vec![0 as std::ffi::c_char; 1024];
    // SAFETY: buf has 1024 writable bytes.
    unsafe { saeplug_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by the call.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("saeplug-ffi-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cstr(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

const D_IN: usize = 16;

/// A store of toy activations (a known dictionary in superposition): `n` train
/// rows and 100 held-out rows.
fn toy_store(dir: &Path, n: usize) -> Vec<f32> {
    let toy = ToyModel::new(D_IN, 48, 3.0, 0.0, 11);
    let x = toy.sample(n + 100, 5);
    let mut w = StoreWriter::create(dir, StoreSpec::new(D_IN, "l_out-0")).unwrap();
    for (split, rows) in [
        (Split::Train, &x[..n * D_IN]),
        (Split::Heldout, &x[n * D_IN..]),
    ] {
        let m = rows.len() / D_IN;
        let ids: Vec<i32> = (0..m as i32).collect();
        let seq: Vec<u32> = (0..m as u32).map(|i| i / 8).collect();
        let pos: Vec<u32> = (0..m as u32).map(|i| i % 8 + 1).collect();
        w.append(split, rows, &ids, &seq, &pos).unwrap();
    }
    w.finish().unwrap();
    x
}

fn c_cfg(arch: saeplug_train_arch, d_in: usize) -> saeplug_train_config {
    // SAFETY: MaybeUninit filled by the init call before use.
    let mut c = std::mem::MaybeUninit::<saeplug_train_config>::uninit();
    // SAFETY: `c` is writable.
    let st = unsafe { saeplug_train_config_init(c.as_mut_ptr(), arch as u32, d_in, 64) };
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
    // SAFETY: initialised by the successful call.
    let mut c = unsafe { c.assume_init() };
    c.k = 4;
    c.batch_size = 64;
    c.lr = 1e-3;
    c.seed = 7;
    c.threads = 2;
    c
}

fn rust_cfg(arch: Arch, d_in: usize, steps: u64) -> TrainConfig {
    let mut c = TrainConfig::new(arch, d_in, 64);
    c.k = 4;
    c.batch_size = 64;
    c.lr = 1e-3;
    c.seed = 7;
    c.total_steps = steps;
    c
}

fn weights(dir: &Path) -> Vec<Vec<u32>> {
    let sae = saeplug::Sae::open(dir).unwrap();
    let w = sae.weights();
    [&w.w_enc, &w.b_enc, &w.w_dec, &w.b_dec]
        .iter()
        .map(|t| t.as_slice().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// `saeplug_train_store` gives the bits of the Rust trainer run by hand the way
/// `saeplug train --input STORE` runs it (shuffled by the seed, scale from the
/// first 64 batches, cycling), with the same seed and thread count.
#[test]
fn train_store_matches_the_rust_trainer_bit_for_bit() {
    let dir = scratch("bits");
    let store = dir.join("store");
    toy_store(&store, 600);
    let out = dir.join("abi");
    let mut cfg = c_cfg(saeplug_train_arch::Topk, 0);
    let mut last = saeplug_train_stats::default();
    // SAFETY: valid strings, config and output.
    let st = unsafe {
        saeplug_train_store(
            cstr(&store).as_ptr(),
            &cfg,
            9000,
            cstr(&out).as_ptr(),
            0,
            None,
            null_mut(),
            &mut last,
        )
    };
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
    assert_eq!(last.step, 141); // ceil(9000 / 64)

    let src = StoreSource::open(&store, Split::Train, Some(7)).unwrap();
    let mut t = Trainer::new(rust_cfg(Arch::TopK, D_IN, 141)).unwrap();
    let mut first = vec![0.0f32; src.n_rows().min(64 * 64) * D_IN];
    src.rows(0, &mut first).unwrap();
    t.set_scale_from(&first);
    let cpu = saeplug::CpuBackend::new(2);
    let mut batch = vec![0.0f32; 64 * D_IN];
    let mut s = None;
    for step in 0..141u64 {
        cycle_rows(&src, step * 64, &mut batch).unwrap();
        s = Some(t.step(&cpu, &batch).unwrap());
    }
    let s = s.unwrap();
    assert_eq!(
        (last.loss.to_bits(), last.fvu.to_bits(), last.l0.to_bits()),
        (s.loss.to_bits(), s.fvu.to_bits(), s.l0.to_bits())
    );
    let reference = dir.join("rust");
    t.save_saelens(&reference).unwrap();
    assert_eq!(weights(&out), weights(&reference));
    // The model learned something (the comparison is not of two untrained SAEs).
    assert!(s.fvu < 0.9, "FVU {}", s.fvu);

    // Another thread count still trains (not necessarily the same bits).
    cfg.threads = 1;
    // SAFETY: as above.
    let st = unsafe {
        saeplug_train_store(
            cstr(&store).as_ptr(),
            &cfg,
            128,
            cstr(&dir.join("t1")).as_ptr(),
            0,
            None,
            null_mut(),
            null_mut(),
        )
    };
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The trainer handle stepped batch by batch, checkpointed half way and resumed,
/// gives the Rust trainer's stats and weights bit for bit.
#[test]
fn trainer_handle_steps_checkpoints_and_resumes_bit_identically() {
    let dir = scratch("handle");
    let toy = ToyModel::new(D_IN, 48, 3.0, 0.0, 3);
    let x = toy.sample(64 * 10, 9);
    for arch in [
        (saeplug_train_arch::Standard, Arch::Standard),
        (saeplug_train_arch::Topk, Arch::TopK),
        (saeplug_train_arch::Batchtopk, Arch::BatchTopK),
        (saeplug_train_arch::Jumprelu, Arch::JumpRelu),
    ] {
        let mut cfg = c_cfg(arch.0, D_IN);
        cfg.total_steps = 10;
        let mut h = null_mut();
        // SAFETY: valid config and out pointer.
        let st = unsafe { saeplug_trainer_new(&cfg, &mut h) };
        assert_eq!(st, saeplug_status::Ok, "{}", last_error());
        let mut t = Trainer::new(rust_cfg(arch.1, D_IN, 10)).unwrap();
        let cpu = saeplug::CpuBackend::new(2);
        // SAFETY: live handle; x holds 640 rows.
        let st = unsafe { saeplug_trainer_set_scale(h, x.as_ptr(), x.len(), 640) };
        assert_eq!(st, saeplug_status::Ok);
        t.set_scale_from(&x);
        let ckpt = dir.join(format!("{}.safetensors", arch.1.name()));
        for (i, b) in x.chunks_exact(64 * D_IN).enumerate() {
            if i == 5 {
                // SAFETY: live handle, valid path; then a fresh handle from the checkpoint.
                unsafe {
                    assert_eq!(
                        saeplug_trainer_save_checkpoint(h, cstr(&ckpt).as_ptr()),
                        saeplug_status::Ok
                    );
                    saeplug_trainer_free(h);
                    h = null_mut();
                    assert_eq!(
                        saeplug_trainer_load_checkpoint(cstr(&ckpt).as_ptr(), 2, &mut h),
                        saeplug_status::Ok,
                        "{}",
                        last_error()
                    );
                }
            }
            let mut s = saeplug_train_stats::default();
            // SAFETY: live handle; b holds 64 rows.
            let st = unsafe { saeplug_trainer_step(h, b.as_ptr(), b.len(), 64, &mut s) };
            assert_eq!(st, saeplug_status::Ok, "{}", last_error());
            let r = t.step(&cpu, b).unwrap();
            assert_eq!(s.step, i as u64 + 1);
            assert_eq!(
                (
                    s.loss.to_bits(),
                    s.mse.to_bits(),
                    s.l0.to_bits(),
                    s.dead_fraction.to_bits()
                ),
                (
                    r.loss.to_bits(),
                    r.mse.to_bits(),
                    r.l0.to_bits(),
                    r.dead_frac.to_bits()
                ),
                "{} step {i}",
                arch.1.name()
            );
        }
        let (a, b) = (
            dir.join(format!("{}-abi", arch.1.name())),
            dir.join(format!("{}-rust", arch.1.name())),
        );
        // SAFETY: live handle, valid path.
        let st = unsafe { saeplug_trainer_save(h, cstr(&a).as_ptr()) };
        assert_eq!(st, saeplug_status::Ok);
        t.save_saelens(&b).unwrap();
        assert_eq!(weights(&a), weights(&b), "{}", arch.1.name());
        let mut info = std::mem::MaybeUninit::<saeplug_trainer_info>::uninit();
        // SAFETY: live handle, writable info.
        let st = unsafe { saeplug_trainer_get_info(h, info.as_mut_ptr()) };
        assert_eq!(st, saeplug_status::Ok);
        // SAFETY: filled by the successful call.
        let info = unsafe { info.assume_init() };
        assert_eq!(
            (info.steps_done, info.scale.to_bits()),
            (10, t.scale().to_bits())
        );
        // SAFETY: from saeplug_trainer_*, freed once.
        unsafe { saeplug_trainer_free(h) };
    }
    let _ = std::fs::remove_dir_all(&dir);
}

unsafe extern "C" fn stop_at_5(p: *const saeplug_train_progress, user: *mut c_void) -> i32 {
    // SAFETY: the library passes a live progress; `user` is the test's Vec<u64>.
    let (p, seen) = unsafe { (&*p, &mut *user.cast::<Vec<u64>>()) };
    seen.push(p.step);
    i32::from(p.step >= 5)
}

#[test]
fn the_progress_callback_sees_every_nth_step_and_can_cancel() {
    let dir = scratch("cancel");
    let store = dir.join("store");
    toy_store(&store, 300);
    let out = dir.join("out");
    let cfg = c_cfg(saeplug_train_arch::Topk, D_IN);
    let mut seen: Vec<u64> = Vec::new();
    // SAFETY: valid strings and config; the callback reads `seen` through user_data.
    let st = unsafe {
        saeplug_train_store(
            cstr(&store).as_ptr(),
            &cfg,
            64 * 8,
            cstr(&out).as_ptr(),
            2,
            Some(stop_at_5),
            (&mut seen as *mut Vec<u64>).cast(),
            null_mut(),
        )
    };
    assert_eq!(st, saeplug_status::Cancelled);
    assert!(last_error().contains("cancelled"), "{}", last_error());
    assert_eq!(seen, [2, 4, 6]);
    assert!(!out.join("sae_weights.safetensors").exists());
    let t = Trainer::load_checkpoint(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!((t.steps_done(), t.config().total_steps), (6, 8));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `saeplug_eval_store` on a trained SAE: the held-out figures of the core
/// evaluation (itself checked against an f64 reference in core), through the ABI.
#[test]
fn eval_store_reports_the_core_evaluation() {
    let dir = scratch("eval");
    let store = dir.join("store");
    toy_store(&store, 600);
    let out = dir.join("sae");
    let cfg = c_cfg(saeplug_train_arch::Topk, D_IN);
    // SAFETY: valid strings and config.
    let st = unsafe {
        saeplug_train_store(
            cstr(&store).as_ptr(),
            &cfg,
            9000,
            cstr(&out).as_ptr(),
            0,
            None,
            null_mut(),
            null_mut(),
        )
    };
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
    let (mut sae, mut ctx) = (null_mut(), null_mut());
    // SAFETY: valid strings and out pointers.
    unsafe {
        assert_eq!(
            saeplug_sae_open(cstr(&out).as_ptr(), &mut sae),
            saeplug_status::Ok
        );
        assert_eq!(saeplug_ctx_new(0, 1, &mut ctx), saeplug_status::Ok);
    }
    let mut r = std::mem::MaybeUninit::<saeplug_eval_result>::uninit();
    // SAFETY: live handles, valid string, writable result.
    let st = unsafe { saeplug_eval_store(sae, ctx, cstr(&store).as_ptr(), 1, 0, r.as_mut_ptr()) };
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
    // SAFETY: filled by the successful call.
    let r = unsafe { r.assume_init() };
    let rust_sae = saeplug::Sae::open(&out).unwrap();
    let src = StoreSource::open(&store, Split::Heldout, None).unwrap();
    let want =
        saeplug::train::evaluate(&saeplug::CpuBackend::new(1), &rust_sae, &src, 0, 64).unwrap();
    assert_eq!(r.rows, 100);
    assert!((r.fvu - want.fvu).abs() < 1e-9 && (r.l0 - want.l0).abs() < 1e-9);
    assert!(
        r.l0 <= 4.0 + 1e-9 && r.fvu < 0.9,
        "l0 {} fvu {}",
        r.l0,
        r.fvu
    );
    assert_eq!((r.dead_latents, r.dense_latents), (want.dead, want.dense));
    assert_eq!(r.histogram_bins, want.histogram.len());
    assert_eq!(
        &r.density_histogram[..r.histogram_bins],
        &want.histogram[..]
    );
    assert_eq!(
        r.density_histogram[..r.histogram_bins].iter().sum::<u64>() as usize,
        64 - r.dead_latents
    );
    // max_rows
    let mut r2 = std::mem::MaybeUninit::<saeplug_eval_result>::uninit();
    // SAFETY: as above.
    let st = unsafe { saeplug_eval_store(sae, ctx, cstr(&store).as_ptr(), 0, 10, r2.as_mut_ptr()) };
    assert_eq!(st, saeplug_status::Ok);
    // SAFETY: filled by the successful call.
    assert_eq!(unsafe { r2.assume_init() }.rows, 10);
    // SAFETY: live handles freed once.
    unsafe {
        saeplug_ctx_free(ctx);
        saeplug_sae_free(sae);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Bad input, each case in a child process (this binary re-executed with
// SAEPLUG_TRAIN_CHILD set): a crash, abort or hang fails the test instead of
// killing the runner. The child prints "STATUS <code> <message>".

fn in_child(case: &str, arg: &Path) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["child_case", "--exact", "--nocapture", "--test-threads=1"])
        .env("SAEPLUG_TRAIN_CHILD", case)
        .env("SAEPLUG_TRAIN_CHILD_ARG", arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("case {case}: the child hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "case {case}: child failed ({status}): {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.find("STATUS ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("case {case}: no outcome in {stdout}"))
        .to_string()
}

/// The operation of one case; returns the status.
fn run_case(case: &str, arg: &Path) -> saeplug_status {
    let mut cfg = c_cfg(saeplug_train_arch::Topk, D_IN);
    cfg.total_steps = 4;
    let x = vec![0.5f32; 64 * D_IN];
    let mut h = null_mut();
    let store = cstr(&arg.join("store"));
    let out = cstr(&arg.join("out"));
    let new = |cfg: &saeplug_train_config, h: &mut *mut saeplug_trainer| {
        // SAFETY: valid config and out pointer.
        unsafe { saeplug_trainer_new(cfg, h) }
    };
    // SAFETY: each case passes what its name says; everything else is valid.
    unsafe {
        match case {
            "null_cfg" => saeplug_trainer_new(null(), &mut h),
            "null_out" => saeplug_trainer_new(&cfg, null_mut()),
            "null_trainer_step" => {
                saeplug_trainer_step(null_mut(), x.as_ptr(), x.len(), 64, null_mut())
            }
            "null_x" => {
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                saeplug_trainer_step(h, null(), x.len(), 64, null_mut())
            }
            "misaligned_x" => {
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                let p = x.as_ptr().cast::<u8>().add(1).cast::<f32>();
                saeplug_trainer_step(h, p, 16, 1, null_mut())
            }
            "huge_len" => {
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                saeplug_trainer_step(h, x.as_ptr(), usize::MAX / 2, usize::MAX / 32, null_mut())
            }
            "wrong_width" => {
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                saeplug_trainer_step(h, x.as_ptr(), 15 * 4, 4, null_mut())
            }
            "zero_rows" => {
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                saeplug_trainer_step(h, x.as_ptr(), 0, 0, null_mut())
            }
            "nan_rows" => {
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                let mut y = x.clone();
                y[3 * D_IN + 2] = f32::NAN;
                saeplug_trainer_step(h, y.as_ptr(), y.len(), 64, null_mut())
            }
            "d_sae_0" => {
                cfg.d_sae = 0;
                new(&cfg, &mut h)
            }
            "k_gt_d_sae" => {
                cfg.k = 65;
                new(&cfg, &mut h)
            }
            "struct_size" => {
                cfg.struct_size -= 8;
                new(&cfg, &mut h)
            }
            "unknown_arch" => {
                cfg.arch = 17;
                new(&cfg, &mut h)
            }
            "null_widths" => {
                cfg.n_matryoshka = 3;
                new(&cfg, &mut h)
            }
            "bad_widths" => {
                let w = [32usize, 16];
                cfg.matryoshka = w.as_ptr();
                cfg.n_matryoshka = 2;
                new(&cfg, &mut h)
            }
            "threads" => {
                cfg.threads = 100_000;
                new(&cfg, &mut h)
            }
            "missing_store" => saeplug_train_store(
                c"/nonexistent/store".as_ptr(),
                &cfg,
                100,
                out.as_ptr(),
                0,
                None,
                null_mut(),
                null_mut(),
            ),
            "truncated_shard" | "nan_store" => saeplug_train_store(
                store.as_ptr(),
                &cfg,
                100,
                out.as_ptr(),
                0,
                None,
                null_mut(),
                null_mut(),
            ),
            "eval_missing_store" | "eval_wrong_d_in" => {
                let (mut sae, mut ctx) = (null_mut(), null_mut());
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                assert_eq!(saeplug_trainer_to_sae(h, &mut sae), saeplug_status::Ok);
                assert_eq!(saeplug_ctx_new(0, 1, &mut ctx), saeplug_status::Ok);
                let dir = if case == "eval_missing_store" {
                    c"/nonexistent/store".as_ptr()
                } else {
                    store.as_ptr()
                };
                let mut r = std::mem::MaybeUninit::<saeplug_eval_result>::uninit();
                let st = saeplug_eval_store(sae, ctx, dir, 0, 0, r.as_mut_ptr());
                saeplug_ctx_free(ctx);
                saeplug_sae_free(sae);
                st
            }
            "eval_null_result" => {
                let (mut sae, mut ctx) = (null_mut(), null_mut());
                assert_eq!(new(&cfg, &mut h), saeplug_status::Ok);
                assert_eq!(saeplug_trainer_to_sae(h, &mut sae), saeplug_status::Ok);
                assert_eq!(saeplug_ctx_new(0, 1, &mut ctx), saeplug_status::Ok);
                saeplug_eval_store(sae, ctx, store.as_ptr(), 0, 0, null_mut())
            }
            "bad_checkpoint" => {
                let p = arg.join("not-a-checkpoint");
                std::fs::write(&p, b"garbage").unwrap();
                saeplug_trainer_load_checkpoint(cstr(&p).as_ptr(), 1, &mut h)
            }
            other => panic!("unknown case {other}"),
        }
    }
}

#[test]
fn child_case() {
    let Ok(case) = std::env::var("SAEPLUG_TRAIN_CHILD") else {
        return;
    };
    let arg = PathBuf::from(std::env::var_os("SAEPLUG_TRAIN_CHILD_ARG").unwrap_or_default());
    let st = run_case(&case, &arg);
    println!(
        "STATUS {} {}",
        st as u32,
        if st == saeplug_status::Ok {
            String::new()
        } else {
            last_error()
        }
    );
}

#[test]
fn bad_input_is_a_status_with_a_message() {
    let dir = scratch("bad");
    let expect = |case: &str, arg: &Path, st: saeplug_status, words: &[&str]| {
        let line = in_child(case, arg);
        assert!(
            line.starts_with(&format!("STATUS {} ", st as u32)),
            "{case}: {line}"
        );
        for w in words {
            assert!(line.contains(w), "{case}: '{w}' not in: {line}");
        }
    };
    use saeplug_status as S;
    expect("null_cfg", &dir, S::NullPointer, &["'cfg'"]);
    expect("null_out", &dir, S::NullPointer, &["'out'"]);
    expect("null_trainer_step", &dir, S::NullPointer, &["'t'"]);
    expect("null_x", &dir, S::NullPointer, &["'x'"]);
    expect("misaligned_x", &dir, S::Misaligned, &["'x'"]);
    expect("huge_len", &dir, S::InvalidArgument, &["'x'"]);
    expect("wrong_width", &dir, S::InvalidArgument, &["'x'", "16"]);
    expect("zero_rows", &dir, S::InvalidArgument, &["n_rows"]);
    expect("nan_rows", &dir, S::NonFinite, &["row 3"]);
    expect("d_sae_0", &dir, S::InvalidArgument, &["d_sae 0"]);
    expect("k_gt_d_sae", &dir, S::InvalidArgument, &["k 65"]);
    expect(
        "struct_size",
        &dir,
        S::InvalidArgument,
        &["struct_size", "saeplug_train_config_init"],
    );
    expect(
        "unknown_arch",
        &dir,
        S::InvalidArgument,
        &["cfg->arch", "17"],
    );
    expect("null_widths", &dir, S::NullPointer, &["cfg->matryoshka"]);
    expect("bad_widths", &dir, S::InvalidArgument, &["Matryoshka"]);
    expect("threads", &dir, S::InvalidArgument, &["threads"]);
    expect("missing_store", &dir, S::Io, &["/nonexistent/store"]);
    expect("eval_missing_store", &dir, S::Io, &["/nonexistent/store"]);
    expect("bad_checkpoint", &dir, S::Format, &[]);

    // A store holding NaN rows (written by another tool): refused, not trained on.
    let nan = dir.join("nan");
    toy_store(&nan.join("store"), 64);
    let shard = std::fs::read_dir(nan.join("store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("train")
        })
        .expect("a train shard");
    let st = saeplug::weights::SafeTensors::open(&shard).unwrap();
    let off = {
        let bytes = std::fs::read(&shard).unwrap();
        let hl = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let acts = st.tensor("acts").unwrap();
        let first = acts.as_slice()[0].to_le_bytes();
        // The first value of `acts` in the data section.
        8 + hl + bytes[8 + hl..].windows(4).position(|w| w == first).unwrap()
    };
    drop(st);
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[off..off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&shard, &bytes).unwrap();
    expect("nan_store", &nan, S::InvalidArgument, &["NaN"]);
    // Evaluating an SAE of d_in 16 on it works; on a store of another width does not.
    let other = dir.join("other");
    let mut w = StoreWriter::create(&other.join("store"), StoreSpec::new(3, "x")).unwrap();
    w.append(Split::Train, &[1.0; 6], &[0, 1], &[0, 0], &[1, 2])
        .unwrap();
    w.finish().unwrap();
    expect("eval_wrong_d_in", &other, S::InvalidArgument, &["d_in"]);
    expect("eval_null_result", &other, S::NullPointer, &["'result'"]);

    // A truncated shard: the store does not open, nothing is trained.
    let trunc = dir.join("trunc");
    toy_store(&trunc.join("store"), 64);
    let shard = std::fs::read_dir(trunc.join("store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("train")
        })
        .expect("a train shard");
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let line = in_child("truncated_shard", &trunc);
    assert!(!line.starts_with("STATUS 0 "), "{line}");
    assert!(!trunc.join("out/sae_weights.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
