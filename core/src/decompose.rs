//! Steering vectors in SAE features: decompose a vector (signed ITO on the
//! decoder) or an ActAdd pair (`f(h+) - f(h-)`), filter features out, recompose.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::decompose::{decompose_vector, recompose};
//! use saeplug::solve::{Solver, SolverParams};
//! let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
//! let v = recompose(&sae, &[(7, 1.5)]);
//! let dec = decompose_vector(&saeplug::CpuBackend::new(1), &sae, &v, &SolverParams::new(Solver::OrthogonalMatchingPursuit, 4))?;
//! assert_eq!(dec.features[0].0, 7);
//! # Ok(()) }
//! ```

use crate::backend::{Backend, CodeScale, rows_of};
use crate::error::{Error, Result};
use crate::params::SolverParams;
use crate::sae::Sae;

/// A steering vector expressed in SAE features.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::decompose::decompose_vector;
/// use saeplug::solve::{Solver, SolverParams};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let v = saeplug::decompose::recompose(&sae, &[(4, 2.0), (9, -1.0)]);
/// let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 8);
/// p.nonnegative = false; // the vector has a negative component
/// let dec = decompose_vector(&saeplug::CpuBackend::new(1), &sae, &v, &p)?;
/// assert!(dec.cosine > 0.999 && dec.rel_error < 1e-3);
/// assert!(dec.features[..2].iter().any(|&(i, _)| i == 4));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Decomposition {
    /// (feature, coefficient of its decoder row `d_i`, as `recompose` and
    /// `Edit::AddFeature` take it), strongest |coefficient| first.
    pub features: Vec<(usize, f32)>,
    /// `sum c_i d_i`.
    pub recomposed: Vec<f32>,
    /// Cosine between the vector and its recomposition.
    pub cosine: f64,
    /// `||v - recomposed|| / ||v||`.
    pub rel_error: f64,
}

