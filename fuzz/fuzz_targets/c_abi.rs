#![no_main]
//! The C ABI's argument validation: a byte string drives calls with arbitrary
//! lengths, row counts, NULL/non-NULL buffers, edit kinds and values, thread counts
//! up to u32::MAX, layers and positions near their type's limit, and input/output
//! buffers that overlap. Buffers are always as long as the lengths passed claim, as
//! the C contract requires; the library must return a status for everything else,
//! never crash.
mod common;
use libfuzzer_sys::fuzz_target;
use saeplug_ffi::*;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

struct Handles {
    sae: usize,
}

static H: OnceLock<Handles> = OnceLock::new();

fn handles() -> &'static Handles {
    H.get_or_init(|| {
        let d = common::scratch().join("abi");
        std::fs::create_dir_all(&d).ok();
        std::fs::write(d.join("cfg.json"), common::CFG).ok();
        std::fs::write(d.join("sae_weights.safetensors"), common::valid_weights()).ok();
        let path = std::ffi::CString::new(d.to_str().unwrap_or_default()).unwrap_or_default();
        let mut sae = null_mut();
        // SAFETY: valid C string, valid out pointer.
        unsafe { saeplug_sae_open(path.as_ptr(), &mut sae) };
        Handles { sae: sae as usize }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = handles();
    let sae = h.sae as *const saeplug_sae;
    let mut it = data.iter().copied();
    let mut next = || it.next().unwrap_or(0);
    let mut ctx = null_mut();
    // SAFETY: every buffer passed is at least as long as the length passed with it.
    unsafe {
        // Absurd thread counts must be refused, not spawned; then a working context.
        let threads = match next() % 4 {
            0 => u32::MAX,
            1 => 1 << 20,
            2 => 257,
            _ => 1,
        };
        // CPU contexts only: AUTO would probe the Vulkan driver, whose own
        // allocations LeakSanitizer reports.
        if saeplug_ctx_new(1, threads, &mut ctx) != saeplug_status::Ok {
            saeplug_ctx_new(1, 1, &mut ctx);
        }
        let mut hook = null_mut();
        let layer = match next() % 3 {
            0 => u32::MAX - next() as u32,
            _ => next() as u32,
        };
        if saeplug_hook_new(sae, layer, &mut hook) != saeplug_status::Ok {
            saeplug_hook_new(sae, 0, &mut hook);
        }
        for _ in 0..8 {
            let op = next() % 9;
            let rows = (next() % 5) as usize;
            let len = (next() % 48) as usize;
            let mut buf: Vec<f32> = (0..len.max(1)).map(|i| (next() as f32 - 128.0) / 16.0 + i as f32 * 0.0).collect();
            if next() % 16 == 0 {
                buf[0] = f32::NAN;
            }
            let use_null = next() % 4 == 0;
            let p = if use_null { null() } else { buf.as_ptr() };
            let mut out = vec![0.0f32; 64];
            let out_len = (next() % 64) as usize;
            match op {
                0 => { saeplug_ctx_encode(ctx, sae, p, len, rows, out.as_mut_ptr(), out_len); }
                1 => { saeplug_ctx_decode(ctx, sae, p, len, rows, out.as_mut_ptr(), out_len); }
                2 => { saeplug_ctx_reconstruct(ctx, sae, p, len, rows, out.as_mut_ptr(), out_len); }
                3 => {
                    let mut offs = vec![0usize; rows + 1];
                    let mut idx = vec![0u32; 64];
                    let mut nnz = 0usize;
                    saeplug_ctx_encode_sparse(ctx, sae, p, len, rows, offs.as_mut_ptr(), idx.as_mut_ptr(), out.as_mut_ptr(), out_len, &mut nnz);
                }
                8 => {
                    // Input and output inside one allocation, overlapping or not.
                    let mut one = vec![0.5f32; 160];
                    let off = (next() % 96) as usize;
                    let n_in = len.min(64);
                    let n_out = out_len.min(160 - off);
                    let base = one.as_mut_ptr();
                    match next() % 3 {
                        0 => { saeplug_ctx_encode(ctx, sae, base, n_in, rows, base.add(off), n_out); }
                        1 => { saeplug_ctx_decode(ctx, sae, base, n_in, rows, base.add(off), n_out); }
                        _ => { saeplug_ctx_reconstruct(ctx, sae, base, n_in, rows, base.add(off), n_out); }
                    }
                }
                4 => {
                    let offs: Vec<usize> = (0..=rows).map(|_| (next() % 6) as usize).collect();
                    let idx: Vec<u32> = (0..8).map(|_| next() as u32 % 12).collect();
                    let n = (next() % 9) as usize;
                    saeplug_ctx_decode_sparse(ctx, sae, offs.as_ptr(), idx.as_ptr(), buf.as_ptr(), n.min(idx.len()).min(buf.len()), rows, out.as_mut_ptr(), out_len);
                }
                5 => { saeplug_hook_add_edit(hook, next() as u32 % 6, next() as u32 % 12, (next() as f32 - 128.0) / 8.0); }
                6 => { saeplug_hook_set_positions(hook, next() as u32 % 5, (next() % 4) as usize, (next() % 4) as usize); }
                _ => {
                    let n = buf.len() - buf.len() % 4;
                    buf.truncate(n.max(4).min(buf.len()));
                    let pos0 = match next() % 3 {
                        0 => usize::MAX - (next() % 4) as usize,
                        _ => (next() % 4) as usize,
                    };
                    saeplug_ctx_hook_apply(ctx, hook, buf.as_mut_ptr(), len.min(buf.len()), rows, pos0);
                    let mut offs = vec![0usize; rows + 1];
                    let mut idx = vec![0u32; 64];
                    let mut nnz = 0usize;
                    let mut it2 = vec![0u32; rows.max(1)];
                    saeplug_ctx_solve(ctx, sae, next() as u32 % 4, next() as u32 % 10, next() as u32 % 2, 0.0, p, len, rows, offs.as_mut_ptr(), idx.as_mut_ptr(), out.as_mut_ptr(), out_len, &mut nnz, it2.as_mut_ptr(), null_mut());
                }
            }
        }
        saeplug_hook_free(hook);
        saeplug_ctx_free(ctx);
    }
});
