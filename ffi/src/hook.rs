//! Steering hooks, feature recording and control-vector export through the C ABI.

use std::ffi::c_char;
use std::sync::Arc;

use saeplug::Sae;
use saeplug::hook::{Hook, Positions, Replace};
use saeplug::record::Recorder;
use saeplug::solve::{Solver, SolverParams};
use saeplug::steer::{Edit, FeatureSource};

use crate::ctx::saeplug_ctx;
use crate::error::FfiError;
use crate::handle::{borrow, borrow_mut, c_str, check_shape, slice_in, slice_out};
use crate::sae::saeplug_sae;

/// A steering hook: an SAE, a layer, positions and edits. Holds its own reference
/// to the SAE (freeing the SAE handle first is allowed). Owned by the caller of
/// `saeplug_hook_new`; free with `saeplug_hook_free`. Configure from one thread;
/// once configured it may be applied from any thread (read-only).
pub struct saeplug_hook {
    hook: Hook,
}

/// Feature statistics over a run. Owned by the caller of `saeplug_recorder_new`;
/// free with `saeplug_recorder_free`. Use from one thread at a time.
pub struct saeplug_recorder {
    sae: Arc<Sae>,
    rec: Recorder,
}

/// Create a hook on `layer` with no edits, on all positions.
///
/// Memory: on success `*out` owns a new hook (free with `saeplug_hook_free`).
/// Returns: OK; NULL_POINTER. The hook holds its own reference to the SAE, so
/// `sae` may be freed before the hook.
/// Thread safety: any thread; `sae` may be shared.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// CHECK(saeplug_hook_new(sae, 6, &hook)); // steer the output of block 6
/// assert(saeplug_hook_layer(hook) == 6);
/// saeplug_hook_free(hook);
/// assert(saeplug_hook_new(NULL, 6, &hook) == SAEPLUG_STATUS_NULL_POINTER);
/// ```
///
/// # Safety
/// `sae` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_new(
    sae: *const saeplug_sae,
    layer: u32,
    out: *mut *mut saeplug_hook,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let sae = unsafe { borrow(sae, "sae") }?;
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let h = Box::into_raw(Box::new(saeplug_hook { hook: Hook::new(Arc::clone(&sae.sae), layer) }));
        // SAFETY: non-null, writable per the caller contract.
        unsafe { *out = h };
        Ok(())
    }
}

/// Free a hook; NULL is a no-op; twice is UB.
/// Returns: nothing. Memory: releases the hook and its reference to the SAE.
/// Thread safety: no call using `hook` may be running on another thread.
///
/// Example:
///
/// ```c
/// saeplug_sae *own = NULL;
/// saeplug_hook *hook = NULL;
/// float x[64] = {0};
/// CHECK(saeplug_sae_open(sae_dir, &own));
/// CHECK(saeplug_hook_new(own, 0, &hook));
/// saeplug_sae_free(own); // the hook keeps its SAE alive
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 64, 1, 0));
/// saeplug_hook_free(hook); // now the SAE is unmapped
/// saeplug_hook_free(NULL);
/// ```
///
/// # Safety
/// `hook` NULL or from `saeplug_hook_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_free(hook: *mut saeplug_hook) {
    if !hook.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: from Box::into_raw in saeplug_hook_new, freed once.
            drop(unsafe { Box::from_raw(hook) });
        }));
    }
}

/// The hook's layer (0 for NULL).
/// Returns: the layer. Memory: nothing allocated.
/// Thread safety: any thread, as long as no thread is configuring the hook.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// CHECK(saeplug_hook_new(sae, 12, &hook));
/// assert(saeplug_hook_layer(hook) == 12);
/// assert(saeplug_hook_layer(NULL) == 0);
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// `hook` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_layer(hook: *const saeplug_hook) -> u32 {
    // SAFETY: caller contract; `as_ref` handles NULL.
    unsafe { hook.as_ref() }.map_or(0, |h| h.hook.layer)
}