fn finish(sae: &Sae, v: &[f32], mut features: Vec<(usize, f32)>) -> Decomposition {
    features.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let recomposed = recompose(sae, &features);
    let dot: f64 = v
        .iter()
        .zip(&recomposed)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let nv = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let nr = recomposed
        .iter()
        .map(|a| (*a as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let err = v
        .iter()
        .zip(&recomposed)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    Decomposition {
        features,
        recomposed,
        cosine: if nv == 0.0 || nr == 0.0 {
            0.0
        } else {
            dot / (nv * nr)
        },
        rel_error: if nv == 0.0 { 0.0 } else { err / nv },
    }
}

/// `sum c_i d_i`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let sae = saeplug::synthetic::random_sae(4, 8, saeplug::Architecture::Standard, 3)?;
/// let v = saeplug::decompose::recompose(&sae, &[(2, 3.0)]);
/// let d2 = &sae.weights().w_dec.as_slice()[2 * 4..3 * 4];
/// assert!(v.iter().zip(d2).all(|(a, b)| (a - 3.0 * b).abs() < 1e-6));
/// # Ok(()) }
/// ```
pub fn recompose(sae: &Sae, features: &[(usize, f32)]) -> Vec<f32> {
    let d = sae.d_in();
    let wd = sae.weights().w_dec.as_slice();
    let mut out = vec![0.0f32; d];
    for &(i, c) in features {
        if i < sae.d_sae() {
            out.iter_mut()
                .zip(&wd[i * d..(i + 1) * d])
                .for_each(|(o, w)| *o += c * w);
        }
    }
    out
}

/// Decompose a steering vector `v` with a signed ITO solve on the decoder
/// (steering vectors are off-distribution for the encoder; no b_dec involved).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::decompose::{decompose_vector, recompose};
/// use saeplug::solve::{Solver, SolverParams};
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
/// let v = recompose(&sae, &[(7, 1.5), (40, -0.5)]); // signed: steering vectors may subtract
/// let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 4);
/// p.nonnegative = false;
/// let dec = decompose_vector(&saeplug::CpuBackend::new(1), &sae, &v, &p)?;
/// assert_eq!(dec.features[0].0, 7);
/// assert!((dec.features[0].1 - 1.5).abs() < 1e-3);
/// # Ok(()) }
/// ```
pub fn decompose_vector(
    backend: &dyn Backend,
    sae: &Sae,
    v: &[f32],
    p: &SolverParams,
) -> Result<Decomposition> {
    if v.len() != sae.d_in() {
        return Err(Error::invalid(format!(
            "vector has {} values, d_in is {}",
            v.len(),
            sae.d_in()
        )));
    }
    // solve() fits x - b_dec: shift by b_dec so it fits v itself.
    let x: Vec<f32> = v
        .iter()
        .zip(sae.weights().b_dec.as_slice())
        .map(|(a, b)| a + b)
        .collect();
    let (codes, _) = backend.solve(sae, &x, p)?;
    let (idx, val) = codes.row(0);
    // Codes are in SAE units; a decomposition names coefficients of decoder rows.
    let scale = CodeScale::of(sae);
    Ok(finish(
        sae,
        v,
        idx.iter()
            .zip(val)
            .map(|(&i, &c)| (i as usize, scale.coef_of(i as usize, c)))
            .collect(),
    ))
}

/// ActAdd decomposition (GDM): `f(h+) - f(h-)` per position, averaged over the
/// positions, against `v = mean(h+ - h-)`. `h_plus`, `h_minus`: `[p, d_in]`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{CpuBackend, decompose::decompose_actadd};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let mut rng = saeplug::synthetic::Rng::new(1);
/// let (h_plus, h_minus) = (rng.normal_vec(3 * 16, 1.0), rng.normal_vec(3 * 16, 1.0));
/// let dec = decompose_actadd(&CpuBackend::new(1), &sae, &h_plus, &h_minus)?;
/// assert_eq!(dec.recomposed.len(), 16);
/// # Ok(()) }
/// ```
pub fn decompose_actadd(
    backend: &dyn Backend,
    sae: &Sae,
    h_plus: &[f32],
    h_minus: &[f32],
) -> Result<Decomposition> {
    if h_plus.len() != h_minus.len() {
        return Err(Error::invalid("h+ and h- must have the same shape"));
    }
    let d = sae.d_in();
    let ds = sae.d_sae();
    let p = rows_of(sae, h_plus)?;
    if p == 0 {
        return Err(Error::invalid("no positions"));
    }
    let mut fp = vec![0.0; p * ds];
    let mut fm = vec![0.0; p * ds];
    backend.encode(sae, h_plus, &mut fp)?;
    backend.encode(sae, h_minus, &mut fm)?;
    let mut c = vec![0.0f64; ds];
    for (a, b) in fp.chunks_exact(ds).zip(fm.chunks_exact(ds)) {
        for i in 0..ds {
            c[i] += (a[i] - b[i]) as f64 / p as f64;
        }
    }
    let mut v = vec![0.0f32; d];
    for (a, b) in h_plus.chunks_exact(d).zip(h_minus.chunks_exact(d)) {
        for j in 0..d {
            v[j] += (a[j] - b[j]) / p as f32;
        }
    }
    let scale = CodeScale::of(sae);
    let features = c
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| (i, scale.coef_of(i, *x as f32)))
        .collect();
    Ok(finish(sae, &v, features))
}

/// Remove features from a vector: `v - sum_{i in remove} c_i d_i` with the
/// coefficients of `dec`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::decompose::{decompose_vector, filter, recompose};
/// use saeplug::solve::{Solver, SolverParams};
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
/// let v = recompose(&sae, &[(7, 1.5), (40, 0.5)]);
/// let dec = decompose_vector(&saeplug::CpuBackend::new(1), &sae, &v, &SolverParams::new(Solver::OrthogonalMatchingPursuit, 4))?;
/// // Drop feature 40 from the steering vector: what is left is 1.5 * d_7.
/// let kept = filter(&sae, &v, &dec, &[40]);
/// let want = recompose(&sae, &[(7, 1.5)]);
/// assert!(kept.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3));
/// # Ok(()) }
/// ```
pub fn filter(sae: &Sae, v: &[f32], dec: &Decomposition, remove: &[usize]) -> Vec<f32> {
    let drop: Vec<(usize, f32)> = dec
        .features
        .iter()
        .copied()
        .filter(|(i, _)| remove.contains(i))
        .collect();
    let r = recompose(sae, &drop);
    v.iter().zip(&r).map(|(a, b)| a - b).collect()
}
