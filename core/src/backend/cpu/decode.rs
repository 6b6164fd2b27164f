//! CPU decode: dense (GEMM) and sparse (O(nnz · d_in) row gather).

use super::gemm::{MatRef, sgemm_col_blocks};
use super::{CpuBackend, par_rows};
use crate::backend::edits::check_finite_output;
use crate::backend::{
    CodeScale, Denorm, SparseCodes, apply_denorm, check_decode, check_denorm, check_len,
    decoder_input,
};
use crate::error::Result;
use crate::sae::Sae;

pub(super) fn decode_dense(
    cpu: &CpuBackend,
    sae: &Sae,
    f: &[f32],
    denorm: &[Denorm],
    out: &mut [f32],
) -> Result<()> {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let n = check_decode(sae, f, denorm, out)?;
    let f = decoder_input(sae, f);
    let a = MatRef {
        data: &f,
        rows: n,
        cols: ds,
        rs: ds,
        cs: 1,
    };
    let w = MatRef {
        data: sae.weights().w_dec.as_slice(),
        rows: ds,
        cols: d,
        rs: d,
        cs: 1,
    };
    sgemm_col_blocks(a, w, out, cpu)?;
    let b = sae.weights().b_dec.as_slice();
    for row in out.chunks_exact_mut(d) {
        row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
    }
    apply_denorm(out, d, denorm);
    check_finite_output("decoded activations", out, d)
}

pub(super) fn decode_sparse(
    cpu: &CpuBackend,
    sae: &Sae,
    codes: &SparseCodes,
    out: &mut [f32],
) -> Result<()> {
    codes.validate(sae)?;
    let d = sae.d_in();
    let n = codes.n_rows();
    check_len("decode output", out.len(), n * d)?;
    check_denorm(sae, &codes.denorm, n)?;
    let wd = sae.weights().w_dec.as_slice();
    let b = sae.weights().b_dec.as_slice();
    let scale = CodeScale::of(sae);
    par_rows(cpu, out, d, |first, rows| {
        for (j, row) in rows.chunks_exact_mut(d).enumerate() {
            row.copy_from_slice(b);
            let (idx, val) = codes.row(first + j);
            for (&i, &v) in idx.iter().zip(val) {
                let i = i as usize;
                let c = scale.coef_of(i, v);
                for (o, w) in row.iter_mut().zip(&wd[i * d..(i + 1) * d]) {
                    *o += c * w;
                }
            }
        }
    });
    apply_denorm(out, d, &codes.denorm);
    check_finite_output("decoded activations", out, d)
}
