//! Parameter and data types shared by the algorithm modules and the backends:
//! solver settings and outcomes, feature edits and where edits read activations
//! from. They live below the `Backend` trait so that a backend never imports an
//! algorithm module (DESIGN.md, layering rules); `saeplug::solve` and
//! `saeplug::steer` re-export them.
//!
//! ```
//! use saeplug::params::{Edit, FeatureSource, Solver, SolverParams};
//! let p = SolverParams::new(Solver::GradientPursuit, 16);
//! let source = FeatureSource::Solver(p);
//! let edit = Edit::Clamp { feature: 3, value: 2.0 };
//! assert!(matches!(source, FeatureSource::Solver(_)));
//! assert!(matches!(edit, Edit::Clamp { .. }));
//! ```

use crate::error::{Error, Result};
use crate::sae::{Normalization, Sae};

/// Which sparse solver.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::solve::Solver;
/// assert_eq!(Solver::parse("omp")?, Solver::OrthogonalMatchingPursuit);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// Matching pursuit: only the chosen coordinate moves.
    MatchingPursuit,
    /// Orthogonal matching pursuit: least-squares refit on the support each step.
    OrthogonalMatchingPursuit,
    /// Gradient pursuit with the exact line-search step (Blumensath & Davies 2008).
    GradientPursuit,
}

impl Solver {
    /// Parse `mp`, `omp` or `gp`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::solve::Solver;
    /// assert_eq!(Solver::parse("mp")?, Solver::MatchingPursuit);
    /// assert_eq!(Solver::parse("gp")?, Solver::GradientPursuit);
    /// assert!(Solver::parse("lasso").is_err());
    /// # Ok(()) }
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "mp" => Ok(Solver::MatchingPursuit),
            "omp" => Ok(Solver::OrthogonalMatchingPursuit),
            "gp" => Ok(Solver::GradientPursuit),
            other => Err(Error::invalid(format!(
                "unknown solver '{other}' (mp, omp, gp)"
            ))),
        }
    }
}

/// Solver settings. `Default`: gradient pursuit, k_max 32, nonnegative, no tolerance.
///
/// ```
/// use saeplug::solve::{Solver, SolverParams};
/// let mut p = SolverParams::new(Solver::MatchingPursuit, 16);
/// p.tol = 1e-3;         // stop a row once its residual norm is below this
/// p.nonnegative = false; // signed codes
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SolverParams {
    /// Algorithm.
    pub solver: Solver,
    /// Maximum number of steps, an upper bound on L0.
    pub k_max: usize,
    /// Stop a row once its residual norm is below this (0 = run all k_max steps).
    pub tol: f32,
    /// Constrain coefficients to be >= 0 (SAE-like codes); otherwise signed.
    pub nonnegative: bool,
}

impl Default for SolverParams {
    fn default() -> Self {
        SolverParams {
            solver: Solver::GradientPursuit,
            k_max: 32,
            tol: 0.0,
            nonnegative: true,
        }
    }
}

impl SolverParams {
    /// Settings for `solver` with `k_max` steps (nonnegative, no tolerance).
    ///
    /// ```
    /// use saeplug::solve::{Solver, SolverParams};
    /// let p = SolverParams::new(Solver::GradientPursuit, 32);
    /// assert_eq!((p.k_max, p.tol, p.nonnegative), (32, 0.0, true));
    /// ```
    pub fn new(solver: Solver, k_max: usize) -> Self {
        SolverParams {
            solver,
            k_max,
            ..Default::default()
        }
    }

    /// Check against an SAE.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::solve::{Solver, SolverParams};
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 3)?;
    /// assert!(SolverParams::new(Solver::GradientPursuit, 32).validate(&sae).is_ok());
    /// assert!(SolverParams::new(Solver::GradientPursuit, 33).validate(&sae).is_err()); // k > d_sae
    /// assert!(SolverParams::new(Solver::GradientPursuit, 0).validate(&sae).is_err());
    /// # Ok(()) }
    /// ```
    pub fn validate(&self, sae: &Sae) -> Result<()> {
        if self.k_max == 0 {
            return Err(Error::invalid("k_max must be at least 1"));
        }
        if self.k_max > sae.d_sae() {
            return Err(Error::invalid(format!(
                "k_max = {} > d_sae = {}",
                self.k_max,
                sae.d_sae()
            )));
        }
        if !self.tol.is_finite() || self.tol < 0.0 {
            return Err(Error::invalid(format!(
                "tol = {} must be finite and >= 0",
                self.tol
            )));
        }
        if sae.config().normalization != Normalization::None {
            return Err(Error::Unsupported(
                "ITO on SAEs that normalise their input".into(),
            ));
        }
        Ok(())
    }
}

/// Per-row outcome of a solve.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::solve::{Solver, SolverParams, solve};
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
/// let x = saeplug::synthetic::sparse_data(&sae, 2, 2, 0.0, 1);
/// let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 10);
/// p.tol = 1e-4;
/// let (_, info) = solve(&saeplug::CpuBackend::new(1), &sae, &x, &p)?;
/// assert!(info.iters.iter().all(|&i| i < 10)); // 2-sparse rows stop early
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SolveInfo {
    /// Steps taken per row (< k_max when a row stopped early).
    pub iters: Vec<u32>,
    /// Final residual norm `||x - b_dec - a W_dec||` per row.
    pub residual: Vec<f32>,
}

/// One edit of one feature (or a raw vector).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::steer::{Edit, apply_edits, feature_activation};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let mut x = saeplug::synthetic::Rng::new(2).normal_vec(2 * 16, 1.0);
/// let edits = [
///     Edit::Ablate { feature: 1 },
///     Edit::Scale { feature: 2, factor: 0.5 },
///     Edit::AddFeature { feature: 3, coef: 4.0 },
///     Edit::AddVector { vector: vec![0.01; 16], coef: 1.0 },
/// ];
/// let cpu = saeplug::CpuBackend::new(1);
/// apply_edits(&cpu, &sae, &mut x, &edits, None)?;
/// assert!(feature_activation(&cpu, &sae, &x[..16], 1)? < 0.1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// `x += c * d_i`.
    AddFeature {
        /// Feature index.
        feature: usize,
        /// Coefficient.
        coef: f32,
    },
    /// `x += (v - f_i(x)) d_i`.
    Clamp {
        /// Feature index.
        feature: usize,
        /// Target activation.
        value: f32,
    },
    /// `x -= f_i(x) d_i`.
    Ablate {
        /// Feature index.
        feature: usize,
    },
    /// `x += (s - 1) f_i(x) d_i`.
    Scale {
        /// Feature index.
        feature: usize,
        /// Factor.
        factor: f32,
    },
    /// `x += c * v`.
    AddVector {
        /// Direction, length d_in.
        vector: Vec<f32>,
        /// Coefficient.
        coef: f32,
    },
}

/// Where edits read the current feature activations `f_i(x)` from.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::solve::{Solver, SolverParams};
/// use saeplug::steer::{Edit, FeatureSource, apply_edits_with};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let mut x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
/// // Read the activation to ablate from an 8-sparse gradient-pursuit code.
/// let source = FeatureSource::Solver(SolverParams::new(Solver::GradientPursuit, 8));
/// apply_edits_with(&saeplug::CpuBackend::new(1), &sae, &mut x, &[Edit::Ablate { feature: 4 }], None, &source)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub enum FeatureSource {
    /// The SAE's own encoder (only the edited features are computed).
    #[default]
    Encoder,
    /// An ITO solver on the decoder (`crate::solve`), run on each selected row.
    Solver(SolverParams),
}
