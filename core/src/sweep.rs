//! L0 vs reconstruction sweeps: the SAE's own encoder against each ITO solver at
//! several k on the same inputs (ALGORITHMS.md, GDM's comparison).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! let report = saeplug::sweep::sweep_synthetic(&saeplug::CpuBackend::new(1), &[4, 8], 1)?;
//! println!("{}", report.table());
//! // Gradient pursuit at k = 8 reconstructs the 5-sparse data better than the encoder.
//! let gp8 = report.points.iter().find(|p| p.method == "gp" && p.k == Some(8)).unwrap();
//! assert!(gp8.fvu < report.encoder.fvu);
//! # Ok(()) }
//! ```

use crate::backend::{Backend, SparseCodes};
use crate::error::Result;
use crate::params::{Solver, SolverParams};
use crate::sae::{Architecture, Sae};
use crate::synthetic::{random_sae, sparse_data};

/// One point of the frontier.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let r = saeplug::sweep::sweep_synthetic(&saeplug::CpuBackend::new(1), &[2], 1)?;
/// let p = &r.points[0];
/// assert_eq!(p.k, Some(2));
/// assert!(p.l0 <= 2.0 && p.fvu >= 0.0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Point {
    /// "encoder", "mp", "omp" or "gp".
    pub method: &'static str,
    /// k_max for solvers.
    pub k: Option<usize>,
    /// Mean number of nonzero codes per row.
    pub l0: f64,
    /// Fraction of variance unexplained.
    pub fvu: f64,
}

/// A finished sweep, holding what is needed to evaluate more points.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let r = saeplug::sweep::sweep_synthetic(&saeplug::CpuBackend::new(1), &[4], 1)?;
/// assert_eq!(r.encoder.method, "encoder");
/// assert_eq!(r.points.len(), 3); // mp, omp, gp at k = 4
/// # Ok(()) }
/// ```
pub struct SweepReport {
    /// The SAE swept.
    pub sae: Sae,
    /// The inputs `[n, d_in]`.
    pub x: Vec<f32>,
    /// The SAE's own encoder.
    pub encoder: Point,
    /// Every solver at every k.
    pub points: Vec<Point>,
}

/// Fraction of variance unexplained: `sum ||x - x̂||² / sum ||x - mean(x)||²`.
///
/// ```
/// use saeplug::sweep::fvu;
/// let x = [1.0, 2.0, 3.0, 4.0]; // two rows of d = 2
/// assert_eq!(fvu(&x, &x, 2), 0.0); // perfect
/// let mean = [2.0, 3.0, 2.0, 3.0];
/// assert!((fvu(&x, &mean, 2) - 1.0).abs() < 1e-12); // predicting the mean explains nothing
/// ```
pub fn fvu(x: &[f32], recon: &[f32], d: usize) -> f64 {
    let n = x.len() / d.max(1);
    if n == 0 {
        return 0.0;
    }
    let mut mean = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m += *v as f64 / n as f64);
    }
    let err: f64 = x
        .iter()
        .zip(recon)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let var: f64 = x
        .chunks_exact(d)
        .flat_map(|r| r.iter().zip(&mean).map(|(a, m)| (*a as f64 - m).powi(2)))
        .sum();
    err / var.max(f64::MIN_POSITIVE)
}

fn point(
    backend: &dyn Backend,
    sae: &Sae,
    x: &[f32],
    codes: &SparseCodes,
    method: &'static str,
    k: Option<usize>,
) -> Result<Point> {
    let mut recon = vec![0.0; x.len()];
    backend.decode_sparse(sae, codes, &mut recon)?;
    Ok(Point {
        method,
        k,
        l0: codes.indices.len() as f64 / codes.n_rows().max(1) as f64,
        fvu: fvu(x, &recon, sae.d_in()),
    })
}

