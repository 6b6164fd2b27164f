//! Buffers, dispatches and read-back for the wgpu backend.

use saeplug_shaders as sh;
use wgpu::util::DeviceExt;

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

    /// A read-write storage buffer of `n` f32, readable back.
    fn output(&self, n: usize, label: &str) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (4 * n.max(1)) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
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

    /// Record one dispatch of `k` with `p` at binding 0 and `bufs` at 1, 2, ...
    pub(crate) fn dispatch(
        &self,
        enc: &mut wgpu::CommandEncoder,
        k: &sh::Kernel,
        p: &Params,
        bufs: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) {
        let at: Vec<(u32, &wgpu::Buffer)> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32 + 1, *b))
            .collect();
        self.dispatch_at(enc, k, p, &at, groups);
    }

    /// Record one dispatch binding `p` at 0 and each `(binding, buffer)`; kernels
    /// that declare shared state but use only part of it name the used bindings.
    pub(crate) fn dispatch_at(
        &self,
        enc: &mut wgpu::CommandEncoder,
        k: &sh::Kernel,
        p: &Params,
        bufs: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
    ) {
        let pipeline = self.pipeline(k);
        let ubuf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(p),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: ubuf.as_entire_binding(),
        }];
        for (binding, b) in bufs {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: b.as_entire_binding(),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(k.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(k.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// A read-write storage buffer initialised with `data`, readable back.
    pub(crate) fn storage_rw<T: bytemuck::Pod>(&self, data: &[T], label: &str) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let zero = [0u8; 4];
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: if bytes.is_empty() { &zero } else { bytes },
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Copy `src` back into `dst` (after all submitted work).
    pub(crate) fn read_into<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        dst: &mut [T],
    ) -> Result<()> {
        let enc = self.encoder();
        self.finish_into(enc, src, dst)
    }

    pub(crate) fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("saeplug"),
            })
    }

    /// Submit `enc` after copying `src` to a staging buffer; read it into `dst`.
    fn finish_into<T: bytemuck::Pod>(
        &self,
        mut enc: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &mut [T],
    ) -> Result<()> {
        let size = std::mem::size_of_val(dst) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: size.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if size > 0 {
            enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        }
        let idx = self.queue.submit([enc.finish()]);
        if size == 0 {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| Error::Backend(format!("wgpu poll: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Backend("buffer map callback never ran".into()))?
            .map_err(|e| Error::Backend(format!("buffer map failed: {e}")))?;
        {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Backend(format!("mapped range: {e}")))?;
            dst.copy_from_slice(bytemuck::cast_slice(&view[..size as usize]));
        }
        staging.unmap();
        Ok(())
    }

    /// Rows per pass so that the widest per-pass buffer fits one binding and the
    /// 1-D dispatches stay within the workgroup limit.
    fn rows_per_pass(&self, width: usize) -> usize {
        let by_bytes = (self.max_chunk / (4 * width.max(1) as u64)) as usize;
        let by_groups = (self.max_groups as usize * sh::WG_SIZE as usize) / width.max(1);
        by_bytes.min(by_groups).min(self.max_groups as usize).max(1)
    }

    pub(super) fn encode_rows(
        &self,
        sae: &Sae,
        g: &GpuSae,
        xc: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let n = xc.len() / d;
        let per = self.rows_per_pass(ds.max(d));
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
            let xbuf = self.storage(&xc[r0 * d..(r0 + rows) * d], "x");
            let obuf = self.output(rows * ds, "features");
            let mut enc = self.encoder();
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
                self.dispatch(&mut enc, kernel, &p, &bufs, self.groups_gemm(rows, *cw)?);
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
                    self.dispatch(
                        &mut enc,
                        &sh::GROUPMAX_SELECT,
                        &p,
                        &[&obuf],
                        self.groups_1d(rows * k)?,
                    );
                } else {
                    // One workgroup per row; `rows` <= max_groups by rows_per_pass.
                    self.dispatch(
                        &mut enc,
                        &sh::TOPK_SELECT,
                        &p,
                        &[&obuf],
                        (rows as u32, 1, 1),
                    );
                }
            }
            self.finish_into(enc, &obuf, &mut out[r0 * ds..(r0 + rows) * ds])?;
        }
        Ok(())
    }

    pub(super) fn decode_rows(
        &self,
        sae: &Sae,
        g: &GpuSae,
        f: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let n = f.len() / ds;
        let f = crate::backend::decoder_input(sae, f);
        let per = self.rows_per_pass(ds.max(d));
        for r0 in (0..n).step_by(per) {
            let rows = per.min(n - r0);
            let fr = &f[r0 * ds..(r0 + rows) * ds];
            let fbuf = self.storage(fr, "codes");
            let obuf = self.output(rows * d, "recon");
            let mut enc = self.encoder();
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
                self.dispatch(
                    &mut enc,
                    &sh::DECODE_DENSE,
                    &p,
                    &[&fbuf, wbuf, &g.b_dec, &obuf],
                    self.groups_gemm(rows, d)?,
                );
            }
            self.finish_into(enc, &obuf, &mut out[r0 * d..(r0 + rows) * d])?;
        }
        Ok(())
    }

    pub(super) fn decode_sparse_rows(
        &self,
        sae: &Sae,
        g: &GpuSae,
        codes: &crate::backend::SparseCodes,
        out: &mut [f32],
    ) -> Result<()> {
        let d = sae.d_in();
        let n = codes.n_rows();
        // The kernel divides by ||d_i|| (its inv_norm table) when codes are rescaled.
        let rescale = crate::backend::CodeScale::of(sae).norms().is_some();
        let per = self.rows_per_pass(d);
        for r0 in (0..n).step_by(per) {
            let rows = per.min(n - r0);
            let (a, b) = (codes.row_offsets[r0], codes.row_offsets[r0 + rows]);
            let offs: Vec<u32> = codes.row_offsets[r0..=r0 + rows]
                .iter()
                .map(|o| (o - a) as u32)
                .collect();
            let obuf = self.output(rows * d, "recon");
            let obuf_offs = self.storage(&offs, "row_offsets");
            let ibuf = self.storage(&codes.indices[a..b], "indices");
            let vbuf = self.storage(&codes.values[a..b], "values");
            let mut enc = self.encoder();
            for (ci, (lo, nr, wbuf)) in g.dec.iter().enumerate() {
                let p = Params {
                    n_rows: rows as u32,
                    n_cols: d as u32,
                    lo: *lo as u32,
                    hi: (*lo + *nr) as u32,
                    flags: (ci > 0) as u32 | if rescale { 2 } else { 0 },
                    ..Default::default()
                };
                self.dispatch(
                    &mut enc,
                    &sh::DECODE_SPARSE,
                    &p,
                    &[&obuf_offs, &ibuf, &vbuf, wbuf, &g.b_dec, &g.inv_norm, &obuf],
                    self.groups_1d(rows * d)?,
                );
            }
            self.finish_into(enc, &obuf, &mut out[r0 * d..(r0 + rows) * d])?;
        }
        Ok(())
    }

    pub(super) fn steer_rows(
        &self,
        sae: &Sae,
        x: &mut [f32],
        edits: &[Edit],
        rows: Option<&[usize]>,
    ) -> Result<()> {
        let g = self.gpu_sae(sae)?;
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
        let xbuf = self.output(x.len(), "x");
        self.queue.write_buffer(&xbuf, 0, bytemuck::cast_slice(x));
        let xin = self.storage(x, "x_in");
        let mbuf = self.storage(&mask, "mask");
        let colbuf = self.storage(&enc_cols, "enc_cols");
        let rowbuf = self.storage(&dec_rows, "dec_rows");
        let tbuf = self.storage(&table, "edits");
        let vbuf = self.storage(&vector, "vector");
        let delta = self.output(n * ne.max(1), "delta");
        let mut enc = self.encoder();
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
            self.dispatch(
                &mut enc,
                &sh::STEER_DELTA,
                &p,
                &[&xin, &colbuf, &tbuf, &g.b_dec, &mbuf, &delta],
                self.groups_1d(n * ne)?,
            );
        }
        self.dispatch(
            &mut enc,
            &sh::STEER_APPLY,
            &p,
            &[&delta, &rowbuf, &vbuf, &mbuf, &xbuf],
            self.groups_1d(n * d)?,
        );
        self.finish_into(enc, &xbuf, x)
    }
}
