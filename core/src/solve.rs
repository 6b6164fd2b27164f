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
#![allow(
    clippy::needless_range_loop,
    reason = "triangular solves index two arrays"
)]

use crate::backend::cpu::CpuBackend;
use crate::backend::cpu::gemm::{MatRef, sgemm_col_blocks};
use crate::backend::{SparseCodes, rows_of};
use crate::error::{Error, Result};
use crate::sae::{Architecture, Normalization, Sae};

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

/// Per-row solver state.
struct RowState {
    support: Vec<usize>,
    coef: Vec<f32>,
    done: bool,
    iters: u32,
    /// OMP: Cholesky factor of the support's Gram matrix (row-major, |S| x |S|).
    chol: Vec<f64>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

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
    cpu: &CpuBackend,
    sae: &Sae,
    x: &[f32],
    p: &SolverParams,
) -> Result<(SparseCodes, SolveInfo)> {
    p.validate(sae)?;
    let n = rows_of(sae, x)?;
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let wd = sae.weights().w_dec.as_slice();
    let norms = sae.decoder_norms();
    let b_dec = sae.weights().b_dec.as_slice();
    // Targets X = x - b_dec and residuals R = X.
    let mut target = x.to_vec();
    for row in target.chunks_exact_mut(d) {
        row.iter_mut().zip(b_dec).for_each(|(v, b)| *v -= b);
    }
    let mut resid = target.clone();
    let mut st: Vec<RowState> = (0..n)
        .map(|_| RowState {
            support: Vec::new(),
            coef: Vec::new(),
            done: false,
            iters: 0,
            chol: Vec::new(),
        })
        .collect();
    let tol2 = p.tol * p.tol;
    for row in st.iter_mut().zip(resid.chunks_exact(d)) {
        if dot(row.1, row.1) <= tol2.max(0.0) && (p.tol > 0.0 || row.1.iter().all(|v| *v == 0.0)) {
            row.0.done = true;
        }
    }
    let mut q = vec![0.0f32; n * ds];
    let wt = MatRef {
        data: wd,
        rows: d,
        cols: ds,
        rs: 1,
        cs: d,
    };
    for _step in 0..p.k_max {
        if st.iter().all(|s| s.done) {
            break;
        }
        // Q = R W_dec^T for the whole batch (stopped rows' residuals are unchanged).
        let a = MatRef {
            data: &resid,
            rows: n,
            cols: d,
            rs: d,
            cs: 1,
        };
        sgemm_col_blocks(a, wt, &mut q, cpu.threads())?;
        for (r, s) in st.iter_mut().enumerate().filter(|(_, s)| !s.done) {
            let qr = &q[r * ds..(r + 1) * ds];
            let rr = &mut resid[r * d..(r + 1) * d];
            let xr = &target[r * d..(r + 1) * d];
            step(p, s, qr, rr, xr, wd, norms, d);
            if !s.done && p.tol > 0.0 && dot(rr, rr) < tol2 {
                s.done = true;
            }
        }
    }
    let rows = st.iter().map(|s| (&s.support[..], &s.coef[..], s.iters));
    Ok(assemble(sae, rows, &resid))
}

/// Feature indices as stored by the CPU (usize) and GPU (u32) solvers.
pub(crate) trait AsIndex: Copy {
    fn index(self) -> usize;
}

impl AsIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl AsIndex for u32 {
    fn index(self) -> usize {
        self as usize
    }
}

