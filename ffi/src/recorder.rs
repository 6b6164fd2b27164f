//! Feature recording through the C ABI.

use std::ffi::c_char;
use std::sync::Arc;

use saeplug::Sae;
use saeplug::record::Recorder;

use crate::ctx::saeplug_ctx;
use crate::error::{FfiError, saeplug_status};
use crate::handle::{
    HandleOut, borrow, borrow_mut, c_str, check_disjoint, check_shape, free_handle, output,
    slice_in,
};
use crate::hook::check_positions;
use crate::sae::saeplug_sae;

/// Feature statistics over a run. Owned by the caller of `saeplug_recorder_new`;
/// free with `saeplug_recorder_free`. Use from one thread at a time.
pub struct saeplug_recorder {
    sae: Arc<Sae>,
    rec: Recorder,
}

/// Create a recorder for `sae` keeping the `top_n` strongest positions per feature.
/// Returns: OK; NULL_POINTER. Memory: on success `*out` owns a new recorder (free
/// with `saeplug_recorder_free`); it holds its own reference to the SAE.
/// Thread safety: any thread; `sae` may be shared.
///
/// Example:
///
/// ```c
/// saeplug_recorder *rec = NULL;
/// uint64_t count = 1;
/// float mean, max;
/// CHECK(saeplug_recorder_new(sae, 10, &rec)); // keep the 10 strongest positions
/// CHECK(saeplug_recorder_feature(rec, 0, &count, &mean, &max));
/// assert(count == 0); // nothing recorded yet
/// saeplug_recorder_free(rec);
/// ```
///
/// # Safety
/// `sae` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_recorder_new(
    sae: *const saeplug_sae,
    top_n: usize,
    out: *mut *mut saeplug_recorder,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let sae = &unsafe { borrow(sae, "sae") }?.sae;
        let out = HandleOut::new(out, "out")?;
        let r = saeplug_recorder { sae: Arc::clone(sae), rec: Recorder::new(sae.d_sae(), top_n) };
        // SAFETY: writable per the caller contract.
        unsafe { out.set(r) };
        Ok(())
    }
}

/// Free a recorder; NULL is a no-op; twice is UB.
/// Returns: nothing. Memory: releases the recorder and its reference to the SAE.
/// Thread safety: no call using `rec` may be running on another thread.
///
/// Example:
///
/// ```c
/// saeplug_recorder *rec = NULL;
/// CHECK(saeplug_recorder_new(sae, 1, &rec));
/// saeplug_recorder_free(rec);
/// saeplug_recorder_free(NULL); // no-op
/// ```
///
/// # Safety
/// `rec` NULL or from `saeplug_recorder_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_recorder_free(rec: *mut saeplug_recorder) {
    ffi_boundary_value! { ();
        // SAFETY: NULL or from saeplug_recorder_new, freed once (caller contract).
        unsafe { free_handle(rec) }
    }
}

/// Encode `x` (`[n_rows, d_in]`, first row at position `pos0`) and add it to the
/// statistics.
/// Runs on the context's backend.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (lengths, `pos0 +
/// n_rows` overflowing size_t); NON_FINITE; FILE_CHANGED (the recorder is then
/// unchanged). Memory: the recorder keeps counts, sums and its top positions;
/// `x` is not retained.
/// Thread safety: `ctx` and `rec` each by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_recorder *rec = NULL;
/// float x[4 * 64], f[4 * 256];
/// uint64_t count, want = 0;
/// float mean, max;
/// for (int i = 0; i < 4 * 64; i++) x[i] = sinf(0.1f * (float)i);
/// CHECK(saeplug_recorder_new(sae, 3, &rec));
/// CHECK(saeplug_ctx_record(ctx, rec, x, 4 * 64, 4, 0)); // positions 0..3
/// CHECK(saeplug_ctx_record(ctx, rec, x, 4 * 64, 4, 4)); // positions 4..7
/// CHECK(saeplug_ctx_encode(ctx, sae, x, 4 * 64, 4, f, 4 * 256));
/// for (int r = 0; r < 4; r++) want += 2 * (f[r * 256 + 7] > 0.0f);
/// CHECK(saeplug_recorder_feature(rec, 7, &count, &mean, &max));
/// assert(count == want);
/// saeplug_recorder_free(rec);
/// ```
///
/// # Safety
/// Handles NULL or live; `x` holds `x_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_record(
    ctx: *mut saeplug_ctx,
    rec: *mut saeplug_recorder,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
    pos0: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, r, x) = unsafe { (borrow_mut(ctx, "ctx")?, borrow_mut(rec, "rec")?, slice_in(x, x_len, "x")?) };
        r.sae.check_unchanged()?;
        check_shape("x", x.len(), n_rows, r.sae.d_in())?;
        check_positions(pos0, n_rows)?;
        let codes = ctx.backend().encode_sparse(&r.sae, x)?;
        r.rec.record(&codes, pos0 as u64)?;
        Ok(())
    }
}