/// Choose positions: `kind` 0 all, 1 the first `a` positions, 2 the last row of
/// each batch, 3 add the range `[a, b)` (ranges accumulate). Returns
/// INVALID_ARGUMENT for other kinds or an empty range.
/// Memory: the hook copies what it needs.
/// Thread safety: configuration call: no other call may use `hook` meanwhile.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// float v[64], x[10 * 64] = {0};
/// for (int j = 0; j < 64; j++) v[j] = 1.0f;
/// CHECK(saeplug_hook_new(sae, 0, &hook));
/// CHECK(saeplug_hook_set_positions(hook, 3, 4, 8)); // positions 4, 5, 6, 7
/// CHECK(saeplug_hook_add_vector(hook, v, 64, 0.5f));
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 10 * 64, 10, 0));
/// for (int r = 0; r < 10; r++) assert(x[r * 64] == ((r >= 4 && r < 8) ? 0.5f : 0.0f));
/// assert(saeplug_hook_set_positions(hook, 3, 5, 5) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// `hook` NULL or live, not used concurrently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_set_positions(
    hook: *mut saeplug_hook,
    kind: u32,
    a: usize,
    b: usize,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        h.positions = match (kind, &mut h.positions) {
            (0, _) => Positions::All,
            (1, _) => Positions::First(a),
            (2, _) => Positions::Last,
            (3, _) if a >= b => return Err(FfiError::invalid(format!("empty range [{a}, {b})"))),
            (3, Positions::Ranges(rs)) => {
                let mut rs = std::mem::take(rs);
                rs.push(a..b);
                Positions::Ranges(rs)
            }
            (3, _) => Positions::Ranges(std::iter::once(a..b).collect()),
            (k, _) => return Err(FfiError::invalid(format!("unknown positions kind {k}"))),
        };
        Ok(())
    }
}

/// Add a feature edit: `kind` 0 add `value * d_feature`, 1 clamp to `value`,
/// 2 ablate (value ignored), 3 scale by `value`. The feature index and value are
/// checked against the SAE (INVALID_ARGUMENT).
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (unknown kind, feature >= d_sae,
/// non-finite value). Memory: the hook stores the edit.
/// Thread safety: configuration call: no other call may use `hook` meanwhile.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// float x[64], before[64], f[256], d[64];
/// uint32_t best = 0;
/// for (int j = 0; j < 64; j++) x[j] = before[j] = cosf((float)j);
/// CHECK(saeplug_ctx_encode(ctx, sae, x, 64, 1, f, 256));
/// for (uint32_t i = 1; i < 256; i++) if (f[i] > f[best]) best = i;
/// CHECK(saeplug_hook_new(sae, 0, &hook));
/// CHECK(saeplug_hook_add_edit(hook, 1, best, 2.0f * f[best])); // clamp to twice its value
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 64, 1, 0));
/// // Error-preserving: x moved by (target - f) along the feature's decoder row.
/// CHECK(saeplug_sae_decoder_row(sae, best, d, 64));
/// for (int j = 0; j < 64; j++) assert(fabsf(x[j] - (before[j] + f[best] * d[j])) < 1e-4f);
/// assert(saeplug_hook_add_edit(hook, 1, 256, 1.0f) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// `hook` NULL or live, not used concurrently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_add_edit(
    hook: *mut saeplug_hook,
    kind: u32,
    feature: u32,
    value: f32,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        let feature = feature as usize;
        if feature >= h.sae.d_sae() {
            return Err(FfiError::invalid(format!("feature {feature} >= d_sae {}", h.sae.d_sae())));
        }
        if !value.is_finite() {
            return Err(FfiError::invalid(format!("value {value} is not finite")));
        }
        h.edits.push(match kind {
            0 => Edit::AddFeature { feature, coef: value },
            1 => Edit::Clamp { feature, value },
            2 => Edit::Ablate { feature },
            3 => Edit::Scale { feature, factor: value },
            k => return Err(FfiError::invalid(format!("unknown edit kind {k}"))),
        });
        Ok(())
    }
}

