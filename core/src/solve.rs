//! Inference-time optimisation (ALGORITHMS.md): replace the SAE's encoder by a
//! sparse solver on its decoder. Solve, per row,
//! `min_a 1/2 ||x - b_dec - a W_dec||^2` with `||a||_0 <= k_max` (and `a >= 0`
//! for the nonnegative variants) by matching pursuit, orthogonal matching pursuit,
//! or gradient pursuit with the exact line-search step.
//!
//! Batched: every step computes the correlations of all active rows at once with
//! one GEMM (`R W_dec^T`). Atoms need not be unit-norm: selection uses
//! `<r, d_i> / ||d_i||` and MP steps divide by `||d_i||^2`; zero atoms are never
//! chosen. Codes are returned in the SAE's own units, so `Backend::decode_sparse`
//! reconstructs `a W_dec + b_dec` (top-k SAEs that rescale by decoder norms get
//! `a_i ||d_i||`, which their decode divides back).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::solve::{Solver, SolverParams, solve};
//! use saeplug::{Backend, CpuBackend};
//! let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
//! let x = saeplug::synthetic::sparse_data(&sae, 4, 3, 0.0, 1); // 3-sparse rows
//! let cpu = CpuBackend::new(1);
//! let (codes, info) = solve(&cpu, &sae, &x, &SolverParams::new(Solver::GradientPursuit, 8))?;
//! assert!(info.residual.iter().all(|r| *r < 1e-2));
//! let mut recon = vec![0.0; x.len()];
//! cpu.decode_sparse(&sae, &codes, &mut recon)?;
//! # Ok(()) }
//! ```

use crate::backend::{Backend, SparseCodes};
use crate::error::Result;
pub use crate::params::{SolveInfo, Solver, SolverParams};
use crate::sae::Sae;

/// Solve for every row of `x` (`[n, d_in]`).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::solve::{Solver, SolverParams, solve};
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
/// let x = saeplug::synthetic::sparse_data(&sae, 3, 4, 0.01, 2);
/// let (codes, info) = solve(&saeplug::CpuBackend::new(1), &sae, &x, &SolverParams::new(Solver::MatchingPursuit, 6))?;
/// assert_eq!(codes.n_rows(), 3);
/// assert!((0..3).all(|r| codes.row(r).0.len() <= 6));
/// assert_eq!(info.residual.len(), 3);
/// # Ok(()) }
/// ```
pub fn solve(
    backend: &dyn Backend,
    sae: &Sae,
    x: &[f32],
    p: &SolverParams,
) -> Result<(SparseCodes, SolveInfo)> {
    backend.solve(sae, x, p)
}
