//! CPU ITO: the batched correlations `R W_dec^T` by the blocked GEMM, the
//! per-row steps of `backend::ito`.

use super::CpuBackend;
use super::gemm::{MatRef, sgemm_col_blocks};
use crate::backend::SparseCodes;
use crate::backend::ito::Batch;
use crate::error::Result;
use crate::params::{SolveInfo, SolverParams};
use crate::sae::Sae;

pub(super) fn solve(
    cpu: &CpuBackend,
    sae: &Sae,
    x: &[f32],
    p: &SolverParams,
) -> Result<(SparseCodes, SolveInfo)> {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let wt = MatRef {
        data: sae.weights().w_dec.as_slice(),
        rows: d,
        cols: ds,
        rs: 1,
        cs: d,
    };
    let mut batch = Batch::new(sae, x, p)?;
    while batch.running() {
        let (resid, q) = batch.residuals_and_correlations();
        let a = MatRef {
            data: resid,
            rows: resid.len() / d.max(1),
            cols: d,
            rs: d,
            cs: 1,
        };
        sgemm_col_blocks(a, wt, q, cpu)?;
        batch.step();
    }
    Ok(batch.finish())
}