/// Codes and info from per-row (support, coefficients, steps) and residuals, in
/// the SAE's units (sorted indices, zeros dropped; top-k SAEs that rescale by
/// decoder norms get `a_i ||d_i||`). Shared by the CPU and GPU solvers.
pub(crate) fn assemble<'a, I: AsIndex + 'a>(
    sae: &Sae,
    rows: impl Iterator<Item = (&'a [I], &'a [f32], u32)>,
    resid: &[f32],
) -> (SparseCodes, SolveInfo) {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let norms = sae.decoder_norms();
    let rescale = matches!(
        sae.config().architecture,
        Architecture::TopK {
            rescale_by_decoder_norm: true,
            ..
        }
    );
    let mut codes = SparseCodes {
        row_offsets: vec![0],
        d_sae: ds,
        ..Default::default()
    };
    let mut info = SolveInfo::default();
    for ((support, coef, iters), rr) in rows.zip(resid.chunks_exact(d.max(1))) {
        let mut pairs: Vec<(usize, f32)> = support
            .iter()
            .map(|&i| i.index())
            .zip(coef.iter().copied())
            .filter(|(_, c)| *c != 0.0)
            .collect();
        pairs.sort_by_key(|(i, _)| *i);
        for (i, c) in pairs {
            codes.indices.push(i as u32);
            codes.values.push(if rescale { c * norms[i] } else { c });
        }
        codes.row_offsets.push(codes.indices.len());
        info.iters.push(iters);
        info.residual.push(dot(rr, rr).sqrt());
    }
    (codes, info)
}

/// Index of the best atom for residual correlations `q`, or None when no atom
/// improves the fit. `exclude` skips atoms already in the support (OMP).
fn select(q: &[f32], norms: &[f32], nonneg: bool, exclude: &[usize]) -> Option<usize> {
    let mut best = None;
    let mut bv = 0.0f32;
    for (i, (&qi, &ni)) in q.iter().zip(norms).enumerate() {
        if ni == 0.0 {
            continue;
        }
        let s = if nonneg { qi / ni } else { (qi / ni).abs() };
        if s > bv && !exclude.contains(&i) {
            bv = s;
            best = Some(i);
        }
    }
    best
}

#[allow(
    clippy::too_many_arguments,
    reason = "one solver step over borrowed row state"
)]
fn step(
    p: &SolverParams,
    s: &mut RowState,
    q: &[f32],
    r: &mut [f32],
    x: &[f32],
    wd: &[f32],
    norms: &[f32],
    d: usize,
) {
    let atom = |i: usize| &wd[i * d..(i + 1) * d];
    match p.solver {
        Solver::MatchingPursuit => {
            let Some(i) = select(q, norms, p.nonnegative, &[]) else {
                s.done = true;
                return;
            };
            let c = q[i] / (norms[i] * norms[i]);
            match s.support.iter().position(|&j| j == i) {
                Some(pos) => s.coef[pos] += c,
                None => {
                    s.support.push(i);
                    s.coef.push(c);
                }
            }
            r.iter_mut().zip(atom(i)).for_each(|(v, a)| *v -= c * a);
            s.iters += 1;
        }
        Solver::GradientPursuit => {
            if let Some(i) = select(q, norms, p.nonnegative, &[])
                && !s.support.contains(&i)
            {
                s.support.push(i);
                s.coef.push(0.0);
            }
            if s.support.is_empty() {
                s.done = true;
                return;
            }
            // G = S * Q, C = G W_dec, eta = <C, R> / <C, C>.
            let mut c = vec![0.0f32; d];
            for &j in &s.support {
                let g = q[j];
                c.iter_mut().zip(atom(j)).for_each(|(v, a)| *v += g * a);
            }
            let cc = dot(&c, &c);
            if cc == 0.0 || !cc.is_finite() {
                s.done = true;
                return;
            }
            let eta = dot(&c, r) / cc;
            for (coef, &j) in s.coef.iter_mut().zip(&s.support) {
                *coef += eta * q[j];
                if p.nonnegative {
                    *coef = coef.max(0.0);
                }
            }
            recompute_residual(s, r, x, wd, d);
            s.iters += 1;
        }
        Solver::OrthogonalMatchingPursuit => {
            let Some(i) = select(q, norms, p.nonnegative, &s.support) else {
                s.done = true;
                return;
            };
            if !chol_add(s, i, wd, d) {
                // The new atom is linearly dependent on the support: nothing to gain.
                s.done = true;
                return;
            }
            s.support.push(i);
            omp_refit(s, x, wd, d, p.nonnegative);
            recompute_residual(s, r, x, wd, d);
            s.iters += 1;
        }
    }
}

