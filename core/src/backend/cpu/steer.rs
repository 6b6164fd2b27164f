//! CPU feature edits: the activation of one feature in O(d_in) (standard,
//! jumprelu, gated), or from the row's encoding (top-k) or an ITO solve.

use super::CpuBackend;
use super::encode::encode_dense;
use super::solve;
use crate::backend::edits::{
    Selection, activations_from_codes, apply_with, check_row_feature, reads_activation,
};
use crate::backend::preprocess;
use crate::error::Result;
use crate::params::{Edit, FeatureSource};
use crate::sae::{Architecture, EncLayout, Sae};

/// Activation of feature `i` for one row, computing only that feature where the
/// architecture allows (top-k needs the row's k-th value: the row is encoded).
pub(super) fn feature_activation(cpu: &CpuBackend, sae: &Sae, x: &[f32], i: usize) -> Result<f32> {
    check_row_feature(sae, x, i)?;
    activation(cpu, sae, x, i)
}

/// [`feature_activation`] for a row and feature already checked.
fn activation(cpu: &CpuBackend, sae: &Sae, x: &[f32], i: usize) -> Result<f32> {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    if let Architecture::TopK { .. } = sae.config().architecture {
        let mut row = vec![0.0f32; ds];
        encode_dense(&cpu.single(), sae, x, &mut row)?;
        return Ok(row[i]);
    }
    let (xc, _) = preprocess(sae, x, 1)?;
    let w = sae.weights();
    let we = w.w_enc.as_slice();
    let col: f32 = match sae.enc_layout {
        EncLayout::InBySae => {
            // Column i of W_enc is strided by d_sae: every load is a cache miss, so
            // keep several independent sums in flight instead of one chain of adds.
            let mut acc = [0.0f32; 8];
            for (j, v) in xc.iter().enumerate() {
                acc[j % 8] += v * we[j * ds + i];
            }
            acc.iter().sum()
        }
        EncLayout::SaeByIn => xc
            .iter()
            .zip(&we[i * d..(i + 1) * d])
            .map(|(a, b)| a * b)
            .sum(),
    };
    let b = w.b_enc.as_slice()[i];
    Ok(match sae.config().architecture {
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
        Architecture::Standard | Architecture::TopK { .. } => (col + b).max(0.0),
    })
}

/// Apply `edits` to the selected rows of `x` on a copy, written back only when
/// every row succeeded and stayed finite.
pub(super) fn steer(
    cpu: &CpuBackend,
    sae: &Sae,
    x: &mut [f32],
    edits: &[Edit],
    rows: Option<&[usize]>,
    source: &FeatureSource,
) -> Result<()> {
    let Some(mut sel) = Selection::take(sae, x, edits, rows)? else {
        return Ok(());
    };
    let d = sae.d_in();
    // The activations every edit reads, from the unedited rows.
    let acts = match source {
        FeatureSource::Encoder => {
            let mut acts = Vec::new();
            for row in sel.rows().chunks_exact(d) {
                for e in edits {
                    acts.push(match reads_activation(e) {
                        // validate_edits checked the rows and the features.
                        Some(i) => activation(cpu, sae, row, i)?,
                        None => 0.0,
                    });
                }
            }
            acts
        }
        // One batched solve over the selected rows.
        FeatureSource::Solver(p) => {
            activations_from_codes(&solve::solve(cpu, sae, sel.rows(), p)?.0, edits)
        }
    };
    apply_with(sae, sel.rows(), edits, &acts);
    sel.commit(x)
}
