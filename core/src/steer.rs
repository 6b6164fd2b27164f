//! Error-preserving feature edits (ALGORITHMS.md): `out = x + (f' - f) W_dec`.
//! An edit touching feature `i` computes only `f_i` (O(d_in)) for standard,
//! jumprelu and gated SAEs; top-k SAEs need the whole row's k-th value, so they
//! encode that row.

use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
use crate::backend::cpu::encode::preprocess;
use crate::error::{Error, Result};
use crate::sae::{Architecture, EncLayout, Normalization, Sae};

/// One edit of one feature (or a raw vector).
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
pub fn apply_edits(sae: &Sae, x: &mut [f32], edits: &[Edit], rows: Option<&[usize]>) -> Result<()> {
    apply_edits_with(sae, x, edits, rows, &FeatureSource::Encoder)
}

/// [`apply_edits`] with the activations taken from `source`.
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
