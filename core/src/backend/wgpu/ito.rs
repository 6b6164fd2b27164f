//! ITO solvers on the GPU: gradient pursuit and matching pursuit, batched, with
//! the per-step kernels `ito_correlate` (GEMM), `ito_select` (argmax),
//! `ito_direction` + `ito_linesearch` (GP) and `ito_residual`. Orthogonal MP
//! computes each step's correlations `R W_dec^T` on the GPU and keeps its
//! per-row Cholesky refits on the host (`backend::ito`).

use std::sync::Arc;

use saeplug_shaders as sh;

use super::workspace::Call;
use super::{GpuSae, Params, WgpuBackend};
use crate::backend::ito::{Batch, assemble, centred_targets};
use crate::backend::{SparseCodes, rows_of};
use crate::error::Result;
use crate::params::{SolveInfo, Solver, SolverParams};
use crate::sae::Sae;

/// W_dec^T split into column chunks under the binding limit: (first column, width, buffer).
type DecT = Vec<(usize, usize, wgpu::Buffer)>;

impl WgpuBackend {
    /// W_dec^T in column chunks, uploaded on first use.
    fn dec_t<'a>(&self, sae: &Sae, g: &'a Arc<GpuSae>) -> Result<&'a DecT> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let width = self.chunk_width(d, ds)?;
        Ok(g.dec_t.get_or_init(|| {
            self.column_chunks(
                sae.weights().w_dec.as_slice(),
                d,
                ds,
                true,
                width,
                false,
                "W_dec^T chunk",
            )
        }))
    }

    /// Solve on the GPU: MP and GP entirely in kernels; OMP with its correlations
    /// on the GPU and its Cholesky refits on the host.
    pub(crate) fn solve_rows(
        &self,
        sae: &Sae,
        x: &[f32],
        p: &SolverParams,
    ) -> Result<(SparseCodes, SolveInfo)> {
        p.validate(sae)?;
        let mode = match p.solver {
            Solver::GradientPursuit => 0u32,
            Solver::MatchingPursuit => 1,
            Solver::OrthogonalMatchingPursuit => {
                let g = self.gpu_sae(sae)?;
                let dec_t = self.dec_t(sae, &g)?;
                let mut batch = Batch::new(sae, x, p)?;
                while batch.running() {
                    let (resid, q) = batch.residuals_and_correlations();
                    self.correlate(sae, dec_t, resid, q)?;
                    batch.step();
                }
                return Ok(batch.finish());
            }
        };
        let n = rows_of(sae, x)?;
        let (d, ds, k) = (sae.d_in(), sae.d_sae(), p.k_max);
        let g = self.gpu_sae(sae)?;
        let dec_t = self.dec_t(sae, &g)?;
        let target = centred_targets(sae, x);
        let mut support = vec![0u32; n * k];
        let mut coef = vec![0.0f32; n * k];
        let mut count = vec![0u32; n];
        let mut iters = vec![0u32; n];
        let mut resid = target.clone();
        let per = (self.max_chunk / (4 * ds.max(k) as u64)) as usize;
        let per = per.min(self.max_groups as usize).max(1);
        let done = self.call(|c| {
            for r0 in (0..n).step_by(per) {
                let rows = per.min(n - r0);
                let tgt = &target[r0 * d..(r0 + rows) * d];
                let done: Vec<u32> = tgt
                    .chunks_exact(d)
                    .map(|r| r.iter().all(|v| *v == 0.0) as u32)
                    .collect();
                let xbuf = c.upload("targets", tgt);
                let rbuf = c.upload("residual", tgt);
                let qbuf = c.zeroed("correlations", rows * ds);
                let dir = c.zeroed("direction", rows * d);
                let s_buf = c.zeroed("support", rows * k);
                let c_buf = c.zeroed("coef", rows * k);
                let n_buf = c.zeroed("count", rows);
                let d_buf = c.upload("done", &done);
                let i_buf = c.zeroed("iters", rows);
                let state = [&s_buf, &c_buf, &n_buf, &d_buf, &i_buf];
                let base = Params {
                    n_rows: rows as u32,
                    k_dim: d as u32,
                    n_cols: ds as u32,
                    k: k as u32,
                    flags: p.nonnegative as u32,
                    mode,
                    coef: p.tol,
                    ..Default::default()
                };
                // W_dec chunk ci holds features lo..lo+nr; every chunk but the first accumulates.
                let chunk_params = |ci: usize, lo: usize, nr: usize| Params {
                    lo: lo as u32,
                    hi: (lo + nr) as u32,
                    flags: if ci > 0 { 2 } else { 0 },
                    ..base
                };
                for _ in 0..k {
                    self.record_correlate(c, dec_t, base, ds, &rbuf, &qbuf)?;
                    c.dispatch(
                        &sh::ITO_SELECT,
                        &base,
                        &with(&state, &[&qbuf, &g.inv_norm, &rbuf]),
                        (rows as u32, 1, 1),
                    );
                    if mode == 0 {
                        // Direction reads support, count and done only; one pass per W_dec chunk.
                        for (ci, (lo, nr, wbuf)) in g.dec.iter().enumerate() {
                            let pd = chunk_params(ci, *lo, *nr);
                            let b = [
                                (1, &s_buf),
                                (3, &n_buf),
                                (4, &d_buf),
                                (6, &qbuf),
                                (7, wbuf),
                                (8, &dir),
                            ];
                            c.dispatch_at(&sh::ITO_DIRECTION, &pd, &b, self.groups_1d(rows * d)?);
                        }
                        c.dispatch(
                            &sh::ITO_LINESEARCH,
                            &base,
                            &with(&state, &[&qbuf, &dir, &rbuf]),
                            (rows as u32, 1, 1),
                        );
                    }
                    // Residual reads support, coef and count only; one pass per W_dec chunk.
                    for (ci, (lo, nr, wbuf)) in g.dec.iter().enumerate() {
                        let pr = chunk_params(ci, *lo, *nr);
                        let b = [
                            (1, &s_buf),
                            (2, &c_buf),
                            (3, &n_buf),
                            (6, &xbuf),
                            (7, wbuf),
                            (8, &rbuf),
                        ];
                        c.dispatch_at(&sh::ITO_RESIDUAL, &pr, &b, self.groups_1d(rows * d)?);
                    }
                }
                // Host scratch: support | coef | count | iters | residual.
                let (rk, o2, o3, o4) = (
                    rows * k,
                    2 * rows * k,
                    2 * rows * k + rows,
                    2 * (rows * k + rows),
                );
                c.host_resize(o4 + rows * d);
                c.submit_read(&[
                    (&s_buf, rk, 0),
                    (&c_buf, rk, rk),
                    (&n_buf, rows, o2),
                    (&i_buf, rows, o3),
                    (&rbuf, rows * d, o4),
                ])?;
                let h = c.host();
                let words: &[u32] = bytemuck::cast_slice(&h[..]);
                support[r0 * k..(r0 + rows) * k].copy_from_slice(&words[..rk]);
                coef[r0 * k..(r0 + rows) * k].copy_from_slice(&h[rk..o2]);
                count[r0..r0 + rows].copy_from_slice(&words[o2..o3]);
                iters[r0..r0 + rows].copy_from_slice(&words[o3..o4]);
                resid[r0 * d..(r0 + rows) * d].copy_from_slice(&h[o4..o4 + rows * d]);
            }
            Ok(())
        })?;
        drop(done);
        let rows = (0..n).map(|r| {
            let m = count[r] as usize;
            (
                &support[r * k..r * k + m],
                &coef[r * k..r * k + m],
                iters[r],
            )
        });
        Ok(assemble(sae, rows, &resid))
    }
}