fn recompute_residual(s: &RowState, r: &mut [f32], x: &[f32], wd: &[f32], d: usize) {
    r.copy_from_slice(x);
    for (&j, &c) in s.support.iter().zip(&s.coef) {
        if c != 0.0 {
            r.iter_mut()
                .zip(&wd[j * d..(j + 1) * d])
                .for_each(|(v, a)| *v -= c * a);
        }
    }
}

/// Extend the Cholesky factor of the support Gram matrix by atom `i`; false when
/// the atom is (numerically) in the span of the support.
fn chol_add(s: &mut RowState, i: usize, wd: &[f32], d: usize) -> bool {
    let m = s.support.len();
    let ai = &wd[i * d..(i + 1) * d];
    let g: Vec<f64> = s
        .support
        .iter()
        .map(|&j| dot(&wd[j * d..(j + 1) * d], ai) as f64)
        .collect();
    let gii = dot(ai, ai) as f64;
    // Solve L w = g (forward substitution), new diagonal sqrt(gii - |w|^2).
    let mut w = vec![0.0f64; m];
    for a in 0..m {
        let mut v = g[a];
        for b in 0..a {
            v -= s.chol[a * m + b] * w[b];
        }
        w[a] = v / s.chol[a * m + a];
    }
    let diag2 = gii - w.iter().map(|v| v * v).sum::<f64>();
    if diag2 <= gii * 1e-10 {
        return false;
    }
    let m1 = m + 1;
    let mut l = vec![0.0f64; m1 * m1];
    for a in 0..m {
        for b in 0..=a {
            l[a * m1 + b] = s.chol[a * m + b];
        }
    }
    for (b, wb) in w.iter().enumerate() {
        l[m * m1 + b] = *wb;
    }
    l[m * m1 + m] = diag2.sqrt();
    s.chol = l;
    true
}

/// Least squares on the support: `L L^T a = D_S x`. Nonnegative: atoms whose
/// coefficient comes out negative are dropped and the rest refitted (active set).
fn omp_refit(s: &mut RowState, x: &[f32], wd: &[f32], d: usize, nonneg: bool) {
    loop {
        let m = s.support.len();
        let b: Vec<f64> = s
            .support
            .iter()
            .map(|&j| dot(&wd[j * d..(j + 1) * d], x) as f64)
            .collect();
        let l = &s.chol;
        let mut y = vec![0.0f64; m];
        for a in 0..m {
            let mut v = b[a];
            for c in 0..a {
                v -= l[a * m + c] * y[c];
            }
            y[a] = v / l[a * m + a];
        }
        let mut sol = vec![0.0f64; m];
        for a in (0..m).rev() {
            let mut v = y[a];
            for c in a + 1..m {
                v -= l[c * m + a] * sol[c];
            }
            sol[a] = v / l[a * m + a];
        }
        let neg = if nonneg {
            sol.iter().position(|v| *v < 0.0)
        } else {
            None
        };
        match neg {
            None => {
                s.coef = sol.iter().map(|v| *v as f32).collect();
                return;
            }
            Some(_) => {
                // Drop every negative atom and rebuild the factor from scratch.
                let keep: Vec<usize> = s
                    .support
                    .iter()
                    .zip(&sol)
                    .filter(|(_, v)| **v >= 0.0)
                    .map(|(j, _)| *j)
                    .collect();
                s.support.clear();
                s.chol.clear();
                for j in keep {
                    if chol_add(s, j, wd, d) {
                        s.support.push(j);
                    }
                }
                if s.support.is_empty() {
                    s.coef.clear();
                    return;
                }
            }
        }
    }
}
