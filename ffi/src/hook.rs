//! Steering hooks through the C ABI: create, configure, apply.

use std::sync::Arc;

use saeplug::hook::Hook;
use saeplug::solve::SolverParams;
use saeplug::steer::{Edit, FeatureSource};

use crate::ctx::saeplug_ctx;
use crate::enums::{code, positions, saeplug_edit_kind, saeplug_replace, saeplug_solver};
use crate::error::{FfiError, saeplug_status};
use crate::handle::{HandleOut, borrow, borrow_mut, check_shape, free_handle, slice_in, slice_out};
use crate::sae::saeplug_sae;

/// The largest layer index accepted: layers are C `int`s in engines, so a larger
/// `uint32_t` is a negative number passed by mistake.
pub(crate) const MAX_LAYER: u32 = i32::MAX as u32;

/// Refuse a layer index beyond `MAX_LAYER`, naming the parameter.
pub(crate) fn check_layer(name: &str, layer: u32) -> Result<(), FfiError> {
    if layer > MAX_LAYER {
        return Err(FfiError::invalid(format!(
            "'{name}' = {layer} is out of range (at most {MAX_LAYER}; a negative int \
             converted to uint32_t?)"
        )));
    }
    Ok(())
}

/// Refuse a batch whose positions `pos0 .. pos0 + n_rows` do not fit in a size_t.
pub(crate) fn check_positions(pos0: usize, n_rows: usize) -> Result<(), FfiError> {
    if pos0.checked_add(n_rows).is_none() {
        return Err(FfiError::invalid(format!(
            "positions overflow: 'pos0' = {pos0} + 'n_rows' = {n_rows} exceeds SIZE_MAX"
        )));
    }
    Ok(())
}

/// A steering hook: an SAE, a layer, positions and edits. Holds its own reference
/// to the SAE (freeing the SAE handle first is allowed). Owned by the caller of
/// `saeplug_hook_new`; free with `saeplug_hook_free`. Configure from one thread;
/// once configured it may be applied from any thread (read-only).
pub struct saeplug_hook {
    hook: Hook,
}

/// Create a hook on `layer` with no edits, on all positions.
///
/// Memory: on success `*out` owns a new hook (free with `saeplug_hook_free`).
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT for a layer above INT32_MAX (a
/// negative `int` converted). The hook holds its own reference to the SAE, so
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
/// assert(saeplug_hook_new(sae, (uint32_t)-1, &hook) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `sae` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_hook_new(
    sae: *const saeplug_sae,
    layer: u32,
    out: *mut *mut saeplug_hook,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let sae = unsafe { borrow(sae, "sae") }?;
        let out = HandleOut::new(out, "out")?;
        check_layer("layer", layer)?;
        // SAFETY: writable per the caller contract.
        unsafe { out.set(saeplug_hook { hook: Hook::new(Arc::clone(&sae.sae), layer) }) };
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
    ffi_boundary_value! { ();
        // SAFETY: NULL or from saeplug_hook_new, freed once (caller contract).
        unsafe { free_handle(hook) }
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
    ffi_boundary_value! { 0;
        // SAFETY: caller contract; `as_ref` handles NULL.
        unsafe { hook.as_ref() }.map_or(0, |h| h.hook.layer)
    }
}

/// Choose positions: `kind` a `saeplug_positions` value: ALL, FIRST (the first `a`
/// positions), LAST (the last row of each batch) or RANGE (add the range `[a, b)`;
/// ranges accumulate).
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT for an unknown kind or an empty
/// range (the hook is unchanged).
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
/// CHECK(saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_RANGE, 4, 8)); // positions 4, 5, 6, 7
/// CHECK(saeplug_hook_add_vector(hook, v, 64, 0.5f));
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 10 * 64, 10, 0));
/// for (int r = 0; r < 10; r++) assert(x[r * 64] == ((r >= 4 && r < 8) ? 0.5f : 0.0f));
/// assert(saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_RANGE, 5, 5) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// assert(saeplug_hook_set_positions(hook, 4, 0, 1) == SAEPLUG_STATUS_INVALID_ARGUMENT); // no such kind
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
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        h.positions = positions(code("kind", kind)?, a, b, &mut h.positions)?;
        Ok(())
    }
}

