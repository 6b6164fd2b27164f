//! CPU encode: normalise, subtract b_dec, one GEMM, then each architecture's activation.

use super::gemm::{MatRef, sgemm_col_blocks};
use super::{CpuBackend, par_rows};
use crate::backend::edits::check_finite_output;
use crate::backend::{CodeScale, Denorm, SparseCodes, check_len, preprocess, rows_of};
use crate::error::Result;
use crate::sae::{Architecture, EncLayout, Sae, TopKOrder};

/// `xc @ W_enc` into `pre` (`[n, d_sae]`), no bias.
pub(crate) fn encoder_gemm(cpu: &CpuBackend, sae: &Sae, xc: &[f32], pre: &mut [f32]) -> Result<()> {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let n = xc.len() / d;
    let a = MatRef {
        data: xc,
        rows: n,
        cols: d,
        rs: d,
        cs: 1,
    };
    let (rs, cs) = match sae.enc_layout {
        EncLayout::InBySae => (ds, 1),
        EncLayout::SaeByIn => (1, d),
    };
    let b = MatRef {
        data: sae.weights().w_enc.as_slice(),
        rows: d,
        cols: ds,
        rs,
        cs,
    };
    sgemm_col_blocks(a, b, pre, cpu)
}

/// Turn one row of `xc @ W_enc` into dense activations, in place.
/// `scratch` is reused for top-k selection.
fn activate_row(sae: &Sae, row: &mut [f32], scratch: &mut Vec<u32>) {
    let w = sae.weights();
    let b = w.b_enc.as_slice();
    match sae.config().architecture {
        Architecture::Standard => {
            for (v, b) in row.iter_mut().zip(b) {
                *v = (*v + b).max(0.0);
            }
        }
        Architecture::JumpRelu => {
            let th = w.threshold.as_ref().map_or(&[][..], |t| t.as_slice());
            for ((v, b), t) in row.iter_mut().zip(b).zip(th) {
                let p = *v + b;
                *v = if p > *t { p.max(0.0) } else { 0.0 };
            }
        }
        Architecture::Gated => {
            let er = sae.exp_r_mag();
            let bm = w.b_mag.as_ref().map_or(&[][..], |t| t.as_slice());
            for (((v, bg), e), bm) in row.iter_mut().zip(b).zip(er).zip(bm) {
                let gate = *v + bg > 0.0;
                let mag = (*v * e + bm).max(0.0);
                *v = if gate { mag } else { 0.0 };
            }
        }
        Architecture::TopK { k, order, .. } => {
            for (v, b) in row.iter_mut().zip(b) {
                *v += b;
            }
            if let Some(norms) = CodeScale::of(sae).norms() {
                // Codes in SAE units (`CodeScale`): the pre-activation times ||d_i||.
                row.iter_mut().zip(norms).for_each(|(v, n)| *v *= n);
            }
            topk_row(row, k, order, scratch);
        }
    }
}

/// Keep the top-k of `row` (pre-activations) per `order`, zero the rest, in place.
pub(crate) fn topk_row(row: &mut [f32], k: usize, order: TopKOrder, scratch: &mut Vec<u32>) {
    let n = row.len();
    match order {
        TopKOrder::GroupMax => {
            let g = n / k;
            for grp in row.chunks_exact_mut(g) {
                let (mut bi, mut bv) = (0, f32::NEG_INFINITY);
                for (i, v) in grp.iter().enumerate() {
                    if *v > bv {
                        (bi, bv) = (i, *v);
                    }
                }
                grp.fill(0.0);
                grp[bi] = bv.max(0.0);
            }
            return;
        }
        TopKOrder::ReluThenTopK => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        TopKOrder::TopKThenRelu | TopKOrder::Signed => {}
    }
    if k >= n {
        if order == TopKOrder::TopKThenRelu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        return;
    }
    scratch.clear();
    scratch.extend(0..n as u32);
    let key = |i: &u32| -> f32 {
        let v = row[*i as usize];
        if order == TopKOrder::Signed {
            v.abs()
        } else {
            v
        }
    };
    // Descending by key; ties broken by the lower index first.
    scratch.select_nth_unstable_by(k - 1, |a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
    let kept: Vec<(u32, f32)> = scratch[..k]
        .iter()
        .map(|&i| {
            let v = row[i as usize];
            let v = if order == TopKOrder::TopKThenRelu {
                v.max(0.0)
            } else {
                v
            };
            (i, v)
        })
        .collect();
    row.fill(0.0);
    for (i, v) in kept {
        row[i as usize] = v;
    }
}

/// Pre-activations for a batch: `[n, d_sae]` of `xc @ W_enc` plus denorm.
fn pre_activations(
    cpu: &CpuBackend,
    sae: &Sae,
    x: &[f32],
    out: &mut [f32],
) -> Result<(usize, Vec<Denorm>)> {
    let n = rows_of(sae, x)?;
    check_len("encode output", out.len(), n * sae.d_sae())?;
    let (xc, denorm) = preprocess(sae, x, n)?;
    encoder_gemm(cpu, sae, &xc, out)?;
    Ok((n, denorm))
}

pub(super) fn encode_dense(
    cpu: &CpuBackend,
    sae: &Sae,
    x: &[f32],
    out: &mut [f32],
) -> Result<Vec<Denorm>> {
    let (_, denorm) = pre_activations(cpu, sae, x, out)?;
    let ds = sae.d_sae();
    // Warm the lazily computed tables before threads race to them.
    let _ = (CodeScale::of(sae), sae.exp_r_mag());
    par_rows(cpu, out, ds, |_, rows| {
        let mut scratch = Vec::new();
        for row in rows.chunks_exact_mut(ds) {
            activate_row(sae, row, &mut scratch);
        }
    });
    check_finite_output("encoded features", out, ds)?;
    Ok(denorm)
}

pub(super) fn encode_sparse(cpu: &CpuBackend, sae: &Sae, x: &[f32]) -> Result<SparseCodes> {
    let ds = sae.d_sae();
    let n = rows_of(sae, x)?;
    let mut dense = vec![0.0f32; n * ds];
    let denorm = encode_dense(cpu, sae, x, &mut dense)?;
    Ok(SparseCodes::from_dense(&dense, ds, denorm))
}