/// Add `coef * v` (`len == d_in`) on the hook's positions.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (`len != d_in`,
/// non-finite values). Memory: `v` is copied; the caller keeps ownership.
/// Thread safety: configuration call: no other call may use `hook` meanwhile.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// float v[64] = {0}, x[64] = {0};
/// v[0] = 1.0f;
/// CHECK(saeplug_hook_new(sae, 0, &hook));
/// CHECK(saeplug_hook_add_vector(hook, v, 64, 4.0f)); // v is copied
/// assert(saeplug_hook_add_vector(hook, v, 63, 1.0f) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 64, 1, 0));
/// assert(x[0] == 4.0f && x[1] == 0.0f);
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// `hook` NULL or live; `v` holds `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_add_vector(
    hook: *mut saeplug_hook,
    v: *const f32,
    len: usize,
    coef: f32,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (h, v) = unsafe { (&mut borrow_mut(hook, "hook")?.hook, slice_in(v, len, "v")?) };
        if v.len() != h.sae.d_in() {
            return Err(FfiError::invalid(format!("vector has {} values, d_in is {}", v.len(), h.sae.d_in())));
        }
        if !coef.is_finite() || v.iter().any(|x| !x.is_finite()) {
            return Err(FfiError::invalid("vector or coefficient is not finite"));
        }
        h.edits.push(Edit::AddVector { vector: v.to_vec(), coef });
        Ok(())
    }
}

/// Reconstruction mode: 0 none (edits only), 1 reconstruction with the error term
/// kept, 2 reconstruction only (error dropped).
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (unknown mode).
/// Memory: nothing allocated.
/// Thread safety: configuration call: no other call may use `hook` meanwhile.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// float x[64], y[64], recon[64];
/// for (int j = 0; j < 64; j++) x[j] = y[j] = sinf(0.3f * (float)j);
/// CHECK(saeplug_hook_new(sae, 0, &hook));
/// CHECK(saeplug_hook_set_replace(hook, 2)); // the SAE's reconstruction replaces x
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, y, 64, 1, 0));
/// CHECK(saeplug_ctx_reconstruct(ctx, sae, x, 64, 1, recon, 64));
/// for (int j = 0; j < 64; j++) assert(fabsf(y[j] - recon[j]) < 1e-4f);
/// assert(saeplug_hook_set_replace(hook, 9) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// `hook` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_set_replace(
    hook: *mut saeplug_hook,
    mode: u32,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        h.replace = match mode {
            0 => Replace::None,
            1 => Replace::WithError,
            2 => Replace::ReconstructionOnly,
            m => return Err(FfiError::invalid(format!("unknown replace mode {m}"))),
        };
        Ok(())
    }
}

/// Read current activations for clamp/ablate/scale from an ITO solver
/// (`saeplug_solver`, `k_max`) instead of the encoder; `k_max == 0` restores the encoder.
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (unknown solver, k_max > d_sae).
/// Memory: nothing allocated.
/// Thread safety: configuration call: no other call may use `hook` meanwhile.
///
/// Example:
///
/// ```c
/// saeplug_hook *hook = NULL;
/// float x[64];
/// for (int j = 0; j < 64; j++) x[j] = sinf((float)j);
/// CHECK(saeplug_hook_new(sae, 0, &hook));
/// CHECK(saeplug_hook_set_solver(hook, SAEPLUG_SOLVER_GP, 16)); // activations from 16-sparse GP
/// CHECK(saeplug_hook_add_edit(hook, 2, 5, 0.0f));              // ablate feature 5
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 64, 1, 0));
/// assert(saeplug_hook_set_solver(hook, SAEPLUG_SOLVER_GP, 257) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// CHECK(saeplug_hook_set_solver(hook, 0, 0)); // back to the encoder
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// `hook` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_set_solver(
    hook: *mut saeplug_hook,
    solver: u32,
    k_max: u32,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        if k_max == 0 {
            h.source = FeatureSource::Encoder;
            return Ok(());
        }
        let s = match solver {
            0 => Solver::MatchingPursuit,
            1 => Solver::OrthogonalMatchingPursuit,
            2 => Solver::GradientPursuit,
            s => return Err(FfiError::invalid(format!("unknown solver {s}"))),
        };
        let p = SolverParams::new(s, k_max as usize);
        p.validate(&h.sae)?;
        h.source = FeatureSource::Solver(p);
        Ok(())
    }
}

