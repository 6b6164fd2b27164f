//! ITO solvers through the C ABI.

use saeplug::solve::SolverParams;

use crate::ctx::saeplug_ctx;
use crate::enums::{code, saeplug_solver};
use crate::error::{FfiError, saeplug_status};
use crate::handle::{
    borrow, borrow_mut, check_disjoint, check_shape, input, output, slice_in, slice_out, write_csr,
};
use crate::sae::saeplug_sae;

/// Inference-time optimisation: sparse-code each row of `x` on the SAE's decoder
/// (min ||x - b_dec - a W_dec||, ||a||_0 <= k_max, a >= 0 when `nonnegative`),
/// instead of using its encoder. Output is CSR as for `saeplug_ctx_encode_sparse`,
/// in the SAE's code units (decode with `saeplug_ctx_decode_sparse`).
///
/// Parameters: `solver` a `saeplug_solver`; `k_max` in 1..=d_sae; `tol` stops a
/// row once its residual norm is below it (0 = never); `iters` and `residuals`
/// may be NULL or hold `n_rows` entries (steps taken, final residual norm).
/// Returns: OK; BUFFER_TOO_SMALL (needed capacity in `*out_nnz`); INVALID_ARGUMENT
/// (unknown solver, k_max out of range, bad tol, lengths); NON_FINITE; UNSUPPORTED
/// (SAEs that normalise their input); INVALID_ARGUMENT when an output buffer
/// overlaps another buffer. On failure no output is written (BUFFER_TOO_SMALL
/// writes `*out_nnz` only).
/// Backend: runs on the context's backend with its thread count: MP, GP and
/// OMP's correlations on the GPU of a GPU context; OMP keeps its per-row
/// Cholesky refits on the CPU (the host) on every backend. GPU and CPU results agree to float
/// rounding (supports equal, values within about 1e-4 relative).
/// Thread safety: as for `saeplug_ctx_encode`.
/// Memory: nothing retained after the call.
///
/// Example:
///
/// ```c
/// float x[2 * 64], val[2 * 8], res[2], recon[2 * 64];
/// size_t offs[3], nnz = 0;
/// uint32_t idx[2 * 8], iters[2];
/// for (int i = 0; i < 2 * 64; i++) x[i] = sinf(0.2f * (float)i);
/// CHECK(saeplug_ctx_solve(ctx, sae, SAEPLUG_SOLVER_OMP, 8, 1, 0.0f, x, 2 * 64, 2,
///                         offs, idx, val, 2 * 8, &nnz, iters, res));
/// CHECK(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, val, nnz, 2, recon, 2 * 64));
/// for (int r = 0; r < 2; r++) {
///     float e = 0.0f;
///     assert(offs[r + 1] - offs[r] <= 8 && iters[r] <= 8);
///     for (int j = 0; j < 64; j++) e += (x[r * 64 + j] - recon[r * 64 + j]) * (x[r * 64 + j] - recon[r * 64 + j]);
///     assert(fabsf(sqrtf(e) - res[r]) <= 1e-3f * (1.0f + res[r])); // the reported residual
/// }
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_solve(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    solver: u32,
    k_max: u32,
    nonnegative: u32,
    tol: f32,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
    row_offsets: *mut usize,
    indices: *mut u32,
    values: *mut f32,
    capacity: usize,
    out_nnz: *mut usize,
    iters: *mut u32,
    residuals: *mut f32,
) -> saeplug_status {
    ffi_boundary! {
        check_disjoint(&[
            input(x, x_len, "x"),
            output(row_offsets, n_rows.saturating_add(1), "row_offsets"),
            output(indices, capacity, "indices"),
            output(values, capacity, "values"),
            output(out_nnz, 1, "out_nnz"),
            output(iters, if iters.is_null() { 0 } else { n_rows }, "iters"),
            output(residuals, if residuals.is_null() { 0 } else { n_rows }, "residuals"),
        ])?;
        // SAFETY: caller contract above (each helper checks NULL and alignment);
        // no output overlaps another buffer.
        let (ctx, sae, x, offs, idx, val, nnz_out) = unsafe {
            (
                borrow_mut(ctx, "ctx")?,
                &borrow(sae, "sae")?.sae,
                slice_in(x, x_len, "x")?,
                slice_out(row_offsets, n_rows.saturating_add(1), "row_offsets")?,
                slice_out(indices, capacity, "indices")?,
                slice_out(values, capacity, "values")?,
                borrow_mut(out_nnz, "out_nnz")?,
            )
        };
        // SAFETY: optional outputs: NULL or n_rows writable elements.
        let it = if iters.is_null() { None } else { Some(unsafe { slice_out(iters, n_rows, "iters") }?) };
        // SAFETY: as above.
        let rs = if residuals.is_null() { None } else { Some(unsafe { slice_out(residuals, n_rows, "residuals") }?) };
        sae.check_unchanged()?;
        check_shape("x", x.len(), n_rows, sae.d_in())?;
        let s: saeplug_solver = code("solver", solver)?;
        let mut p = SolverParams::new(s.into(), k_max as usize);
        p.nonnegative = nonnegative != 0;
        p.tol = tol;
        let (codes, info) = ctx.backend().solve(sae, x, &p)?;
        write_csr(&codes, offs, idx, val, nnz_out)?;
        if let Some(it) = it {
            it.copy_from_slice(&info.iters);
        }
        if let Some(rs) = rs {
            rs.copy_from_slice(&info.residual);
        }
        Ok(())
    }
}

