//! Concurrency stress through the C ABI: one SAE handle and one configured hook
//! shared by many threads, each thread with its own context (itself running two
//! worker threads) and its own recorder, calling every compute entry point in a
//! loop for a bounded time. Every result must equal the single-threaded one bit
//! for bit. `scripts/tsan.sh` runs this test under ThreadSanitizer.
//!
//! Time bound: `SAEPLUG_STRESS_MS` (default 1500 ms; each thread does at least
//! two rounds whatever the bound).

use std::ffi::{CStr, CString};
use std::ptr::null_mut;

use saeplug::Architecture;
use saeplug_ffi::*;

const D_IN: usize = 64;
// Wide enough (>= 2 GEMM column blocks, >= 2^15 output values for 16 rows) that
// each context's own worker threads run too.
const D_SAE: usize = 4096;
const ROWS: usize = 16;
const K: u32 = 8;

fn last_error() -> String {
    let mut buf = vec![0 as std::ffi::c_char; 512];
    // SAFETY: buf has 512 writable bytes; the call NUL-terminates it.
    unsafe {
        saeplug_last_error_message(buf.as_mut_ptr(), buf.len());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

fn ok(st: saeplug_status) {
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
}

/// CSR codes (offsets, indices, values).
type Csr = (Vec<usize>, Vec<u32>, Vec<f32>);

/// Everything one round computes, compared bit for bit.
#[derive(PartialEq, Debug)]
struct Round {
    dense: Vec<f32>,
    csr: Csr,
    decoded: Vec<f32>,
    recon: Vec<f32>,
    small: Vec<f32>,
    ito: (Csr, Vec<u32>, Vec<f32>),
    steered: Vec<f32>,
    recorded: Vec<(u64, f32, f32)>,
}

/// Handles shared by the threads, passed as addresses (the C ABI promises that
/// an SAE, and a hook once configured, may be used from any thread).
#[derive(Clone, Copy)]
struct Shared {
    sae: usize,
    hook: usize,
}

fn round(sh: Shared, x: &[f32]) -> Round {
    let sae = sh.sae as *const saeplug_sae;
    let hook = sh.hook as *const saeplug_hook;
    let mut ctx = null_mut();
    let mut rec = null_mut();
    let cap = ROWS * D_SAE;
    let mut r = Round {
        dense: vec![0.0; ROWS * D_SAE],
        csr: (vec![0; ROWS + 1], vec![0; cap], vec![0.0; cap]),
        decoded: vec![0.0; ROWS * D_IN],
        recon: vec![0.0; ROWS * D_IN],
        small: vec![0.0; 2 * D_SAE],
        ito: (
            (
                vec![0; ROWS + 1],
                vec![0; ROWS * K as usize],
                vec![0.0; ROWS * K as usize],
            ),
            vec![0; ROWS],
            vec![0.0; ROWS],
        ),
        steered: x.to_vec(),
        recorded: Vec::new(),
    };
    // SAFETY: live handles; every buffer holds the length passed with it.
    unsafe {
        ok(saeplug_ctx_new(1, 2, &mut ctx));
        ok(saeplug_recorder_new(sae, 4, &mut rec));
        ok(saeplug_ctx_encode(
            ctx,
            sae,
            x.as_ptr(),
            x.len(),
            ROWS,
            r.dense.as_mut_ptr(),
            r.dense.len(),
        ));
        // Two rows: the small-batch GEMM path.
        ok(saeplug_ctx_encode(
            ctx,
            sae,
            x.as_ptr(),
            2 * D_IN,
            2,
            r.small.as_mut_ptr(),
            r.small.len(),
        ));
        let mut nnz = 0usize;
        ok(saeplug_ctx_encode_sparse(
            ctx,
            sae,
            x.as_ptr(),
            x.len(),
            ROWS,
            r.csr.0.as_mut_ptr(),
            r.csr.1.as_mut_ptr(),
            r.csr.2.as_mut_ptr(),
            cap,
            &mut nnz,
        ));
        r.csr.1.truncate(nnz);
        r.csr.2.truncate(nnz);
        ok(saeplug_ctx_decode(
            ctx,
            sae,
            r.dense.as_ptr(),
            r.dense.len(),
            ROWS,
            r.decoded.as_mut_ptr(),
            r.decoded.len(),
        ));
        ok(saeplug_ctx_reconstruct(
            ctx,
            sae,
            x.as_ptr(),
            x.len(),
            ROWS,
            r.recon.as_mut_ptr(),
            r.recon.len(),
        ));
        let mut nnz = 0usize;
        ok(saeplug_ctx_solve(
            ctx,
            sae,
            saeplug_solver::Gp as u32,
            K,
            1,
            0.0,
            x.as_ptr(),
            x.len(),
            ROWS,
            r.ito.0.0.as_mut_ptr(),
            r.ito.0.1.as_mut_ptr(),
            r.ito.0.2.as_mut_ptr(),
            ROWS * K as usize,
            &mut nnz,
            r.ito.1.as_mut_ptr(),
            r.ito.2.as_mut_ptr(),
        ));
        r.ito.0.1.truncate(nnz);
        r.ito.0.2.truncate(nnz);
        ok(saeplug_ctx_hook_apply(
            ctx,
            hook,
            r.steered.as_mut_ptr(),
            r.steered.len(),
            ROWS,
            0,
        ));
        ok(saeplug_ctx_record(ctx, rec, x.as_ptr(), x.len(), ROWS, 0));
        for f in [0u32, 1, 2, 3, 7, 100] {
            let (mut n, mut mean, mut max) = (0u64, 0.0f32, 0.0f32);
            ok(saeplug_recorder_feature(
                rec, f, &mut n, &mut mean, &mut max,
            ));
            r.recorded.push((n, mean, max));
        }
        saeplug_recorder_free(rec);
        saeplug_ctx_free(ctx);
    }
    r
}

#[test]
fn one_sae_and_one_hook_shared_by_threads_every_entry_point() {
    let dir = std::env::temp_dir().join(format!("saeplug-stress-{}", std::process::id()));
    saeplug::synthetic::random_sae(D_IN, D_SAE, Architecture::Standard, 11)
        .unwrap()
        .save_saelens(&dir)
        .unwrap();
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let mut rng = saeplug::synthetic::Rng::new(5);
    let x = rng.normal_vec(ROWS * D_IN, 1.0);
    let steer_dir = rng.normal_vec(D_IN, 1.0);

    let (mut sae, mut hook) = (null_mut(), null_mut());
    // SAFETY: valid C string and out pointers; the vector holds D_IN values.
    unsafe {
        ok(saeplug_sae_open(path.as_ptr(), &mut sae));
        ok(saeplug_hook_new(sae, 3, &mut hook));
        ok(saeplug_hook_set_positions(hook, 3, 2, 9));
        ok(saeplug_hook_add_edit(hook, 1, 7, 2.5));
        ok(saeplug_hook_add_edit(hook, 2, 100, 0.0));
        ok(saeplug_hook_add_vector(hook, steer_dir.as_ptr(), D_IN, 0.5));
        ok(saeplug_hook_set_replace(hook, 2));
    }
    let sh = Shared {
        sae: sae as usize,
        hook: hook as usize,
    };
    let want = round(sh, &x);
    assert_ne!(want.steered, x, "the hook must change something");
    assert!(want.recorded.iter().any(|&(n, _, _)| n > 0));

    let ms: u64 = std::env::var("SAEPLUG_STRESS_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    let rounds: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while n < 2 || std::time::Instant::now() < deadline {
                        assert!(round(sh, &x) == want, "a concurrent round differed");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!("{rounds} concurrent rounds");
    // SAFETY: every thread has joined; each handle is freed once.
    unsafe {
        saeplug_hook_free(hook);
        saeplug_sae_free(sae);
    }
    std::fs::remove_dir_all(&dir).ok();
}