/// Apply the hook in place to `x` (`[n_rows, d_in]`, `x_len == n_rows * d_in`) whose
/// first row is at absolute position `pos0`. On error `x` is unchanged unless the
/// error came from the backend mid-way (BACKEND).
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (lengths); NON_FINITE;
/// FILE_CHANGED; BACKEND. Memory: nothing retained after the call.
/// Thread safety: `ctx` by one thread at a time; a configured `hook` is only read,
/// so one hook may be applied from many threads at once (each with its own context).
///
/// Example:
///
/// ```c
/// // In an engine's layer callback: x is [n_tokens, d_model], first token at pos0.
/// saeplug_hook *hook = NULL;
/// float x[3 * 64] = {0}, d3[64];
/// CHECK(saeplug_hook_new(sae, 6, &hook));
/// CHECK(saeplug_hook_set_positions(hook, 2, 0, 0)); // the last token of each batch
/// CHECK(saeplug_hook_add_edit(hook, 0, 3, 8.0f));   // add 8 * d_3
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 3 * 64, 3, 17));
/// CHECK(saeplug_sae_decoder_row(sae, 3, d3, 64));
/// for (int j = 0; j < 64; j++) assert(x[j] == 0.0f && fabsf(x[2 * 64 + j] - 8.0f * d3[j]) < 1e-5f);
/// saeplug_hook_free(hook);
/// ```
///
/// # Safety
/// Handles NULL or live; `x` holds `x_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_hook_apply(
    ctx: *mut saeplug_ctx,
    hook: *const saeplug_hook,
    x: *mut f32,
    x_len: usize,
    n_rows: usize,
    pos0: usize,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, h, x) = unsafe { (borrow_mut(ctx, "ctx")?, &borrow(hook, "hook")?.hook, slice_out(x, x_len, "x")?) };
        h.sae.check_unchanged()?;
        check_shape("x", x.len(), n_rows, h.sae.d_in())?;
        h.apply(ctx.backend(), x, pos0)?;
        Ok(())
    }
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
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let sae = &unsafe { borrow(sae, "sae") }?.sae;
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let r = saeplug_recorder { sae: Arc::clone(sae), rec: Recorder::new(sae.d_sae(), top_n) };
        // SAFETY: non-null, writable.
        unsafe { *out = Box::into_raw(Box::new(r)) };
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
    if !rec.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: from Box::into_raw in saeplug_recorder_new, freed once.
            drop(unsafe { Box::from_raw(rec) });
        }));
    }
}

/// Encode `x` (`[n_rows, d_in]`, first row at position `pos0`) and add it to the
/// statistics.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (lengths); NON_FINITE;
/// FILE_CHANGED. Memory: the recorder keeps counts, sums and its top positions;
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
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, r, x) = unsafe { (borrow_mut(ctx, "ctx")?, borrow_mut(rec, "rec")?, slice_in(x, x_len, "x")?) };
        r.sae.check_unchanged()?;
        check_shape("x", x.len(), n_rows, r.sae.d_in())?;
        let codes = ctx.backend().encode_sparse(&r.sae, x)?;
        r.rec.record(&codes, pos0 as u64)?;
        Ok(())
    }
}

