//! Work every backend does on the host around its kernels: input normalisation
//! and centring, and the one conversion between codes in SAE units and decoder
//! coefficients (top-k SAEs that rescale by decoder norms).

use crate::backend::Denorm;
use crate::error::{Error, Result};
use crate::sae::{Architecture, Normalization, Sae};

/// Normalise and centre `x` into a new buffer; returns it with the per-row denorm.
pub(crate) fn preprocess(sae: &Sae, x: &[f32], n: usize) -> Result<(Vec<f32>, Vec<Denorm>)> {
    let d = sae.d_in();
    let mut xc = x.to_vec();
    let mut denorm = Vec::new();
    match sae.config().normalization {
        Normalization::None => {}
        Normalization::ConstantNormRescale => {
            denorm.reserve(n);
            for (r, row) in xc.chunks_exact_mut(d).enumerate() {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                if norm == 0.0 {
                    return Err(Error::invalid(format!(
                        "row {r} has zero norm: constant_norm_rescale is undefined"
                    )));
                }
                let s = (d as f32).sqrt() / norm;
                row.iter_mut().for_each(|v| *v *= s);
                denorm.push(Denorm {
                    scale: 1.0 / s,
                    shift: 0.0,
                });
            }
        }
        Normalization::LayerNorm => {
            denorm.reserve(n);
            for row in xc.chunks_exact_mut(d) {
                let mu = row.iter().sum::<f32>() / d as f32;
                row.iter_mut().for_each(|v| *v -= mu);
                let var = row.iter().map(|v| v * v).sum::<f32>() / (d.max(2) - 1) as f32;
                let std = var.sqrt();
                row.iter_mut().for_each(|v| *v /= std + 1e-5);
                denorm.push(Denorm {
                    scale: std,
                    shift: mu,
                });
            }
        }
    }
    if sae.config().apply_b_dec_to_input {
        let b = sae.weights().b_dec.as_slice();
        for row in xc.chunks_exact_mut(d) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v -= b);
        }
    }
    Ok((xc, denorm))
}

/// Codes of SAELens top-k SAEs with `rescale_acts_by_decoder_norm` are in units
/// of `a_i ||d_i||`, where `a_i` is the coefficient that multiplies decoder row
/// `d_i`; every other SAE's codes are the coefficients themselves. This type is
/// the one place that converts between the two (encode multiplies, decode and
/// edits divide, solvers multiply their coefficients back).
#[derive(Clone, Copy)]
pub(crate) struct CodeScale<'a>(Option<&'a [f32]>);

impl<'a> CodeScale<'a> {
    /// The conversion for `sae`.
    pub(crate) fn of(sae: &'a Sae) -> Self {
        match sae.config().architecture {
            Architecture::TopK {
                rescale_by_decoder_norm: true,
                ..
            } => CodeScale(Some(sae.decoder_norms())),
            _ => CodeScale(None),
        }
    }

    /// The decoder norms when codes are rescaled by them, else `None`.
    pub(crate) fn norms(self) -> Option<&'a [f32]> {
        self.0
    }

    /// Decoder coefficient of feature `i` for a code value `v`.
    pub(crate) fn coef_of(self, i: usize, v: f32) -> f32 {
        match self.0 {
            Some(n) if v != 0.0 => v / n[i],
            _ => v,
        }
    }

    /// Code value of feature `i` for a decoder coefficient `a`.
    pub(crate) fn code_of(self, i: usize, a: f32) -> f32 {
        match self.0 {
            Some(n) => a * n[i],
            None => a,
        }
    }
}
