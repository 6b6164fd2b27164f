//! The backend-independent parts of the ITO solvers (ALGORITHMS.md): per-row
//! state, atom selection, the MP / GP / OMP steps (OMP's incremental Cholesky
//! included), and assembling codes in the SAE's units. A backend drives a
//! [`Batch`], supplying the batched correlations `Q = R W_dec^T` each round, or
//! runs whole solves in its own kernels and uses [`assemble`].
#![allow(
    clippy::needless_range_loop,
    reason = "triangular solves index two arrays"
)]

use crate::backend::{CodeScale, SparseCodes, rows_of};
use crate::error::Result;
use crate::params::{SolveInfo, Solver, SolverParams};
use crate::sae::Sae;

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

/// A batch of rows being solved. A backend drives it:
///
/// ```text
/// let mut b = Batch::new(sae, x, p)?;
/// while b.running() {
///     let (r, q) = b.residuals_and_correlations();
///     correlate(r, q)?;   // Q = R W_dec^T
///     b.step();
/// }
/// let (codes, info) = b.finish();
/// ```
///
/// Steps run for at most `k_max` rounds; every round computes the correlations of
/// the whole batch (stopped rows' residuals are unchanged) and updates the rows
/// still running here, on the host.
pub(crate) struct Batch<'a> {
    sae: &'a Sae,
    p: &'a SolverParams,
    target: Vec<f32>,
    resid: Vec<f32>,
    q: Vec<f32>,
    st: Vec<RowState>,
    round: usize,
}

impl<'a> Batch<'a> {
    /// Validate `p` and `x` (`[n, d_in]`) and start every row at a = 0.
    pub(crate) fn new(sae: &'a Sae, x: &[f32], p: &'a SolverParams) -> Result<Self> {
        p.validate(sae)?;
        let n = rows_of(sae, x)?;
        let d = sae.d_in();
        let target = centred_targets(sae, x);
        let resid = target.clone();
        let tol2 = p.tol * p.tol;
        let st = resid
            .chunks_exact(d.max(1))
            .map(|r| RowState {
                support: Vec::new(),
                coef: Vec::new(),
                done: dot(r, r) <= tol2.max(0.0) && (p.tol > 0.0 || r.iter().all(|v| *v == 0.0)),
                iters: 0,
                chol: Vec::new(),
            })
            .collect();
        Ok(Batch {
            sae,
            p,
            target,
            resid,
            q: vec![0.0; n * sae.d_sae()],
            st,
            round: 0,
        })
    }

    /// Whether another round is needed.
    pub(crate) fn running(&self) -> bool {
        self.round < self.p.k_max && self.st.iter().any(|s| !s.done)
    }

    /// This round's residuals `R` (`[n, d_in]`) and where the backend writes
    /// `Q = R W_dec^T` (`[n, d_sae]`).
    pub(crate) fn residuals_and_correlations(&mut self) -> (&[f32], &mut [f32]) {
        (&self.resid, &mut self.q)
    }

    /// One step of every running row, from the correlations written this round.
    pub(crate) fn step(&mut self) {
        let (d, ds) = (self.sae.d_in(), self.sae.d_sae());
        let wd = self.sae.weights().w_dec.as_slice();
        let norms = self.sae.decoder_norms();
        let tol2 = self.p.tol * self.p.tol;
        for (r, s) in self.st.iter_mut().enumerate().filter(|(_, s)| !s.done) {
            let qr = &self.q[r * ds..(r + 1) * ds];
            let rr = &mut self.resid[r * d..(r + 1) * d];
            let xr = &self.target[r * d..(r + 1) * d];
            step(self.p, s, qr, rr, xr, wd, norms, d);
            if !s.done && self.p.tol > 0.0 && dot(rr, rr) < tol2 {
                s.done = true;
            }
        }
        self.round += 1;
    }

    /// Codes in the SAE's units and per-row info.
    pub(crate) fn finish(self) -> (SparseCodes, SolveInfo) {
        let rows = self
            .st
            .iter()
            .map(|s| (&s.support[..], &s.coef[..], s.iters));
        assemble(self.sae, rows, &self.resid)
    }
}

/// The solver targets `x - b_dec`, row by row.
pub(crate) fn centred_targets(sae: &Sae, x: &[f32]) -> Vec<f32> {
    let b_dec = sae.weights().b_dec.as_slice();
    let mut target = x.to_vec();
    for row in target.chunks_exact_mut(sae.d_in().max(1)) {
        row.iter_mut().zip(b_dec).for_each(|(v, b)| *v -= b);
    }
    target
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
    let scale = CodeScale::of(sae);
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
            codes.values.push(scale.code_of(i, c));
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