/// Evaluate `solver` at `k` on the report's SAE and inputs.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{solve::Solver, sweep::{run_solver, sweep_synthetic}};
/// let r = sweep_synthetic(&saeplug::CpuBackend::new(1), &[], 1)?;
/// let omp = run_solver(&saeplug::CpuBackend::new(1), &r, Solver::OrthogonalMatchingPursuit, 5)?;
/// assert!(omp.fvu < 0.1);
/// # Ok(()) }
/// ```
pub fn run_solver(
    backend: &dyn Backend,
    r: &SweepReport,
    solver: Solver,
    k: usize,
) -> Result<Point> {
    let (codes, _) = backend.solve(&r.sae, &r.x, &SolverParams::new(solver, k))?;
    let name = match solver {
        Solver::MatchingPursuit => "mp",
        Solver::OrthogonalMatchingPursuit => "omp",
        Solver::GradientPursuit => "gp",
    };
    point(backend, &r.sae, &r.x, &codes, name, Some(k))
}

/// Sweep `sae` on `x` for every k in `ks` (values above d_sae are skipped).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::JumpRelu, 3)?;
/// let x = saeplug::synthetic::sparse_data(&sae, 16, 3, 0.01, 1);
/// let r = saeplug::sweep::sweep(&saeplug::CpuBackend::new(1), sae, x, &[2, 4, 1000])?; // k = 1000 > d_sae: skipped
/// assert_eq!(r.points.len(), 6);
/// # Ok(()) }
/// ```
pub fn sweep(backend: &dyn Backend, sae: Sae, x: Vec<f32>, ks: &[usize]) -> Result<SweepReport> {
    let codes = backend.encode_sparse(&sae, &x)?;
    let encoder = point(backend, &sae, &x, &codes, "encoder", None)?;
    let mut r = SweepReport {
        sae,
        x,
        encoder,
        points: Vec::new(),
    };
    for &k in ks.iter().filter(|&&k| k >= 1 && k <= r.sae.d_sae()) {
        for s in [
            Solver::MatchingPursuit,
            Solver::OrthogonalMatchingPursuit,
            Solver::GradientPursuit,
        ] {
            let p = run_solver(backend, &r, s, k)?;
            r.points.push(p);
        }
    }
    Ok(r)
}

/// A synthetic JumpReLU SAE (d_in 128, d_sae 512, tied weights) and 256 inputs that
/// are sparse nonnegative combinations of 5 of its decoder rows plus noise.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let r = saeplug::sweep::sweep_synthetic(&saeplug::CpuBackend::new(1), &[5], 7)?;
/// assert_eq!((r.sae.d_in(), r.sae.d_sae(), r.x.len()), (128, 512, 256 * 128));
/// # Ok(()) }
/// ```
pub fn sweep_synthetic(backend: &dyn Backend, ks: &[usize], seed: u64) -> Result<SweepReport> {
    let sae = random_sae(128, 512, Architecture::JumpRelu, seed)?;
    let x = sparse_data(&sae, 256, 5, 0.05, seed + 1);
    sweep(backend, sae, x, ks)
}

impl SweepReport {
    /// The sweep as a text table.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let table = saeplug::sweep::sweep_synthetic(&saeplug::CpuBackend::new(1), &[4], 1)?.table();
    /// assert!(table.contains("encoder") && table.contains("omp"));
    /// # Ok(()) }
    /// ```
    pub fn table(&self) -> String {
        let mut s = format!("{:<8} {:>5} {:>8} {:>8}\n", "method", "k", "L0", "FVU");
        let e = &self.encoder;
        s += &format!("{:<8} {:>5} {:>8.2} {:>8.4}\n", e.method, "-", e.l0, e.fvu);
        for p in &self.points {
            s += &format!(
                "{:<8} {:>5} {:>8.2} {:>8.4}\n",
                p.method,
                p.k.map_or("-".into(), |k| k.to_string()),
                p.l0,
                p.fvu
            );
        }
        s
    }
}
