//! Error-preserving feature edits (ALGORITHMS.md): `out = x + (f' - f) W_dec`.
//! An edit touching feature `i` computes only `f_i` (O(d_in)) for standard,
//! jumprelu and gated SAEs on the CPU; top-k SAEs need the whole row's k-th
//! value, so they encode that row. The work runs on the backend given
//! ([`crate::Backend::steer`]); this module holds the types and the entry points.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::steer::{Edit, apply_edits, feature_activation};
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let cpu = saeplug::CpuBackend::new(1);
//! let mut x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
//! // A feature that fires on x: clamping it moves its activation exactly there.
//! let i = (0..64).find(|&i| feature_activation(&cpu, &sae, &x, i).is_ok_and(|a| a > 0.0)).unwrap();
//! apply_edits(&cpu, &sae, &mut x, &[Edit::Clamp { feature: i, value: 3.0 }], None)?;
//! assert!((feature_activation(&cpu, &sae, &x, i)? - 3.0).abs() < 1e-4);
//! # Ok(()) }
//! ```

use crate::backend::Backend;
pub use crate::backend::edits::validate_edits;
use crate::error::Result;
pub use crate::params::{Edit, FeatureSource};
use crate::sae::Sae;

/// Activation of the single feature `i` for one input row, on `backend`
/// (the CPU computes only that feature for standard/jumprelu/gated SAEs).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend, steer::feature_activation};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::JumpRelu, 3)?;
/// let x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
/// let cpu = CpuBackend::new(1);
/// let mut f = vec![0.0; 64];
/// cpu.encode(&sae, &x, &mut f)?;
/// for i in [0, 17, 63] {
///     assert!((feature_activation(&cpu, &sae, &x, i)? - f[i]).abs() < 1e-5);
/// }
/// # Ok(()) }
/// ```
pub fn feature_activation(backend: &dyn Backend, sae: &Sae, x: &[f32], i: usize) -> Result<f32> {
    backend.feature_activation(sae, x, i)
}

/// Apply `edits` in place to every row of `x` (`[n, d_in]`) selected by `rows`
/// (`None` = all rows), reading activations from the SAE's encoder.
/// Feature activations are read from the unedited row; on error `x` is unchanged.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::steer::{Edit, apply_edits};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let mut x = saeplug::synthetic::Rng::new(2).normal_vec(2 * 16, 1.0);
/// let before = x.clone();
/// let cpu = saeplug::CpuBackend::new(1);
/// apply_edits(&cpu, &sae, &mut x, &[Edit::AddVector { vector: vec![1.0; 16], coef: 0.5 }], Some(&[0]))?;
/// assert!(x[..16].iter().zip(&before).all(|(a, b)| (a - b - 0.5).abs() < 1e-6));
/// assert_eq!(x[16..], before[16..]);
/// # Ok(()) }
/// ```
pub fn apply_edits(
    backend: &dyn Backend,
    sae: &Sae,
    x: &mut [f32],
    edits: &[Edit],
    rows: Option<&[usize]>,
) -> Result<()> {
    backend.steer(sae, x, edits, rows, &FeatureSource::Encoder)
}

/// [`apply_edits`] with the activations taken from `source` (an ITO solver runs
/// on `backend` too).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::solve::{Solver, SolverParams};
/// use saeplug::steer::{Edit, FeatureSource, apply_edits, apply_edits_with};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let cpu = saeplug::CpuBackend::new(1);
/// let x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
/// let edit = [Edit::Scale { feature: 5, factor: 2.0 }];
/// let (mut a, mut b) = (x.clone(), x.clone());
/// apply_edits(&cpu, &sae, &mut a, &edit, None)?;
/// apply_edits_with(&cpu, &sae, &mut b, &edit, None, &FeatureSource::Encoder)?;
/// assert_eq!(a, b);
/// // Read the activation to ablate from an 8-sparse gradient-pursuit code.
/// let source = FeatureSource::Solver(SolverParams::new(Solver::GradientPursuit, 8));
/// apply_edits_with(&cpu, &sae, &mut b, &[Edit::Ablate { feature: 4 }], None, &source)?;
/// # Ok(()) }
/// ```
pub fn apply_edits_with(
    backend: &dyn Backend,
    sae: &Sae,
    x: &mut [f32],
    edits: &[Edit],
    rows: Option<&[usize]>,
    source: &FeatureSource,
) -> Result<()> {
    backend.steer(sae, x, edits, rows, source)
}
