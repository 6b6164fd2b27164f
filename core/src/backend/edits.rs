//! Backend-independent parts of feature edits (ALGORITHMS.md, steering): argument
//! checks, the rows a call touches, and applying `x + (f' - f) W_dec` once the
//! current activations are known. Each backend decides how it gets the
//! activations (its encoder, or its ITO solver) and calls [`apply_with`].

use crate::backend::{CodeScale, SparseCodes, rows_of};
use crate::error::{Error, Result};
use crate::params::Edit;
use crate::sae::{Normalization, Sae};

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
    let n = rows_of(sae, x)?;
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

/// The rows a steering call edits, copied out of `x`: a backend computes on
/// [`Selection::rows`] and [`Selection::commit`]s them back, so `x` changes only when
/// the whole call succeeded and every edited value is finite.
pub(crate) struct Selection {
    rows: Vec<usize>,
    data: Vec<f32>,
    d: usize,
}

impl Selection {
    /// Check the call ([`validate_edits`]) and copy the selected rows (`None` =
    /// all); `None` when there is nothing to do.
    pub(crate) fn take(
        sae: &Sae,
        x: &[f32],
        edits: &[Edit],
        rows: Option<&[usize]>,
    ) -> Result<Option<Self>> {
        let n = validate_edits(sae, x, edits, rows)?;
        if n == 0 || edits.is_empty() {
            return Ok(None);
        }
        let rows = rows.map_or_else(|| (0..n).collect(), <[usize]>::to_vec);
        let d = sae.d_in();
        Ok(Some(Selection {
            data: gather_rows(x, d, &rows),
            rows,
            d,
        }))
    }

    /// The selected rows, `[m, d_in]`.
    pub(crate) fn rows(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Write the edited rows back into `x`, unless one overflowed.
    pub(crate) fn commit(self, x: &mut [f32]) -> Result<()> {
        check_finite_output("steered activations", &self.data, self.d)?;
        scatter_rows(x, self.d, &self.rows, &self.data);
        Ok(())
    }
}

/// Copy the selected rows of `x` (`[n, d]`) into a new `[rows.len(), d]` buffer.
pub(crate) fn gather_rows(x: &[f32], d: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend_from_slice(&x[r * d..(r + 1) * d]);
    }
    out
}

/// Write `sel` (`[rows.len(), d]`) back into the selected rows of `x`.
pub(crate) fn scatter_rows(x: &mut [f32], d: usize, rows: &[usize], sel: &[f32]) {
    for (&r, src) in rows.iter().zip(sel.chunks_exact(d)) {
        x[r * d..(r + 1) * d].copy_from_slice(src);
    }
}

/// Fail with `Error::NonFiniteOutput` when a result computed from finite inputs
/// overflowed (or otherwise left the finite range).
pub(crate) fn check_finite_output(what: &'static str, out: &[f32], row_len: usize) -> Result<()> {
    match out.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFiniteOutput {
            what,
            row: i / row_len.max(1),
            col: i % row_len.max(1),
            value: out[i],
        }),
    }
}

/// The feature whose current activation `edit` reads (clamp, ablate, scale), if any.
pub(crate) fn reads_activation(edit: &Edit) -> Option<usize> {
    match edit {
        Edit::Clamp { feature, .. } | Edit::Ablate { feature } | Edit::Scale { feature, .. } => {
            Some(*feature)
        }
        Edit::AddFeature { .. } | Edit::AddVector { .. } => None,
    }
}

/// Apply `edits` in order to every row of `sel` (`[m, d_in]`, rows already
/// selected). `acts[r * edits.len() + e]` is the current activation (SAE units) of
/// the feature edit `e` reads in row `r`, taken from the unedited row (ignored for
/// edits that read none); codes of top-k SAEs that rescale by decoder norms are
/// converted by [`CodeScale`].
pub(crate) fn apply_with(sae: &Sae, sel: &mut [f32], edits: &[Edit], acts: &[f32]) {
    let d = sae.d_in();
    let ne = edits.len();
    let wd = sae.weights().w_dec.as_slice();
    let scale = CodeScale::of(sae);
    for (r, row) in sel.chunks_exact_mut(d).enumerate() {
        for (e, edit) in edits.iter().enumerate() {
            let a = acts.get(r * ne + e).copied().unwrap_or(0.0);
            let (feature, delta) = match edit {
                Edit::AddVector { vector, coef } => {
                    row.iter_mut().zip(vector).for_each(|(o, v)| *o += coef * v);
                    continue;
                }
                // A coefficient on the decoder row itself: no unit conversion.
                Edit::AddFeature { feature, coef } => (*feature, *coef),
                Edit::Clamp { feature, value } => (*feature, scale.coef_of(*feature, value - a)),
                Edit::Ablate { feature } => (*feature, scale.coef_of(*feature, -a)),
                Edit::Scale { feature, factor } => {
                    (*feature, scale.coef_of(*feature, (factor - 1.0) * a))
                }
            };
            if delta != 0.0 {
                let di = &wd[feature * d..(feature + 1) * d];
                row.iter_mut().zip(di).for_each(|(o, w)| *o += delta * w);
            }
        }
    }
}

/// Activations for [`apply_with`] read from sparse codes of the selected rows.
pub(crate) fn activations_from_codes(codes: &SparseCodes, edits: &[Edit]) -> Vec<f32> {
    let mut acts = Vec::with_capacity(codes.n_rows() * edits.len());
    for r in 0..codes.n_rows() {
        let (idx, val) = codes.row(r);
        for e in edits {
            acts.push(reads_activation(e).map_or(0.0, |i| {
                idx.binary_search(&(i as u32)).map_or(0.0, |p| val[p])
            }));
        }
    }
    acts
}

/// Activations for [`apply_with`] read from dense codes (`[m, d_sae]`).
#[cfg(feature = "gpu")]
pub(crate) fn activations_from_dense(f: &[f32], d_sae: usize, edits: &[Edit]) -> Vec<f32> {
    f.chunks_exact(d_sae.max(1))
        .flat_map(|row| {
            edits
                .iter()
                .map(|e| reads_activation(e).map_or(0.0, |i| row[i]))
        })
        .collect()
}

/// Check one input row (`[d_in]`, finite) and a feature index for
/// `Backend::feature_activation`.
pub(crate) fn check_row_feature(sae: &Sae, x: &[f32], i: usize) -> Result<()> {
    let d = sae.d_in();
    if x.len() != d {
        return Err(Error::invalid(format!(
            "row has {} values, d_in is {d}",
            x.len()
        )));
    }
    rows_of(sae, x)?;
    check_feature(sae, i)
}
