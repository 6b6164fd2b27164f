//! Error-preserving feature edits (ALGORITHMS.md): `out = x + (f' - f) W_dec`.
//! An edit touching feature `i` computes only `f_i` (O(d_in)) for standard,
//! jumprelu and gated SAEs; top-k SAEs need the whole row's k-th value, so they
//! encode that row.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::steer::{Edit, apply_edits, feature_activation};
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let mut x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
//! // A feature that fires on x: clamping it moves its activation exactly there.
//! let i = (0..64).find(|&i| feature_activation(&sae, &x, i).is_ok_and(|a| a > 0.0)).unwrap();
//! apply_edits(&sae, &mut x, &[Edit::Clamp { feature: i, value: 3.0 }], None)?;
//! assert!((feature_activation(&sae, &x, i)? - 3.0).abs() < 1e-4);
//! # Ok(()) }
//! ```

use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
use crate::backend::cpu::encode::preprocess;
use crate::error::{Error, Result};
use crate::sae::{Architecture, EncLayout, Normalization, Sae};

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
/// apply_edits(&sae, &mut x, &edits, None)?;
/// assert!(feature_activation(&sae, &x[..16], 1)? < 0.1);
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

/// Check `x`, `edits` and `rows` against `sae`; returns the number of rows.
/// Everything that can fail is checked here, before any row is modified.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::steer::{Edit, validate_edits};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let x = vec![0.0; 3 * 16];
/// assert_eq!(validate_edits(&sae, &x, &[Edit::Ablate { feature: 7 }], None)?, 3);
/// assert!(validate_edits(&sae, &x, &[Edit::Ablate { feature: 64 }], None).is_err());
/// assert!(validate_edits(&sae, &x, &[], Some(&[3])).is_err()); // row 3 of 3
/// # Ok(()) }
/// ```
pub fn validate_edits(
    sae: &Sae,
    x: &[f32],
    edits: &[Edit],
    rows: Option<&[usize]>,
) -> Result<usize> {
    let d = sae.d_in();
    let n = crate::backend::rows_of(sae, x)?;
    if sae.config().normalization != Normalization::None
        && edits.iter().any(|e| !matches!(e, Edit::AddVector { .. }))
    {
        return Err(Error::Unsupported(
            "feature edits on SAEs that normalise their input".into(),
        ));
    }
    for e in edits {
        match e {
            Edit::AddVector { vector, coef } => {
                if vector.len() != d {
                    return Err(Error::invalid(format!(
                        "steering vector has {} values, d_in is {d}",
                        vector.len()
                    )));
                }
                if !coef.is_finite() || vector.iter().any(|v| !v.is_finite()) {
                    return Err(Error::invalid(
                        "steering vector or coefficient is not finite",
                    ));
                }
            }
            Edit::AddFeature { feature, coef: v }
            | Edit::Clamp { feature, value: v }
            | Edit::Scale { feature, factor: v } => {
                check_feature(sae, *feature)?;
                if !v.is_finite() {
                    return Err(Error::invalid(format!(
                        "edit of feature {feature}: value {v} is not finite"
                    )));
                }
            }
            Edit::Ablate { feature } => check_feature(sae, *feature)?,
        }
    }
    if let Some(rs) = rows
        && let Some(r) = rs.iter().find(|&&r| r >= n)
    {
        return Err(Error::invalid(format!("row {r} >= n_rows {n}")));
    }
    if let Some(rs) = rows {
        let mut v = rs.to_vec();
        v.sort_unstable();
        if v.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::invalid("rows must not repeat"));
        }
    }
    Ok(n)
}

fn check_feature(sae: &Sae, i: usize) -> Result<()> {
    if i >= sae.d_sae() {
        return Err(Error::invalid(format!(
            "feature {i} >= d_sae {}",
            sae.d_sae()
        )));
    }
    Ok(())
}

/// Activation of the single feature `i` for one input row, computing only that
/// feature for standard/jumprelu/gated SAEs.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend, steer::feature_activation};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::JumpRelu, 3)?;
/// let x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
/// let mut f = vec![0.0; 64];
/// CpuBackend::new(1).encode(&sae, &x, &mut f)?;
/// for i in [0, 17, 63] {
///     assert!((feature_activation(&sae, &x, i)? - f[i]).abs() < 1e-5);
/// }
/// # Ok(()) }
/// ```
pub fn feature_activation(sae: &Sae, x: &[f32], i: usize) -> Result<f32> {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    if x.len() != d {
        return Err(Error::invalid(format!(
            "row has {} values, d_in is {d}",
            x.len()
        )));
    }
    if i >= ds {
        return Err(Error::invalid(format!("feature {i} >= d_sae {ds}")));
    }
    let (xc, _) = preprocess(sae, x, 1)?;
    let w = sae.weights();
    let we = w.w_enc.as_slice();
    let col: f32 = match sae.enc_layout {
        EncLayout::InBySae => xc.iter().enumerate().map(|(j, v)| v * we[j * ds + i]).sum(),
        EncLayout::SaeByIn => xc
            .iter()
            .zip(&we[i * d..(i + 1) * d])
            .map(|(a, b)| a * b)
            .sum(),
    };
    let b = w.b_enc.as_slice()[i];
    Ok(match sae.config().architecture {
        Architecture::Standard => (col + b).max(0.0),
        Architecture::JumpRelu => {
            let p = col + b;
            let t = w.threshold.as_ref().map_or(0.0, |t| t.as_slice()[i]);
            if p > t { p.max(0.0) } else { 0.0 }
        }
        Architecture::Gated => {
            let e = sae.exp_r_mag()[i];
            let bm = w.b_mag.as_ref().map_or(0.0, |t| t.as_slice()[i]);
            if col + b > 0.0 {
                (col * e + bm).max(0.0)
            } else {
                0.0
            }
        }
        Architecture::TopK { .. } => {
            // The k-th largest value decides membership: encode the whole row.
            let mut row = vec![0.0f32; ds];
            CpuBackend::new(1).encode(sae, x, &mut row)?;
            row[i]
        }
    })
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
/// apply_edits_with(&sae, &mut x, &[Edit::Ablate { feature: 4 }], None, &source)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub enum FeatureSource {
    /// The SAE's own encoder (only the edited features are computed).
    #[default]
    Encoder,
    /// An ITO solver on the decoder (`crate::solve`), run on each selected row.
    Solver(crate::solve::SolverParams),
}