/// Express the steering vector `v` (`v_len == d_in`) in SAE features: signed
/// ITO on the decoder rows (`v ≈ Σ c_i d_i`, no decoder bias, at most `k_max`
/// features), as `saeplug decompose` does. Writes the features, strongest
/// |coefficient| first, to `features`/`coefs` (`capacity` entries each) and
/// their count to `*out_n`; `cosine` and `rel_error` (may be NULL) receive the
/// cosine between `v` and its recomposition and `‖v − Σ c_i d_i‖ / ‖v‖`.
///
/// Parameters: `solver` a `saeplug_solver`; `k_max` in 1..=d_sae.
/// Returns: OK; BUFFER_TOO_SMALL (the count needed in `*out_n`, nothing else
/// written); INVALID_ARGUMENT (unknown solver, k_max out of range, length,
/// overlapping buffers); NON_FINITE; UNSUPPORTED (SAEs that normalise their input).
/// Backend: the context's, as `saeplug_ctx_solve`.
/// Thread safety: as for `saeplug_ctx_encode`. Memory: nothing retained.
///
/// Example:
///
/// ```c
/// float v[64], coef[4], d[64];
/// uint32_t feat[4];
/// size_t n = 0;
/// double cosine = 0.0;
/// CHECK(saeplug_sae_decoder_row(sae, 5, d, 64));
/// for (int j = 0; j < 64; j++) v[j] = -2.0f * d[j]; // minus twice feature 5's row
/// CHECK(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, v, 64, feat, coef, 4, &n,
///                                &cosine, NULL));
/// assert(n >= 1 && feat[0] == 5 && fabsf(coef[0] + 2.0f) < 1e-3f && cosine > 0.999);
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_decompose_vector(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    solver: u32,
    k_max: u32,
    v: *const f32,
    v_len: usize,
    features: *mut u32,
    coefs: *mut f32,
    capacity: usize,
    out_n: *mut usize,
    cosine: *mut f64,
    rel_error: *mut f64,
) -> saeplug_status {
    ffi_boundary! {
        check_disjoint(&[
            input(v, v_len, "v"),
            output(features, capacity, "features"),
            output(coefs, capacity, "coefs"),
            output(out_n, 1, "out_n"),
            output(cosine, usize::from(!cosine.is_null()), "cosine"),
            output(rel_error, usize::from(!rel_error.is_null()), "rel_error"),
        ])?;
        // SAFETY: caller contract above (each helper checks NULL and alignment);
        // no output overlaps another buffer.
        let (ctx, sae, v, feat, coef, n_out) = unsafe {
            (
                borrow_mut(ctx, "ctx")?,
                &borrow(sae, "sae")?.sae,
                slice_in(v, v_len, "v")?,
                slice_out(features, capacity, "features")?,
                slice_out(coefs, capacity, "coefs")?,
                borrow_mut(out_n, "out_n")?,
            )
        };
        sae.check_unchanged()?;
        check_shape("v", v.len(), 1, sae.d_in())?;
        let s: saeplug_solver = code("solver", solver)?;
        let mut p = SolverParams::new(s.into(), k_max as usize);
        p.nonnegative = false;
        p.validate(sae)?;
        let d = saeplug::decompose::decompose_vector(ctx.backend(), sae, v, &p)?;
        let n = d.features.len();
        if n > capacity {
            *n_out = n;
            return Err(FfiError::new(
                saeplug_status::BufferTooSmall,
                format!("the decomposition has {n} features, capacity is {capacity}"),
            ));
        }
        for (j, &(i, c)) in d.features.iter().enumerate() {
            feat[j] = i as u32;
            coef[j] = c;
        }
        *n_out = n;
        if !cosine.is_null() {
            // SAFETY: non-NULL, checked aligned and disjoint above; one element.
            unsafe { *borrow_mut(cosine, "cosine")? = d.cosine };
        }
        if !rel_error.is_null() {
            // SAFETY: as above.
            unsafe { *borrow_mut(rel_error, "rel_error")? = d.rel_error };
        }
        Ok(())
    }
}