impl WgpuBackend {
    /// Record `Q = R W_dec^T` for the `base.n_rows` residual rows of length
    /// `base.k_dim` in `rbuf` into `qbuf` (`[rows, ds]`): one `ito_correlate`
    /// dispatch per W_dec^T column chunk, the rest of `base` passed through.
    fn record_correlate(
        &self,
        c: &mut Call<'_>,
        dec_t: &DecT,
        base: Params,
        ds: usize,
        rbuf: &wgpu::Buffer,
        qbuf: &wgpu::Buffer,
    ) -> Result<()> {
        for (c0, cw, wbuf) in dec_t {
            let pc = Params {
                n_cols: *cw as u32,
                ld_out: ds as u32,
                col_offset: *c0 as u32,
                ld_lhs: base.k_dim,
                ..base
            };
            c.dispatch(
                &sh::ITO_CORRELATE,
                &pc,
                &[rbuf, wbuf, qbuf],
                self.groups_gemm(base.n_rows as usize, *cw)?,
            );
        }
        Ok(())
    }

    /// `Q = R W_dec^T` for residual rows `resid` (`[n, d_in]`) into `q` (`[n, d_sae]`),
    /// written only when the whole product succeeded.
    fn correlate(&self, sae: &Sae, dec_t: &DecT, resid: &[f32], q: &mut [f32]) -> Result<()> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let n = resid.len() / d.max(1);
        let per = (self.max_chunk / (4 * ds.max(d) as u64)) as usize;
        let per = per.min(self.max_groups as usize).max(1);
        let done = self.call(|c| {
            c.host_resize(n * ds);
            for r0 in (0..n).step_by(per) {
                let rows = per.min(n - r0);
                let rbuf = c.upload("residual", &resid[r0 * d..(r0 + rows) * d]);
                let qbuf = c.zeroed("correlations", rows * ds);
                let base = Params {
                    n_rows: rows as u32,
                    k_dim: d as u32,
                    ..Default::default()
                };
                self.record_correlate(c, dec_t, base, ds, &rbuf, &qbuf)?;
                c.submit_read(&[(&qbuf, rows * ds, r0 * ds)])?;
            }
            Ok(())
        })?;
        q.copy_from_slice(done.host());
        Ok(())
    }
}

/// The five state buffers followed by a kernel's own bindings.
fn with<'a>(state: &[&'a wgpu::Buffer], extra: &[&'a wgpu::Buffer]) -> Vec<&'a wgpu::Buffer> {
    state.iter().chain(extra).copied().collect()
}