/// Statistics of one feature: times fired, mean activation over all recorded
/// tokens, and the strongest recorded activation (0 if it never fired).
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (feature >= d_sae).
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
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (r, count, mean, max) = unsafe {
            (borrow(rec, "rec")?, borrow_mut(count, "count")?, borrow_mut(mean, "mean")?, borrow_mut(max, "max")?)
        };
        let i = feature as usize;
        if i >= r.sae.d_sae() {
            return Err(FfiError::invalid(format!("feature {i} >= d_sae {}", r.sae.d_sae())));
        }
        *count = r.rec.firing_counts()[i];
        *mean = r.rec.mean_activation()[i] as f32;
        *max = r.rec.top(i).first().map_or(0.0, |t| t.0);
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
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (r, path) = unsafe { (borrow(rec, "rec")?, c_str(path, "path")?) };
        r.rec.write_json(std::path::Path::new(path))?;
        Ok(())
    }
}

/// Copy decoder row `feature` (`d_in` floats) into `out`.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (feature >= d_sae,
/// `len != d_in`). Memory: copies; nothing retained. Thread safety: any thread.
///
/// Example:
///
/// ```c
/// float d[64], norm = 0.0f;
/// CHECK(saeplug_sae_decoder_row(sae, 42, d, 64)); // feature 42's direction
/// for (int j = 0; j < 64; j++) norm += d[j] * d[j];
/// assert(norm > 0.0f);
/// assert(saeplug_sae_decoder_row(sae, 256, d, 64) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `sae` NULL or live; `out` holds `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_sae_decoder_row(
    sae: *const saeplug_sae,
    feature: u32,
    out: *mut f32,
    len: usize,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (sae, out) = unsafe { (&borrow(sae, "sae")?.sae, slice_out(out, len, "out")?) };
        let (d, i) = (sae.d_in(), feature as usize);
        if i >= sae.d_sae() {
            return Err(FfiError::invalid(format!("feature {i} >= d_sae {}", sae.d_sae())));
        }
        check_shape("out", out.len(), 1, d)?;
        out.copy_from_slice(&sae.weights().w_dec.as_slice()[i * d..(i + 1) * d]);
        Ok(())
    }
}

/// Write a llama.cpp control-vector GGUF: `n_layers` directions of `n_embd`
/// floats (`data` is `[n_layers, n_embd]`), `layers[k] >= 1` the block whose
/// output direction k steers (llama.cpp `direction.N`).
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_UTF8 (paths); INVALID_ARGUMENT
/// (empty, layer 0, duplicate layers, non-finite values); IO.
/// Memory: inputs are read, not retained; the file is written atomically.
/// Thread safety: any thread (distinct paths).
///
/// Example:
///
/// ```c
/// // "4 x feature 3" as a llama.cpp control vector on block 6's output:
/// //   llama-cli -m model.gguf --control-vector steer.gguf
/// float dir[64];
/// uint32_t layer = 6;
/// char path[4096];
/// snprintf(path, sizeof path, "%s/steer.gguf", tmp_dir);
/// CHECK(saeplug_sae_decoder_row(sae, 3, dir, 64));
/// for (int j = 0; j < 64; j++) dir[j] *= 4.0f;
/// CHECK(saeplug_export_cvec(path, "llama", &layer, 1, dir, 64));
/// layer = 0; // llama.cpp has no direction.0
/// assert(saeplug_export_cvec(path, "llama", &layer, 1, dir, 64) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `path`, `model_hint` NUL-terminated; `layers` holds `n_layers`, `data`
/// `n_layers * n_embd` values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_export_cvec(
    path: *const c_char,
    model_hint: *const c_char,
    layers: *const u32,
    n_layers: usize,
    data: *const f32,
    n_embd: usize,
) -> crate::error::saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (path, hint, layers, data) = unsafe {
            (
                c_str(path, "path")?,
                c_str(model_hint, "model_hint")?,
                slice_in(layers, n_layers, "layers")?,
                slice_in(data, n_layers.saturating_mul(n_embd), "data")?,
            )
        };
        let dirs: Vec<(u32, Vec<f32>)> = layers
            .iter()
            .zip(data.chunks_exact(n_embd.max(1)))
            .map(|(l, v)| (*l, v.to_vec()))
            .collect();
        saeplug::cvec::write_control_vector(std::path::Path::new(path), hint, &dirs)?;
        Ok(())
    }
}