/// Add a feature edit: `kind` a `saeplug_edit_kind` value: ADD `value * d_feature`,
/// CLAMP to `value`, ABLATE (value ignored), SCALE by `value`. The feature index
/// and value are checked against the SAE (INVALID_ARGUMENT).
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
/// CHECK(saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_CLAMP, best, 2.0f * f[best])); // twice its value
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 64, 1, 0));
/// // Error-preserving: x moved by (target - f) along the feature's decoder row.
/// CHECK(saeplug_sae_decoder_row(sae, best, d, 64));
/// for (int j = 0; j < 64; j++) assert(fabsf(x[j] - (before[j] + f[best] * d[j])) < 1e-4f);
/// assert(saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_CLAMP, 256, 1.0f) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// assert(saeplug_hook_add_edit(hook, 9, 0, 1.0f) == SAEPLUG_STATUS_INVALID_ARGUMENT); // no such kind
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
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        let kind: saeplug_edit_kind = code("kind", kind)?;
        let feature = feature as usize;
        if feature >= h.sae.d_sae() {
            return Err(FfiError::invalid(format!("'feature' = {feature} >= d_sae {}", h.sae.d_sae())));
        }
        if !value.is_finite() {
            return Err(FfiError::invalid(format!("'value' = {value} is not finite")));
        }
        h.edits.push(match kind {
            saeplug_edit_kind::Add => Edit::AddFeature { feature, coef: value },
            saeplug_edit_kind::Clamp => Edit::Clamp { feature, value },
            saeplug_edit_kind::Ablate => Edit::Ablate { feature },
            saeplug_edit_kind::Scale => Edit::Scale { feature, factor: value },
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
) -> saeplug_status {
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

/// Reconstruction mode: `mode` a `saeplug_replace` value: NONE (edits only),
/// WITH_ERROR (reconstruction with the error term kept), RECONSTRUCTION_ONLY
/// (the error term dropped).
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
/// CHECK(saeplug_hook_set_replace(hook, SAEPLUG_REPLACE_RECONSTRUCTION_ONLY)); // x becomes its reconstruction
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
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        h.replace = code::<saeplug_replace>("mode", mode)?.into();
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
/// CHECK(saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_ABLATE, 5, 0.0f)); // ablate feature 5
/// CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 64, 1, 0));
/// assert(saeplug_hook_set_solver(hook, SAEPLUG_SOLVER_GP, 257) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// CHECK(saeplug_hook_set_solver(hook, SAEPLUG_SOLVER_MP, 0)); // k_max 0: back to the encoder
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
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let h = &mut unsafe { borrow_mut(hook, "hook") }?.hook;
        if k_max == 0 {
            h.source = FeatureSource::Encoder;
            return Ok(());
        }
        let s: saeplug_solver = code("solver", solver)?;
        let p = SolverParams::new(s.into(), k_max as usize);
        p.validate(&h.sae)?;
        h.source = FeatureSource::Solver(p);
        Ok(())
    }
}

/// Apply the hook in place to `x` (`[n_rows, d_in]`, `x_len == n_rows * d_in`) whose
/// first row is at absolute position `pos0`, on the context's backend and threads
/// (activations read from a solver, `saeplug_hook_set_solver`, included). On
/// any error `x` is left as it was.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (lengths, `pos0 +
/// n_rows` overflowing size_t); NON_FINITE (NaN/inf in `x`, or a result that
/// overflows); FILE_CHANGED; BACKEND. Memory: nothing retained after the call.
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
/// CHECK(saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_LAST, 0, 0)); // the last token of each batch
/// CHECK(saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_ADD, 3, 8.0f));     // add 8 * d_3
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
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, h, x) = unsafe { (borrow_mut(ctx, "ctx")?, &borrow(hook, "hook")?.hook, slice_out(x, x_len, "x")?) };
        h.sae.check_unchanged()?;
        check_shape("x", x.len(), n_rows, h.sae.d_in())?;
        check_positions(pos0, n_rows)?;
        h.apply(ctx.backend(), x, pos0)?;
        Ok(())
    }
}
