//! Buffers, dispatches and read-back for the wgpu backend.

use saeplug_shaders as sh;
use wgpu::util::DeviceExt;

use super::workspace::Call;
use super::{GpuSae, Params, WgpuBackend, topk_mode};
use crate::error::{Error, Result};
use crate::params::Edit;
use crate::sae::{Architecture, Sae, TopKOrder};

impl WgpuBackend {
    /// A read-only storage buffer holding `data` (never empty: wgpu bindings need
    /// a non-zero size, so an empty slice uploads one zero).
    pub(crate) fn storage<T: bytemuck::Pod>(&self, data: &[T], label: &str) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let zero = [0u8; 4];
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: if bytes.is_empty() { &zero } else { bytes },
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            })
    }

    pub(crate) fn groups_1d(&self, threads: usize) -> Result<(u32, u32, u32)> {
        let g = threads.div_ceil(sh::WG_SIZE as usize);
        if g > self.max_groups as usize {
            return Err(Error::Backend(format!(
                "dispatch of {g} workgroups exceeds the adapter's limit {}",
                self.max_groups
            )));
        }
        Ok((g as u32, 1, 1))
    }

    pub(crate) fn groups_gemm(&self, rows: usize, cols: usize) -> Result<(u32, u32, u32)> {
        let (x, y) = (
            cols.div_ceil(sh::TILE_N as usize),
            rows.div_ceil(sh::TILE_M as usize),
        );
        if x.max(y) > self.max_groups as usize {
            return Err(Error::Backend(format!(
                "GEMM grid {x}x{y} exceeds the adapter's limit {}",
                self.max_groups
            )));
        }
        Ok((x as u32, y as u32, 1))
    }

    pub(crate) fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("saeplug"),
            })
    }

    /// Rows per pass so that the widest per-pass buffer fits one binding and the
    /// 1-D dispatches stay within the workgroup limit.
    fn rows_per_pass(&self, width: usize) -> usize {
        let by_bytes = (self.max_chunk / (4 * width.max(1) as u64)) as usize;
        let by_groups = (self.max_groups as usize * sh::WG_SIZE as usize) / width.max(1);
        by_bytes.min(by_groups).min(self.max_groups as usize).max(1)
    }

    /// Encode the preprocessed rows `xc` into the host scratch (`[n, d_sae]`).
    pub(super) fn encode_rows(
        &self,
        c: &mut Call<'_>,
        sae: &Sae,
        g: &GpuSae,
        xc: &[f32],
    ) -> Result<()> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let n = xc.len() / d;
        let per = self.rows_per_pass(ds.max(d));
        c.host_resize(n * ds);
        // The encoder kernel (f32 or f16 weights), the per-feature buffers it binds
        // between b_enc and the output, and its flags.
        let ((k32, k16), extra, flags): ((_, _), Vec<&wgpu::Buffer>, u32) = match sae
            .config()
            .architecture
        {
            Architecture::Standard => ((&sh::ENCODE_STANDARD, &sh::ENCODE_STANDARD_F16), vec![], 0),
            Architecture::JumpRelu => (
                (&sh::ENCODE_JUMPRELU, &sh::ENCODE_JUMPRELU_F16),
                vec![&g.aux],
                0,
            ),
            Architecture::Gated => (
                (&sh::ENCODE_GATED, &sh::ENCODE_GATED_F16),
                vec![&g.aux, &g.aux2],
                0,
            ),
            Architecture::TopK {
                rescale_by_decoder_norm,
                ..
            } => (
                (&sh::ENCODE_PRE, &sh::ENCODE_PRE_F16),
                vec![&g.aux],
                rescale_by_decoder_norm as u32,
            ),
        };
        let kernel = if self.f16 { k16 } else { k32 };
        for r0 in (0..n).step_by(per) {
            let rows = per.min(n - r0);
            let xbuf = c.upload("x", &xc[r0 * d..(r0 + rows) * d]);
            let obuf = c.buffer("features", 4 * (rows * ds) as u64);
            for (c0, cw, wbuf) in &g.enc {
                let p = Params {
                    n_rows: rows as u32,
                    k_dim: d as u32,
                    n_cols: *cw as u32,
                    ld_out: ds as u32,
                    col_offset: *c0 as u32,
                    ld_lhs: d as u32,
                    flags,
                    ..Default::default()
                };
                let mut bufs: Vec<&wgpu::Buffer> = vec![&xbuf, wbuf, &g.b_enc];
                bufs.extend(&extra);
                bufs.push(&obuf);
                c.dispatch(kernel, &p, &bufs, self.groups_gemm(rows, *cw)?);
            }
            if let Architecture::TopK { k, order, .. } = sae.config().architecture {
                let p = Params {
                    n_rows: rows as u32,
                    n_cols: ds as u32,
                    ld_out: ds as u32,
                    k: k as u32,
                    mode: topk_mode(order),
                    ..Default::default()
                };
                if order == TopKOrder::GroupMax {
                    c.dispatch(
                        &sh::GROUPMAX_SELECT,
                        &p,
                        &[&obuf],
                        self.groups_1d(rows * k)?,
                    );
                } else {
                    // One workgroup per row; `rows` <= max_groups by rows_per_pass.
                    c.dispatch(&sh::TOPK_SELECT, &p, &[&obuf], (rows as u32, 1, 1));
                }
            }
            c.submit_read(&[(&obuf, rows * ds, r0 * ds)])?;
        }
        Ok(())
    }

    /// Decode dense codes `f` (`[n, d_sae]`) into the host scratch (`[n, d_in]`),
    /// before denormalisation.
    pub(super) fn decode_rows(
        &self,
        c: &mut Call<'_>,
        sae: &Sae,
        g: &GpuSae,
        f: &[f32],
    ) -> Result<()> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let n = f.len() / ds;
        let f = crate::backend::decoder_input(sae, f);
        let per = self.rows_per_pass(ds.max(d));
        c.host_resize(n * d);
        for r0 in (0..n).step_by(per) {
            let rows = per.min(n - r0);
            let fbuf = c.upload("codes", &f[r0 * ds..(r0 + rows) * ds]);
            let obuf = c.buffer("recon", 4 * (rows * d) as u64);
            for (ci, (r_lo, nr, wbuf)) in g.dec.iter().enumerate() {
                let p = Params {
                    n_rows: rows as u32,
                    k_dim: *nr as u32,
                    n_cols: d as u32,
                    ld_out: d as u32,
                    ld_lhs: ds as u32,
                    lhs_offset: *r_lo as u32,
                    flags: if ci == 0 { 2 } else { 1 },
                    ..Default::default()
                };
                c.dispatch(
                    &sh::DECODE_DENSE,
                    &p,
                    &[&fbuf, wbuf, &g.b_dec, &obuf],
                    self.groups_gemm(rows, d)?,
                );
            }
            c.submit_read(&[(&obuf, rows * d, r0 * d)])?;
        }
        Ok(())
    }

    /// Decode sparse codes into the host scratch (`[n, d_in]`), before denormalisation.
    pub(super) fn decode_sparse_rows(
        &self,
        c: &mut Call<'_>,
        sae: &Sae,
        g: &GpuSae,
        codes: &crate::backend::SparseCodes,
    ) -> Result<()> {
        let d = sae.d_in();
        let n = codes.n_rows();
        // The kernel divides by ||d_i|| (its inv_norm table) when codes are rescaled.
        let rescale = crate::backend::CodeScale::of(sae).norms().is_some();
        let per = self.rows_per_pass(d);
        c.host_resize(n * d);
        let mut offs: Vec<u32> = Vec::with_capacity(per.min(n) + 1);
        for r0 in (0..n).step_by(per) {
            let rows = per.min(n - r0);
            let (a, b) = (codes.row_offsets[r0], codes.row_offsets[r0 + rows]);
            offs.clear();
            offs.extend(
                codes.row_offsets[r0..=r0 + rows]
                    .iter()
                    .map(|o| (o - a) as u32),
            );
            let obuf = c.buffer("recon", 4 * (rows * d) as u64);
            let obuf_offs = c.upload("row_offsets", &offs);
            let ibuf = c.upload("indices", &codes.indices[a..b]);
            let vbuf = c.upload("values", &codes.values[a..b]);
            for (ci, (lo, nr, wbuf)) in g.dec.iter().enumerate() {
                let p = Params {
                    n_rows: rows as u32,
                    n_cols: d as u32,
                    lo: *lo as u32,
                    hi: (*lo + *nr) as u32,
                    flags: (ci > 0) as u32 | if rescale { 2 } else { 0 },
                    ..Default::default()
                };
                c.dispatch(
                    &sh::DECODE_SPARSE,
                    &p,
                    &[&obuf_offs, &ibuf, &vbuf, wbuf, &g.b_dec, &g.inv_norm, &obuf],
                    self.groups_1d(rows * d)?,
                );
            }
            c.submit_read(&[(&obuf, rows * d, r0 * d)])?;
        }
        Ok(())
    }

    /// Apply `edits` to the rows of `x` into the host scratch (`x`'s shape).
    pub(super) fn steer_rows(
        &self,
        c: &mut Call<'_>,
        sae: &Sae,
        g: &GpuSae,
        x: &[f32],
        edits: &[Edit],
        rows: Option<&[usize]>,
    ) -> Result<()> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let n = x.len() / d;
        let w = sae.weights();
        let we = w.w_enc.as_slice();
        let wd = w.w_dec.as_slice();
        let at = |t: &Option<crate::weights::Tensor>, i: usize| {
            t.as_ref().map_or(0.0, |t| t.as_slice()[i])
        };
        // Gather only what the edits touch: O(n_edits * d_in).
        let mut enc_cols = Vec::new();
        let mut dec_rows = Vec::new();
        let mut table = Vec::new();
        let mut vector = vec![0.0f32; d];
        for e in edits {
            let (feature, kind, value) = match e {
                Edit::AddVector { vector: v, coef } => {
                    vector.iter_mut().zip(v).for_each(|(a, b)| *a += coef * b);
                    continue;
                }
                Edit::AddFeature { feature, coef } => (*feature, 0.0, *coef),
                Edit::Clamp { feature, value } => (*feature, 1.0, *value),
                Edit::Ablate { feature } => (*feature, 2.0, 0.0),
                Edit::Scale { feature, factor } => (*feature, 3.0, *factor),
            };
            enc_cols.extend((0..d).map(|j| match sae.enc_layout {
                crate::sae::EncLayout::InBySae => we[j * ds + feature],
                crate::sae::EncLayout::SaeByIn => we[feature * d + j],
            }));
            dec_rows.extend_from_slice(&wd[feature * d..(feature + 1) * d]);
            let er = if sae.config().architecture == Architecture::Gated {
                sae.exp_r_mag()[feature]
            } else {
                1.0
            };
            table.extend_from_slice(&[
                kind,
                value,
                w.b_enc.as_slice()[feature],
                at(&w.threshold, feature),
                er,
                at(&w.b_mag, feature),
                0.0,
                0.0,
            ]);
        }
        let ne = table.len() / 8;
        let mut mask = vec![0u32; n];
        match rows {
            Some(rs) => rs.iter().for_each(|&r| mask[r] = 1),
            None => mask.fill(1),
        }
        let mode = match sae.config().architecture {
            Architecture::Standard => 0,
            Architecture::JumpRelu => 1,
            Architecture::Gated => 2,
            Architecture::TopK { .. } => 0,
        };
        c.host_resize(x.len());
        let xbuf = c.upload("x", x);
        let xin = c.upload("x_in", x);
        let mbuf = c.upload("mask", &mask);
        let colbuf = c.upload("enc_cols", &enc_cols);
        let rowbuf = c.upload("dec_rows", &dec_rows);
        let tbuf = c.upload("edits", &table);
        let vbuf = c.upload("vector", &vector);
        let delta = c.buffer("delta", 4 * (n * ne.max(1)) as u64);
        let p = Params {
            n_rows: n as u32,
            k_dim: d as u32,
            k: ne as u32,
            flags: sae.config().apply_b_dec_to_input as u32,
            mode,
            coef: 1.0,
            ..Default::default()
        };
        if ne > 0 {
            c.dispatch(
                &sh::STEER_DELTA,
                &p,
                &[&xin, &colbuf, &tbuf, &g.b_dec, &mbuf, &delta],
                self.groups_1d(n * ne)?,
            );
        }
        c.dispatch(
            &sh::STEER_APPLY,
            &p,
            &[&delta, &rowbuf, &vbuf, &mbuf, &xbuf],
            self.groups_1d(n * d)?,
        );
        c.submit_read(&[(&xbuf, x.len(), 0)])
    }
}
