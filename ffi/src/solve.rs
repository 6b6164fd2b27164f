//! ITO solvers through the C ABI.

use saeplug::solve::{Solver, SolverParams};

use crate::ctx::saeplug_ctx;
use crate::error::{FfiError, saeplug_status};
use crate::handle::{borrow, borrow_mut, check_shape, slice_in, slice_out, write_csr};
use crate::sae::saeplug_sae;

/// Solver codes for `saeplug_ctx_solve`.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum saeplug_solver {
    /// Matching pursuit.
    Mp = 0,
    /// Orthogonal matching pursuit.
    Omp = 1,
    /// Gradient pursuit with the exact line-search step.
    Gp = 2,
}

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
/// (SAEs that normalise their input). Runs on the CPU whatever the context's backend.
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
        // SAFETY: caller contract above (each helper checks NULL and alignment).
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
        let s = match solver {
            0 => Solver::MatchingPursuit,
            1 => Solver::OrthogonalMatchingPursuit,
            2 => Solver::GradientPursuit,
            s => return Err(FfiError::invalid(format!("unknown solver {s}"))),
        };
        let mut p = SolverParams::new(s, k_max as usize);
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
