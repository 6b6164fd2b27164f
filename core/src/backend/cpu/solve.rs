//! CPU ITO: the batched correlations `R W_dec^T` by the blocked GEMM against
//! W_decᵀ packed once per SAE (zero-copy storage packs it slice by slice), the
//! per-row steps of `backend::ito`.

use super::CpuBackend;
use super::encode::packed_weights;
use super::gemm::{MatRef, sgemm_epilogue, sgemm_packed};
use super::kernel::WeightStorage;
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
    let packed = match cpu.weight_storage() {
        WeightStorage::ZeroCopy => None,
        // Correlations pick features: they stay f32 even with bf16 encoder storage.
        _ => Some(packed_weights(cpu, sae, 1, wt, false)?),
    };
    while batch.running() {
        let (resid, q) = batch.residuals_and_correlations();
        let a = MatRef {
            data: resid,
            rows: resid.len() / d.max(1),
            cols: d,
            rs: d,
            cs: 1,
        };
        match &packed {
            Some(pw) => sgemm_packed(cpu, a, &pw.0, q, None)?,
            None => sgemm_epilogue(cpu, a, wt, q, None)?,
        }
        batch.step();
    }
    Ok(batch.finish())
}
