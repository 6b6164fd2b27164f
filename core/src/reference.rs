//! Plain f64 loops straight from FORMATS.md: the oracle for every kernel. Slow on
//! purpose; shares no code with the backends.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Backend, CpuBackend};
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Gated, 3)?;
//! let x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
//! let mut f = vec![0.0; 2 * 64];
//! CpuBackend::new(1).encode(&sae, &x, &mut f)?;
//! let want: Vec<f64> = saeplug::reference::encode(&sae, &x); // f64 loops
//! assert!(f.iter().zip(&want).all(|(a, b)| (*a as f64 - b).abs() < 1e-4));
//! # Ok(()) }
//! ```
#![allow(
    clippy::needless_range_loop,
    reason = "index loops mirror the formulas"
)]

use crate::sae::{Architecture, Normalization, Sae, TopKOrder};

/// Encoder matrix element (input dim `j`, feature `i`), whatever the layout.
fn w_enc(sae: &Sae, j: usize, i: usize) -> f64 {
    let w = sae.weights();
    let s = w.w_enc.as_slice();
    if w.w_enc_transposed {
        s[i * sae.d_in() + j] as f64
    } else {
        s[j * sae.d_sae() + i] as f64
    }
}

/// Normalised, centred input and (scale, shift) to undo the normalisation.
fn prep(sae: &Sae, x: &[f32]) -> (Vec<f64>, (f64, f64)) {
    let d = x.len();
    let mut v: Vec<f64> = x.iter().map(|&a| a as f64).collect();
    let mut dn = (1.0, 0.0);
    match sae.config().normalization {
        Normalization::None => {}
        Normalization::ConstantNormRescale => {
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let s = (d as f64).sqrt() / norm;
            v.iter_mut().for_each(|a| *a *= s);
            dn = (1.0 / s, 0.0);
        }
        Normalization::LayerNorm => {
            let mu = v.iter().sum::<f64>() / d as f64;
            let var = v.iter().map(|a| (a - mu) * (a - mu)).sum::<f64>() / (d as f64 - 1.0);
            let sd = var.sqrt();
            v.iter_mut().for_each(|a| *a = (*a - mu) / (sd + 1e-5));
            dn = (sd, mu);
        }
    }
    if sae.config().apply_b_dec_to_input {
        for (a, b) in v.iter_mut().zip(sae.weights().b_dec.as_slice()) {
            *a -= *b as f64;
        }
    }
    (v, dn)
}

fn norm_row(sae: &Sae, i: usize) -> f64 {
    let d = sae.d_in();
    sae.weights().w_dec.as_slice()[i * d..(i + 1) * d]
        .iter()
        .map(|&a| (a as f64) * (a as f64))
        .sum::<f64>()
        .sqrt()
}