/// Apply `edits` in place to every row of `x` (`[n, d_in]`) selected by `rows`
/// (`None` = all rows), reading activations from the SAE's encoder.
/// Feature activations are read from the unedited row.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::steer::{Edit, apply_edits};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let mut x = saeplug::synthetic::Rng::new(2).normal_vec(2 * 16, 1.0);
/// let before = x.clone();
/// apply_edits(&sae, &mut x, &[Edit::AddVector { vector: vec![1.0; 16], coef: 0.5 }], Some(&[0]))?;
/// assert!(x[..16].iter().zip(&before).all(|(a, b)| (a - b - 0.5).abs() < 1e-6));
/// assert_eq!(x[16..], before[16..]);
/// # Ok(()) }
/// ```
pub fn apply_edits(sae: &Sae, x: &mut [f32], edits: &[Edit], rows: Option<&[usize]>) -> Result<()> {
    apply_edits_with(sae, x, edits, rows, &FeatureSource::Encoder)
}

/// [`apply_edits`] with the activations taken from `source`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::steer::{Edit, FeatureSource, apply_edits, apply_edits_with};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
/// let edit = [Edit::Scale { feature: 5, factor: 2.0 }];
/// let (mut a, mut b) = (x.clone(), x.clone());
/// apply_edits(&sae, &mut a, &edit, None)?;
/// apply_edits_with(&sae, &mut b, &edit, None, &FeatureSource::Encoder)?;
/// assert_eq!(a, b);
/// # Ok(()) }
/// ```
pub fn apply_edits_with(
    sae: &Sae,
    x: &mut [f32],
    edits: &[Edit],
    rows: Option<&[usize]>,
    source: &FeatureSource,
) -> Result<()> {
    let d = sae.d_in();
    let n = validate_edits(sae, x, edits, rows)?;
    let all: Vec<usize>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all = (0..n).collect();
            &all
        }
    };
    let wd = sae.weights().w_dec.as_slice();
    let rescale = match sae.config().architecture {
        Architecture::TopK {
            rescale_by_decoder_norm: true,
            ..
        } => Some(sae.decoder_norms()),
        _ => None,
    };
    // ITO: one batched solve over the selected rows, before any row changes.
    let ito = match source {
        FeatureSource::Encoder => None,
        FeatureSource::Solver(p) => {
            let sel: Vec<f32> = rows
                .iter()
                .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
                .collect();
            Some(crate::solve::solve(&CpuBackend::default(), sae, &sel, p)?.0)
        }
    };
    for (pos, &r) in rows.iter().enumerate() {
        let row = &mut x[r * d..(r + 1) * d];
        let orig = row.to_vec();
        let act = |i: usize| -> Result<f32> {
            match &ito {
                None => feature_activation(sae, &orig, i),
                Some(c) => {
                    let (idx, val) = c.row(pos);
                    Ok(idx
                        .iter()
                        .position(|&j| j as usize == i)
                        .map_or(0.0, |p| val[p]))
                }
            }
        };
        for e in edits {
            let (feature, delta) = match e {
                Edit::AddVector { vector, coef } => {
                    row.iter_mut().zip(vector).for_each(|(o, v)| *o += coef * v);
                    continue;
                }
                Edit::AddFeature { feature, coef } => (*feature, *coef),
                Edit::Clamp { feature, value } => (*feature, value - act(*feature)?),
                Edit::Ablate { feature } => (*feature, -act(*feature)?),
                Edit::Scale { feature, factor } => (*feature, (factor - 1.0) * act(*feature)?),
            };
            // Codes of top-k SAEs that rescale by decoder norms decode as f_i / ||d_i||.
            let delta = match (e, rescale) {
                (Edit::AddFeature { .. }, _) | (_, None) => delta,
                (_, Some(norms)) => delta / norms[feature],
            };
            if delta != 0.0 {
                let di = &wd[feature * d..(feature + 1) * d];
                row.iter_mut().zip(di).for_each(|(o, w)| *o += delta * w);
            }
        }
    }
    Ok(())
}