/// Statistics of one feature: times fired, mean activation over all recorded
/// tokens, and the strongest recorded activation (0 if it never fired).
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (feature >= d_sae; outputs that
/// overlap). On failure no output is written.
/// Memory: nothing allocated.
/// Thread safety: `rec` may be read from several threads while none records into it.
///
/// Example:
///
/// ```c
/// saeplug_recorder *rec = NULL;
/// float x[64], f[256], mean, max;
/// uint64_t count;
/// uint32_t best = 0;
/// for (int j = 0; j < 64; j++) x[j] = cosf(0.5f * (float)j);
/// CHECK(saeplug_ctx_encode(ctx, sae, x, 64, 1, f, 256));
/// for (uint32_t i = 1; i < 256; i++) if (f[i] > f[best]) best = i;
/// CHECK(saeplug_recorder_new(sae, 1, &rec));
/// CHECK(saeplug_ctx_record(ctx, rec, x, 64, 1, 0));
/// CHECK(saeplug_recorder_feature(rec, best, &count, &mean, &max));
/// assert(count == 1 && fabsf(max - f[best]) < 1e-5f && fabsf(mean - f[best]) < 1e-5f);
/// assert(saeplug_recorder_feature(rec, 256, &count, &mean, &max) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// saeplug_recorder_free(rec);
/// ```
///
/// # Safety
/// `rec` NULL or live; outputs NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_recorder_feature(
    rec: *const saeplug_recorder,
    feature: u32,
    count: *mut u64,
    mean: *mut f32,
    max: *mut f32,
) -> saeplug_status {
    ffi_boundary! {
        check_disjoint(&[
            output(count, 1, "count"),
            output(mean, 1, "mean"),
            output(max, 1, "max"),
        ])?;
        // SAFETY: caller contract above; the three outputs are distinct.
        let (r, count, mean, max) = unsafe {
            (borrow(rec, "rec")?, borrow_mut(count, "count")?, borrow_mut(mean, "mean")?, borrow_mut(max, "max")?)
        };
        let i = feature as usize;
        if i >= r.sae.d_sae() {
            return Err(FfiError::invalid(format!("'feature' = {i} >= d_sae {}", r.sae.d_sae())));
        }
        let (c, m, x) = (
            r.rec.firing_counts()[i],
            r.rec.mean_activation()[i] as f32,
            r.rec.top(i).first().map_or(0.0, |t| t.0),
        );
        (*count, *mean, *max) = (c, m, x);
        Ok(())
    }
}

/// Write the statistics as JSON (firing_count, mean_activation, mean_when_firing,
/// top [[position, value], ...] per feature) to `path`, atomically.
/// Returns: OK; NULL_POINTER; INVALID_UTF8 (path); IO.
/// Memory: nothing retained; the file is written to a temporary name and renamed.
/// Thread safety: as for `saeplug_recorder_feature`.
///
/// Example:
///
/// ```c
/// saeplug_recorder *rec = NULL;
/// char path[4096];
/// float x[64] = {0};
/// FILE *fp;
/// snprintf(path, sizeof path, "%s/features.json", tmp_dir);
/// CHECK(saeplug_recorder_new(sae, 5, &rec));
/// CHECK(saeplug_ctx_record(ctx, rec, x, 64, 1, 0));
/// CHECK(saeplug_recorder_write_json(rec, path));
/// fp = fopen(path, "r");
/// assert(fp != NULL && fgetc(fp) == '{');
/// fclose(fp);
/// saeplug_recorder_free(rec);
/// ```
///
/// # Safety
/// `rec` NULL or live; `path` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_recorder_write_json(
    rec: *const saeplug_recorder,
    path: *const c_char,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (r, path) = unsafe { (borrow(rec, "rec")?, c_str(path, "path")?) };
        r.rec.write_json(std::path::Path::new(path))?;
        Ok(())
    }
}