/// Encode one row in f64; returns the dense code and the denormalisation.
pub fn encode_row(sae: &Sae, x: &[f32]) -> (Vec<f64>, (f64, f64)) {
    let (d, n) = (sae.d_in(), sae.d_sae());
    let (xc, dn) = prep(sae, x);
    let w = sae.weights();
    let b = |t: &crate::weights::Tensor, i: usize| t.as_slice()[i] as f64;
    let dot = |i: usize| (0..d).map(|j| xc[j] * w_enc(sae, j, i)).sum::<f64>();
    let mut f = vec![0.0f64; n];
    match sae.config().architecture {
        Architecture::Standard => {
            for (i, fi) in f.iter_mut().enumerate() {
                *fi = (dot(i) + b(&w.b_enc, i)).max(0.0);
            }
        }
        Architecture::JumpRelu => {
            let th = w.threshold.as_ref().expect("jumprelu has a threshold");
            for (i, fi) in f.iter_mut().enumerate() {
                let p = dot(i) + b(&w.b_enc, i);
                *fi = if p > b(th, i) { p.max(0.0) } else { 0.0 };
            }
        }
        Architecture::Gated => {
            let (rm, bm) = (
                w.r_mag.as_ref().expect("r_mag"),
                w.b_mag.as_ref().expect("b_mag"),
            );
            for (i, fi) in f.iter_mut().enumerate() {
                let gate = dot(i) + b(&w.b_enc, i) > 0.0;
                // x (W_enc ⊙ exp(r_mag)) + b_mag, column by column.
                let mag = (0..d)
                    .map(|j| xc[j] * w_enc(sae, j, i) * b(rm, i).exp())
                    .sum::<f64>()
                    + b(bm, i);
                *fi = if gate { mag.max(0.0) } else { 0.0 };
            }
        }
        Architecture::TopK {
            k,
            order,
            rescale_by_decoder_norm,
        } => {
            let mut p: Vec<f64> = (0..n).map(|i| dot(i) + b(&w.b_enc, i)).collect();
            if rescale_by_decoder_norm {
                for (i, v) in p.iter_mut().enumerate() {
                    *v *= norm_row(sae, i);
                }
            }
            match order {
                TopKOrder::GroupMax => {
                    let g = n / k;
                    for grp in 0..k {
                        let r = grp * g..(grp + 1) * g;
                        let best = r
                            .clone()
                            .max_by(|&a, &b2| {
                                p[a].max(0.0).total_cmp(&p[b2].max(0.0)).then(b2.cmp(&a))
                            })
                            .expect("non-empty group");
                        f[best] = p[best].max(0.0);
                    }
                }
                _ => {
                    let key = |v: f64| match order {
                        TopKOrder::ReluThenTopK => v.max(0.0),
                        TopKOrder::Signed => v.abs(),
                        _ => v,
                    };
                    let mut idx: Vec<usize> = (0..n).collect();
                    idx.sort_by(|&a, &b2| key(p[b2]).total_cmp(&key(p[a])).then(a.cmp(&b2)));
                    for &i in idx.iter().take(k) {
                        f[i] = if order == TopKOrder::Signed {
                            p[i]
                        } else {
                            p[i].max(0.0)
                        };
                    }
                }
            }
        }
    }
    (f, dn)
}

/// Decode one dense f64 code, applying the denormalisation.
pub fn decode_row(sae: &Sae, f: &[f64], dn: (f64, f64)) -> Vec<f64> {
    let d = sae.d_in();
    let w = sae.weights();
    let wd = w.w_dec.as_slice();
    let rescale = matches!(
        sae.config().architecture,
        Architecture::TopK {
            rescale_by_decoder_norm: true,
            ..
        }
    );
    (0..d)
        .map(|j| {
            let mut y = w.b_dec.as_slice()[j] as f64;
            for (i, &fi) in f.iter().enumerate() {
                if fi != 0.0 {
                    let c = if rescale { fi / norm_row(sae, i) } else { fi };
                    y += c * wd[i * d + j] as f64;
                }
            }
            y * dn.0 + dn.1
        })
        .collect()
}

/// Encode a batch: dense `[n, d_sae]`.
pub fn encode(sae: &Sae, x: &[f32]) -> Vec<f64> {
    x.chunks_exact(sae.d_in())
        .flat_map(|r| encode_row(sae, r).0)
        .collect()
}

/// Encode then decode a batch: `[n, d_in]`.
pub fn reconstruct(sae: &Sae, x: &[f32]) -> Vec<f64> {
    x.chunks_exact(sae.d_in())
        .flat_map(|r| {
            let (f, dn) = encode_row(sae, r);
            decode_row(sae, &f, dn)
        })
        .collect()
}

/// f64 ITO oracle: which solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefSolver {
    /// Matching pursuit.
    Mp,
    /// Gradient pursuit with exact line search.
    Gp,
    /// Orthogonal matching pursuit (normal equations by Gaussian elimination).
    Omp,
}

fn atom(sae: &Sae, i: usize) -> Vec<f64> {
    let d = sae.d_in();
    sae.weights().w_dec.as_slice()[i * d..(i + 1) * d]
        .iter()
        .map(|&v| v as f64)
        .collect()
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solve `A y = b` (small, dense, f64) by Gaussian elimination with partial pivoting.
pub fn solve_dense(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let m = b.len();
    for c in 0..m {
        let p = (c..m)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..m {
            let f = a[r][c] / a[c][c];
            for k in c..m {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut y = vec![0.0; m];
    for r in (0..m).rev() {
        let s: f64 = (r + 1..m).map(|k| a[r][k] * y[k]).sum();
        y[r] = (b[r] - s) / a[r][r];
    }
    y
}

/// Run `steps` steps of an ITO solver on one row (nonnegative or signed) in f64;
/// returns the dense coefficient vector after each step.
pub fn ito_trace(
    sae: &Sae,
    x: &[f32],
    solver: RefSolver,
    steps: usize,
    nonneg: bool,
) -> Vec<Vec<f64>> {
    let (d, n) = (sae.d_in(), sae.d_sae());
    let b = sae.weights().b_dec.as_slice();
    let target: Vec<f64> = (0..d).map(|j| x[j] as f64 - b[j] as f64).collect();
    let atoms: Vec<Vec<f64>> = (0..n).map(|i| atom(sae, i)).collect();
    let norms: Vec<f64> = atoms.iter().map(|a| dot64(a, a).sqrt()).collect();
    let mut a = vec![0.0f64; n];
    let mut support: Vec<usize> = Vec::new();
    let mut trace = Vec::new();
    let resid = |a: &[f64]| -> Vec<f64> {
        let mut r = target.clone();
        for (i, &c) in a.iter().enumerate() {
            if c != 0.0 {
                for j in 0..d {
                    r[j] -= c * atoms[i][j];
                }
            }
        }
        r
    };
    for _ in 0..steps {
        let r = resid(&a);
        let q: Vec<f64> = atoms.iter().map(|at| dot64(at, &r)).collect();
        let score = |i: usize| {
            if norms[i] == 0.0 {
                f64::NEG_INFINITY
            } else if nonneg {
                q[i] / norms[i]
            } else {
                (q[i] / norms[i]).abs()
            }
        };
        let cands: Vec<usize> = (0..n)
            .filter(|i| solver != RefSolver::Omp || !support.contains(i))
            .collect();
        let best = cands
            .iter()
            .copied()
            .max_by(|&i, &j| score(i).total_cmp(&score(j)).then(j.cmp(&i)))
            .filter(|&i| score(i) > 0.0);
        match solver {
            RefSolver::Mp => {
                let Some(i) = best else { break };
                a[i] += q[i] / (norms[i] * norms[i]);
            }
            RefSolver::Gp => {
                if let Some(i) = best
                    && !support.contains(&i)
                {
                    support.push(i);
                }
                let mut c = vec![0.0f64; d];
                for &i in &support {
                    for j in 0..d {
                        c[j] += q[i] * atoms[i][j];
                    }
                }
                let cc = dot64(&c, &c);
                if cc == 0.0 {
                    break;
                }
                let eta = dot64(&c, &r) / cc;
                for &i in &support {
                    a[i] += eta * q[i];
                    if nonneg {
                        a[i] = a[i].max(0.0);
                    }
                }
            }
            RefSolver::Omp => {
                let Some(i) = best else { break };
                support.push(i);
                let g: Vec<Vec<f64>> = support
                    .iter()
                    .map(|&p| {
                        support
                            .iter()
                            .map(|&s| dot64(&atoms[p], &atoms[s]))
                            .collect()
                    })
                    .collect();
                let rhs: Vec<f64> = support.iter().map(|&p| dot64(&atoms[p], &target)).collect();
                let sol = solve_dense(g, rhs);
                a.iter_mut().for_each(|v| *v = 0.0);
                for (&p, &v) in support.iter().zip(&sol) {
                    a[p] = v;
                }
            }
        }
        trace.push(a.clone());
    }
    trace
}
