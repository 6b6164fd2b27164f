//! [`TrainOps`] on the wgpu backend: each primitive is a WGSL kernel
//! (`train_gemm` for the dense products, the sparse decode kernel
//! `decode_sparse` for [`TrainOps::gather_add`], `train_row_dots`, `train_adam`,
//! `train_topk`, `train_sum_squares`). Each call uploads its operands into the
//! buffers of a pooled workspace (reused between calls, grown only when a larger
//! shape comes), runs, and reads its result back; the caller's output is written
//! only after the whole call succeeded. Parameters and moments stay resident:
//! [`TrainOps::adam`] updates device copies in place (a `Resident` cache keyed by
//! the tensors' full contents, so a tensor changed on the host simply misses), and
//! a weight operand equal to one of them is bound without an upload. Work larger than one storage binding
//! (or one dispatch) is split into row passes and weight chunks; a shape that
//! cannot be split (one row wider than a binding) is an `Unsupported` error.
//!
//! Precision: f32 with fused multiply-adds, so results differ from the CPU
//! backend's by rounding only (the parity tests allow 1e-4 relative to the
//! operands' scale); [`TrainOps::top_k_rows`] is exact (same total order and
//! ties as the CPU); [`TrainOps::sum_squares`] adds f32 partial sums of 4096
//! elements in f64 (relative error below 1e-5).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::backend::train_ops::TrainOps;
//! use saeplug::{WgpuBackend, WgpuOptions};
//! let gpu = match WgpuBackend::new(WgpuOptions::default()) {
//!     Ok(gpu) => gpu,
//!     Err(e) => {
//!         eprintln!("no GPU adapter here: {e}");
//!         return Ok(());
//!     }
//! };
//! let mut h = [0.0; 3];
//! gpu.affine_t(&[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[0.5, 0.0, 0.0], 2, &mut h)?;
//! assert_eq!(h, [1.5, 2.0, 3.0]);
//! # Ok(()) }
//! ```

use saeplug_shaders as sh;

use super::workspace::Call;
use super::{Params, WgpuBackend, lock};
use crate::backend::SparseCodes;
use crate::backend::train_ops::{
    AdamStep, TrainOps, adam_shape, affine_shape, gather_shape, matmul_shape, row_dots_shape,
    top_k_shape,
};
use crate::error::{Error, Result};

/// Elements one workgroup of `train_sum_squares` reduces.
const SUMSQ_BLOCK: usize = 4096;

/// Tensors a `Resident` cache keeps at most (a training step has 5 parameter
/// tensors and their 2 moments: 15).
const RESIDENT_MAX: usize = 24;

/// Bytes a `Resident` cache keeps at most on the device (and as host copies).
const RESIDENT_MAX_BYTES: usize = 4 << 30;

/// Largest tensor kept resident: 1/16 of the cache, so that a step's 15 tensors
/// all fit and never evict each other (larger ones are uploaded every call).
const RESIDENT_MAX_TENSOR: usize = RESIDENT_MAX_BYTES / 16;

/// Training tensors kept on the device between calls: the parameters and Adam
/// moments that [`TrainOps::adam`] updated, each with a host copy of its
/// contents. An operand whose contents equal an entry's (compared in full, so a
/// host tensor changed behind the backend's back simply misses) is bound from
/// the device instead of being uploaded again; Adam updates its entries in place.
#[derive(Default)]
pub(crate) struct Resident {
    entries: Vec<Entry>,
    /// Use counter (LRU) and id source.
    clock: u64,
    /// Operands bound from the device instead of uploaded (tests).
    pub(crate) hits: u64,
}

struct Entry {
    id: u64,
    host: Vec<f32>,
    buf: wgpu::Buffer,
    used: u64,
}

impl Resident {
    /// The id of an entry holding exactly `data`, other than those in `skip`.
    fn find(&mut self, data: &[f32], skip: &[u64]) -> Option<u64> {
        let e = self.entries.iter_mut().find(|e| {
            !skip.contains(&e.id) && e.host.len() == data.len() && same_bits(&e.host, data)
        })?;
        self.clock += 1;
        e.used = self.clock;
        self.hits += 1;
        Some(e.id)
    }

    fn entry(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }

    /// Keep `buf` holding `data`, evicting the least recently used entries (never
    /// those in `keep`) over the limits. Returns the new entry's id.
    fn insert(&mut self, host: Vec<f32>, buf: wgpu::Buffer, keep: &[u64]) -> u64 {
        self.clock += 1;
        let id = self.clock;
        self.entries.push(Entry {
            id,
            host,
            buf,
            used: id,
        });
        loop {
            let bytes: usize = self.entries.iter().map(|e| 4 * e.host.len()).sum();
            if self.entries.len() <= RESIDENT_MAX && bytes <= RESIDENT_MAX_BYTES {
                break;
            }
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.id != id && !keep.contains(&e.id))
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i);
            let Some(v) = victim else { break };
            self.entries.swap_remove(v).buf.destroy();
        }
        id
    }

    pub(crate) fn clear(&mut self) {
        for e in self.entries.drain(..) {
            e.buf.destroy();
        }
    }
}

/// Bit-identical slices (so -0.0 and 0.0 differ, and a NaN equals itself).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    bytemuck::cast_slice::<f32, u32>(a) == bytemuck::cast_slice::<f32, u32>(b)
}

/// `n` as a kernel index, or an error when it does not fit in u32.
fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        Error::Unsupported(format!(
            "{what} ({n}) exceeds the GPU kernels' 32-bit indices"
        ))
    })
}

impl WgpuBackend {
    /// f32 elements in one storage binding.
    fn binding_floats(&self) -> usize {
        usize::try_from(self.max_chunk / 4).unwrap_or(usize::MAX)
    }

    /// A row of `width` floats must fit one binding.
    fn fits(&self, width: usize, what: &str) -> Result<()> {
        if width > self.binding_floats() {
            return Err(Error::Unsupported(format!(
                "{what}: one row of {width} floats exceeds this adapter's storage binding ({} bytes)",
                self.max_chunk
            )));
        }
        Ok(())
    }

    /// Rows of `width` floats per pass: the block fits one binding and `threads_per_row`
    /// invocations per row stay within a 1-D dispatch.
    fn rows_per(&self, width: usize, threads_per_row: usize) -> usize {
        let by_bytes = self.binding_floats() / width.max(1);
        let by_groups = self.max_groups as usize * sh::WG_SIZE as usize / threads_per_row.max(1);
        by_bytes.min(by_groups).max(1)
    }

    /// The device copy of a resident tensor holding exactly `data` (no transfer),
    /// else `data` uploaded to the workspace buffer `role`.
    fn weights(
        &self,
        res: &mut Resident,
        c: &mut Call<'_>,
        role: &'static str,
        data: &[f32],
    ) -> wgpu::Buffer {
        match res.find(data, &[]).and_then(|id| res.entry(id)) {
            Some(e) => e.buf.clone(),
            None => c.upload(role, data),
        }
    }

    /// A new device buffer holding `data`, readable back (a resident tensor).
    fn resident_buffer(&self, data: &[f32]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("resident training tensor"),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Record one `train_gemm` dispatch.
    #[allow(clippy::too_many_arguments, reason = "the GEMM's shape and strides")]
    fn gemm_dispatch(
        &self,
        c: &mut Call<'_>,
        (m, k, n): (usize, usize, usize),
        (ld_lhs, lhs_offset, ld_rhs): (usize, usize, usize),
        (ld_out, col_offset): (usize, usize),
        flags: u32,
        bufs: [&wgpu::Buffer; 4],
    ) -> Result<()> {
        let p = Params {
            n_rows: u32_of(m, "GEMM rows")?,
            k_dim: u32_of(k, "GEMM depth")?,
            n_cols: u32_of(n, "GEMM columns")?,
            ld_out: u32_of(ld_out, "GEMM output stride")?,
            col_offset: u32_of(col_offset, "GEMM column offset")?,
            ld_lhs: u32_of(ld_lhs, "GEMM left stride")?,
            lhs_offset: u32_of(lhs_offset, "GEMM left offset")?,
            flags,
            k: u32_of(ld_rhs, "GEMM right stride")?,
            ..Default::default()
        };
        c.dispatch(&sh::TRAIN_GEMM, &p, &bufs, self.groups_gemm(m, n)?);
        Ok(())
    }
}

impl TrainOps for WgpuBackend {
    fn affine_t(
        &self,
        x: &[f32],
        w_t: &[f32],
        bias: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let (rows, n) = affine_shape(x, w_t, bias, d, out)?;
        if rows == 0 {
            return Ok(());
        }
        self.fits(d.max(n), "affine_t")?;
        // W^T rows (output columns) per chunk, a multiple of the GEMM tile.
        let fit = self.binding_floats() / d;
        let wrows = if fit >= 64 { fit / 64 * 64 } else { fit }.min(n);
        let chunks: Vec<(usize, usize)> = (0..n)
            .step_by(wrows)
            .map(|j0| (j0, wrows.min(n - j0)))
            .collect();
        let per = self
            .rows_per(d.max(n), 1)
            .min(self.max_groups as usize * sh::TILE_M as usize);
        let mut res = lock(&self.resident);
        let done = self.call(|c| {
            c.host_resize(rows * n);
            let bbuf = c.upload("t_bias", bias);
            // One chunk: W^T bound once for every row pass (resident when Adam made it).
            let single = (chunks.len() == 1).then(|| self.weights(&mut res, c, "t_w", w_t));
            for r0 in (0..rows).step_by(per) {
                let rr = per.min(rows - r0);
                let xbuf = c.upload("t_x", &x[r0 * d..(r0 + rr) * d]);
                let obuf = c.buffer("t_out", 4 * (rr * n) as u64);
                for (ci, &(j0, nj)) in chunks.iter().enumerate() {
                    let wbuf = match &single {
                        Some(b) => b.clone(),
                        None => c.upload("t_w", &w_t[j0 * d..(j0 + nj) * d]),
                    };
                    // flags: bias (bit 1), W read transposed (bit 3).
                    self.gemm_dispatch(
                        c,
                        (rr, d, nj),
                        (d, 0, d),
                        (n, j0),
                        2 | 8,
                        [&xbuf, &wbuf, &bbuf, &obuf],
                    )?;
                    if ci + 1 < chunks.len() {
                        c.submit_read(&[])?;
                    }
                }
                c.submit_read(&[(&obuf, rr * n, r0 * n)])?;
            }
            Ok(())
        })?;
        out.copy_from_slice(done.host());
        Ok(())
    }

    fn matmul(
        &self,
        a: &[f32],
        k: usize,
        a_t: bool,
        b: &[f32],
        out: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        let (m, n) = matmul_shape(a, k, b, out)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let maxf = self.binding_floats();
        // A stored [m, k] is bound by whole rows of a row pass (columns picked by
        // lhs_offset); A stored [k, m] by whole rows of a depth block.
        let a_row = if a_t { m } else { k };
        self.fits(a_row.max(n), "matmul")?;
        let per_m = (maxf / if a_t { n } else { n.max(k) })
            .min(self.max_groups as usize * sh::TILE_M as usize)
            .min(m)
            .max(1);
        let per_k = (maxf / if a_t { n.max(m) } else { n }).min(k).max(1);
        let base_flags = if a_t { 4 } else { 0 };
        let mut res = lock(&self.resident);
        let done = self.call(|c| {
            c.host_resize(m * n);
            let bias = c.buffer("t_bias", 4);
            for m0 in (0..m).step_by(per_m) {
                let mm = per_m.min(m - m0);
                let obuf = if accumulate {
                    c.upload("t_out", &out[m0 * n..(m0 + mm) * n])
                } else {
                    c.buffer("t_out", 4 * (mm * n) as u64)
                };
                let a_rows = (!a_t).then(|| c.upload("t_x", &a[m0 * k..(m0 + mm) * k]));
                for k0 in (0..k).step_by(per_k) {
                    let kk = per_k.min(k - k0);
                    let bbuf = if kk == k {
                        self.weights(&mut res, c, "t_w", b)
                    } else {
                        c.upload("t_w", &b[k0 * n..(k0 + kk) * n])
                    };
                    let (abuf, ld_lhs, lhs_offset) = match &a_rows {
                        Some(ab) => (ab.clone(), k, k0),
                        None => (c.upload("t_x", &a[k0 * m..(k0 + kk) * m]), m, m0),
                    };
                    let acc = accumulate || k0 > 0;
                    self.gemm_dispatch(
                        c,
                        (mm, kk, n),
                        (ld_lhs, lhs_offset, n),
                        (n, 0),
                        base_flags | acc as u32,
                        [&abuf, &bbuf, &bias, &obuf],
                    )?;
                    if k0 + kk < k {
                        c.submit_read(&[])?;
                    }
                }
                c.submit_read(&[(&obuf, mm * n, m0 * n)])?;
            }
            Ok(())
        })?;
        out.copy_from_slice(done.host());
        Ok(())
    }

    fn gather_add(
        &self,
        codes: &SparseCodes,
        mat: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()> {
        gather_shape(codes, mat, d, out)?;
        let rows = codes.n_rows();
        if rows == 0 || codes.indices.is_empty() {
            return Ok(());
        }
        self.fits(d, "gather_add")?;
        let maxf = self.binding_floats();
        let mrows = (maxf / d).max(1);
        let n_mat = mat.len() / d;
        let chunks: Vec<(usize, usize)> = (0..n_mat)
            .step_by(mrows)
            .map(|i0| (i0, mrows.min(n_mat - i0)))
            .collect();
        let per = self.rows_per(d, d);
        let mut offs: Vec<u32> = Vec::new();
        let mut res = lock(&self.resident);
        let done = self.call(|c| {
            c.host_resize(rows * d);
            // decode_sparse with accumulate and no rescale: b_dec and inv_norm unused.
            let dummy = c.buffer("t_bias", 4);
            let single = (chunks.len() == 1).then(|| self.weights(&mut res, c, "t_w", mat));
            let mut r0 = 0;
            while r0 < rows {
                // Rows while the pass's entries fit one binding (at least one row).
                let mut r1 = (r0 + per).min(rows);
                while r1 > r0 + 1 && codes.row_offsets[r1] - codes.row_offsets[r0] > maxf {
                    r1 = r0 + (r1 - r0) / 2;
                }
                let (a, z) = (codes.row_offsets[r0], codes.row_offsets[r1]);
                if z - a > maxf {
                    return Err(Error::Unsupported(format!(
                        "gather_add: row {r0} has {} entries, more than one storage binding holds",
                        z - a
                    )));
                }
                let rr = r1 - r0;
                offs.clear();
                for o in &codes.row_offsets[r0..=r1] {
                    offs.push(u32_of(o - a, "gather entries")?);
                }
                let obuf = c.upload("t_out", &out[r0 * d..r1 * d]);
                let ob = c.upload("t_offsets", &offs);
                let ib = c.upload("t_indices", &codes.indices[a..z]);
                let vb = c.upload("t_values", &codes.values[a..z]);
                for (ci, &(i0, ni)) in chunks.iter().enumerate() {
                    let wbuf = match &single {
                        Some(b) => b.clone(),
                        None => c.upload("t_w", &mat[i0 * d..(i0 + ni) * d]),
                    };
                    let p = Params {
                        n_rows: u32_of(rr, "gather rows")?,
                        n_cols: u32_of(d, "gather width")?,
                        lo: u32_of(i0, "gather chunk")?,
                        hi: u32_of(i0 + ni, "gather chunk")?,
                        flags: 1,
                        ..Default::default()
                    };
                    c.dispatch(
                        &sh::DECODE_SPARSE,
                        &p,
                        &[&ob, &ib, &vb, &wbuf, &dummy, &dummy, &obuf],
                        self.groups_1d(rr * d)?,
                    );
                    if ci + 1 < chunks.len() {
                        c.submit_read(&[])?;
                    }
                }
                c.submit_read(&[(&obuf, rr * d, r0 * d)])?;
                r0 = r1;
            }
            Ok(())
        })?;
        out.copy_from_slice(done.host());
        Ok(())
    }

    fn row_dots(
        &self,
        codes: &SparseCodes,
        mat: &[f32],
        vecs: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()> {
        row_dots_shape(codes, mat, vecs, d, out)?;
        let rows = codes.n_rows();
        if codes.indices.is_empty() {
            return Ok(());
        }
        self.fits(d, "row_dots")?;
        let maxf = self.binding_floats();
        let mrows = (maxf / d).max(1);
        let n_mat = mat.len() / d;
        let chunks: Vec<(usize, usize)> = (0..n_mat)
            .step_by(mrows)
            .map(|i0| (i0, mrows.min(n_mat - i0)))
            .collect();
        let max_entries = maxf.min(self.max_groups as usize * sh::WG_SIZE as usize);
        let per = (maxf / d).max(1);
        let mut erow: Vec<u32> = Vec::new();
        let mut res = lock(&self.resident);
        let done = self.call(|c| {
            c.host_resize(codes.indices.len());
            let single = (chunks.len() == 1).then(|| self.weights(&mut res, c, "t_w", mat));
            let mut r0 = 0;
            while r0 < rows {
                let mut r1 = (r0 + per).min(rows);
                while r1 > r0 + 1 && codes.row_offsets[r1] - codes.row_offsets[r0] > max_entries {
                    r1 = r0 + (r1 - r0) / 2;
                }
                let (a, z) = (codes.row_offsets[r0], codes.row_offsets[r1]);
                if z - a > max_entries {
                    return Err(Error::Unsupported(format!(
                        "row_dots: row {r0} has {} entries, more than one pass holds",
                        z - a
                    )));
                }
                if z == a {
                    r0 = r1;
                    continue;
                }
                erow.clear();
                for r in r0..r1 {
                    let rel = u32_of(r - r0, "row_dots rows")?;
                    let cnt = codes.row_offsets[r + 1] - codes.row_offsets[r];
                    erow.extend(std::iter::repeat_n(rel, cnt));
                }
                let eb = c.upload("t_offsets", &erow);
                let ib = c.upload("t_indices", &codes.indices[a..z]);
                let vb = c.upload("t_x", &vecs[r0 * d..r1 * d]);
                let obuf = c.buffer("t_out", 4 * (z - a) as u64);
                for (ci, &(i0, ni)) in chunks.iter().enumerate() {
                    let wbuf = match &single {
                        Some(b) => b.clone(),
                        None => c.upload("t_w", &mat[i0 * d..(i0 + ni) * d]),
                    };
                    let p = Params {
                        n_rows: u32_of(z - a, "row_dots entries")?,
                        k_dim: u32_of(d, "row_dots width")?,
                        lo: u32_of(i0, "row_dots chunk")?,
                        hi: u32_of(i0 + ni, "row_dots chunk")?,
                        ..Default::default()
                    };
                    c.dispatch(
                        &sh::TRAIN_ROW_DOTS,
                        &p,
                        &[&eb, &ib, &wbuf, &vb, &obuf],
                        self.groups_1d(z - a)?,
                    );
                    if ci + 1 < chunks.len() {
                        c.submit_read(&[])?;
                    }
                }
                c.submit_read(&[(&obuf, z - a, a)])?;
                r0 = r1;
            }
            Ok(())
        })?;
        out.copy_from_slice(done.host());
        Ok(())
    }

    fn adam(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        s: &AdamStep,
    ) -> Result<()> {
        let n = adam_shape(p, g, m, v, s)?;
        if n == 0 {
            return Ok(());
        }
        // The constants exactly as the CPU backend computes them.
        let t = i32::try_from(s.t).unwrap_or(i32::MAX);
        let bc1 = 1.0 - s.beta1.powi(t);
        let bc2 = 1.0 - s.beta2.powi(t);
        let per = self.rows_per(1, 1);
        let prm = |nn: usize| -> Result<Params> {
            Ok(Params {
                n_rows: u32_of(nn, "Adam elements")?,
                k_dim: s.lr.to_bits(),
                n_cols: s.beta1.to_bits(),
                ld_out: (1.0 - s.beta1).to_bits(),
                col_offset: s.beta2.to_bits(),
                ld_lhs: (1.0 - s.beta2).to_bits(),
                lhs_offset: bc1.to_bits(),
                lo: bc2.to_bits(),
                hi: s.eps.to_bits(),
                coef: s.grad_scale,
                ..Default::default()
            })
        };
        if n <= per && 4 * n <= RESIDENT_MAX_TENSOR {
            return self.adam_resident(p, g, m, v, prm(n)?);
        }
        let done = self.call(|c| {
            c.host_resize(3 * n);
            for i0 in (0..n).step_by(per) {
                let nn = per.min(n - i0);
                let gb = c.upload("t_x", &g[i0..i0 + nn]);
                let pb = c.upload("t_out", &p[i0..i0 + nn]);
                let mb = c.upload("t_m", &m[i0..i0 + nn]);
                let vb = c.upload("t_v", &v[i0..i0 + nn]);
                c.dispatch(
                    &sh::TRAIN_ADAM,
                    &prm(nn)?,
                    &[&gb, &pb, &mb, &vb],
                    self.groups_1d(nn)?,
                );
                c.submit_read(&[(&pb, nn, i0), (&mb, nn, n + i0), (&vb, nn, 2 * n + i0)])?;
            }
            Ok(())
        })?;
        let h = done.host();
        p.copy_from_slice(&h[..n]);
        m.copy_from_slice(&h[n..2 * n]);
        v.copy_from_slice(&h[2 * n..]);
        Ok(())
    }

    fn top_k_rows(&self, h: &[f32], width: usize, k: usize, out: &mut [u32]) -> Result<()> {
        let rows = top_k_shape(h, width, k, out)?;
        if rows == 0 {
            return Ok(());
        }
        self.fits(width, "top_k_rows")?;
        let per = (self.binding_floats() / width)
            .min(self.max_groups as usize)
            .max(1);
        let done = self.call(|c| {
            c.host_resize(rows * k);
            for r0 in (0..rows).step_by(per) {
                let rr = per.min(rows - r0);
                let hb = c.upload("t_x", &h[r0 * width..(r0 + rr) * width]);
                let ob = c.buffer("t_out", 4 * (rr * k) as u64);
                let p = Params {
                    n_rows: u32_of(rr, "top-k rows")?,
                    n_cols: u32_of(width, "top-k width")?,
                    k: u32_of(k, "top-k k")?,
                    ..Default::default()
                };
                c.dispatch(&sh::TRAIN_TOPK, &p, &[&hb, &ob], (rr as u32, 1, 1));
                c.submit_read(&[(&ob, rr * k, r0 * k)])?;
            }
            Ok(())
        })?;
        // The kernel wrote u32 indices; the read-back moved their bits unchanged.
        for (o, v) in out.iter_mut().zip(done.host()) {
            *o = v.to_bits();
        }
        Ok(())
    }

    fn sum_squares(&self, x: &[f32]) -> f64 {
        // The trait returns a plain f64: on a device error the sum is taken on
        // the host instead (the same value up to rounding).
        self.sum_squares_gpu(x)
            .unwrap_or_else(|_| x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
    }
}

impl WgpuBackend {
    /// Adam in one pass on resident copies of `p`, `m` and `v` (found by content,
    /// or created), updated in place; `g` is uploaded. Their host copies follow the
    /// results; a failed call forgets them (the device copies may be half-updated).
    fn adam_resident(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        prm: Params,
    ) -> Result<()> {
        let n = p.len();
        let mut res = lock(&self.resident);
        let mut ids: Vec<u64> = Vec::with_capacity(3);
        let done = self.call(|c| {
            c.host_resize(3 * n);
            let mut bufs = Vec::with_capacity(3);
            for t in [&*p, &*m, &*v] {
                let id = match res.find(t, &ids) {
                    Some(id) => id,
                    None => {
                        let b = self.resident_buffer(t);
                        res.insert(t.to_vec(), b, &ids)
                    }
                };
                ids.push(id);
                let e = res
                    .entry(id)
                    .ok_or_else(|| Error::Backend("resident tensor vanished".into()))?;
                bufs.push(e.buf.clone());
            }
            let gb = c.upload("t_x", g);
            c.dispatch(
                &sh::TRAIN_ADAM,
                &prm,
                &[&gb, &bufs[0], &bufs[1], &bufs[2]],
                self.groups_1d(n)?,
            );
            c.submit_read(&[(&bufs[0], n, 0), (&bufs[1], n, n), (&bufs[2], n, 2 * n)])
        });
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                res.entries.retain(|x| {
                    let gone = ids.contains(&x.id);
                    if gone {
                        x.buf.destroy();
                    }
                    !gone
                });
                return Err(e);
            }
        };
        let h = done.host();
        for (i, (id, t)) in ids.iter().zip([p, m, v]).enumerate() {
            let new = &h[i * n..(i + 1) * n];
            t.copy_from_slice(new);
            if let Some(e) = res.entry(*id) {
                e.host.copy_from_slice(new);
            }
        }
        Ok(())
    }

    /// Training operands bound from resident device copies instead of uploaded.
    #[cfg(test)]
    pub(crate) fn resident_hits(&self) -> u64 {
        lock(&self.resident).hits
    }

    /// [`TrainOps::sum_squares`] on the device: f32 partial sums of 4096-element
    /// blocks, added in f64 here.
    pub(crate) fn sum_squares_gpu(&self, x: &[f32]) -> Result<f64> {
        if x.is_empty() {
            return Ok(0.0);
        }
        let per = (self.binding_floats() / SUMSQ_BLOCK)
            .min(self.max_groups as usize)
            .max(1)
            * SUMSQ_BLOCK;
        let n_parts = x.len().div_ceil(SUMSQ_BLOCK);
        let done = self.call(|c| {
            c.host_resize(n_parts);
            for i0 in (0..x.len()).step_by(per) {
                let nn = per.min(x.len() - i0);
                let groups = nn.div_ceil(SUMSQ_BLOCK);
                let xb = c.upload("t_x", &x[i0..i0 + nn]);
                let pb = c.buffer("t_out", 4 * groups as u64);
                let p = Params {
                    n_rows: u32_of(nn, "sum_squares elements")?,
                    ..Default::default()
                };
                c.dispatch(
                    &sh::TRAIN_SUM_SQUARES,
                    &p,
                    &[&xb, &pb],
                    (groups as u32, 1, 1),
                );
                c.submit_read(&[(&pb, groups, i0 / SUMSQ_BLOCK)])?;
            }
            Ok(())
        })?;
        Ok(done.host().iter().map(|&v| f64::from(v)).sum())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::needless_range_loop,
        reason = "index loops written like the maths"
    )]

    use super::*;
    use crate::WgpuOptions;
    use crate::synthetic::Rng;

    /// The backend, or `None` (loudly) without an adapter when
    /// `SAEPLUG_ALLOW_NO_GPU=1`; otherwise a missing adapter fails the test.
    fn gpu(opts: WgpuOptions) -> Option<WgpuBackend> {
        match WgpuBackend::new(opts) {
            Ok(g) => Some(g),
            Err(e) if std::env::var("SAEPLUG_ALLOW_NO_GPU").as_deref() == Ok("1") => {
                eprintln!(
                    "NO GPU ADAPTER ({e}); SAEPLUG_ALLOW_NO_GPU=1 set, this test checks nothing"
                );
                None
            }
            Err(e) => panic!("no GPU adapter: {e} (or set SAEPLUG_ALLOW_NO_GPU=1)"),
        }
    }

    fn close(got: f32, want: f64, scale: f64, what: &str) {
        assert!(
            (f64::from(got) - want).abs() <= 1e-5 * scale.max(1.0),
            "{what}: gpu {got} vs f64 {want}"
        );
    }

    /// A CSR with 0..5 entries per row (duplicates allowed), indices below `n`.
    fn codes(rows: usize, n: usize, seed: usize) -> SparseCodes {
        let mut c = SparseCodes {
            row_offsets: vec![0],
            d_sae: n,
            ..Default::default()
        };
        for r in 0..rows {
            for e in 0..((r + seed) % 6) {
                c.indices.push(((r * 31 + e * 7 + seed) % n) as u32);
                c.values.push(0.1 * e as f32 - 0.2);
            }
            c.row_offsets.push(c.indices.len());
        }
        c
    }

    /// Every primitive against f64 loops, with the default binding size and with
    /// a 4 KiB cap that splits every operand into row passes and weight chunks.
    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn primitives_match_f64_loops_whole_and_chunked() {
        for cap in [None, Some(4096)] {
            let Some(g) = gpu(WgpuOptions {
                max_chunk_bytes: cap,
                ..Default::default()
            }) else {
                return;
            };
            let what = |s: &str| format!("{s} (cap {cap:?})");
            let mut rng = Rng::new(7);
            let (rows, d, n) = (70, 37, 300);
            let x = rng.normal_vec(rows * d, 1.0);
            let w = rng.normal_vec(n * d, 1.0);
            let b = rng.normal_vec(n, 1.0);
            // affine_t
            let mut h = vec![0.0; rows * n];
            g.affine_t(&x, &w, &b, d, &mut h).unwrap();
            for r in 0..rows {
                for j in 0..n {
                    let want: f64 = f64::from(b[j])
                        + (0..d)
                            .map(|k| f64::from(x[r * d + k]) * f64::from(w[j * d + k]))
                            .sum::<f64>();
                    close(h[r * n + j], want, 10.0, &what("affine_t"));
                }
            }
            // matmul, both layouts, accumulating or not.
            let (m, k, nn) = (67, 45, 70);
            let a = rng.normal_vec(m * k, 1.0);
            let bm = rng.normal_vec(k * nn, 1.0);
            let mut at = vec![0.0; k * m];
            for i in 0..m {
                for j in 0..k {
                    at[j * m + i] = a[i * k + j];
                }
            }
            for (aa, t) in [(&a, false), (&at, true)] {
                for acc in [false, true] {
                    let mut out = vec![1.5; m * nn];
                    g.matmul(aa, k, t, &bm, &mut out, acc).unwrap();
                    for i in 0..m {
                        for j in 0..nn {
                            let want: f64 = if acc { 1.5 } else { 0.0 }
                                + (0..k)
                                    .map(|l| f64::from(a[i * k + l]) * f64::from(bm[l * nn + j]))
                                    .sum::<f64>();
                            close(out[i * nn + j], want, 10.0, &what("matmul"));
                        }
                    }
                }
            }
            // gather_add and row_dots.
            let c = codes(rows, n, 3);
            let mut o = vec![0.5; rows * d];
            g.gather_add(&c, &w, d, &mut o).unwrap();
            let mut dots = vec![9.0; c.indices.len()];
            g.row_dots(&c, &w, &x, d, &mut dots).unwrap();
            for r in 0..rows {
                let (idx, val) = c.row(r);
                for j in 0..d {
                    let want: f64 = 0.5
                        + idx
                            .iter()
                            .zip(val)
                            .map(|(&i, &v)| f64::from(v) * f64::from(w[i as usize * d + j]))
                            .sum::<f64>();
                    close(o[r * d + j], want, 1.0, &what("gather_add"));
                }
                for (e, &i) in idx.iter().enumerate() {
                    let want: f64 = (0..d)
                        .map(|j| f64::from(w[i as usize * d + j]) * f64::from(x[r * d + j]))
                        .sum();
                    close(dots[c.row_offsets[r] + e], want, 10.0, &what("row_dots"));
                }
            }
            // Adam against the update written out in f64.
            let s = AdamStep {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                t: 3,
                grad_scale: 0.7,
            };
            let len = 5000;
            let p0 = rng.normal_vec(len, 1.0);
            let g0 = rng.normal_vec(len, 1.0);
            let m0 = rng.normal_vec(len, 0.1);
            let v0: Vec<f32> = rng.normal_vec(len, 0.1).iter().map(|v| v * v).collect();
            let (mut p, mut mm, mut vv) = (p0.clone(), m0.clone(), v0.clone());
            g.adam(&mut p, &g0, &mut mm, &mut vv, &s).unwrap();
            for i in 0..len {
                let gi = f64::from(g0[i]) * 0.7;
                let mi = 0.9 * f64::from(m0[i]) + 0.1 * gi;
                let vi = 0.999 * f64::from(v0[i]) + 0.001 * gi * gi;
                let (mh, vh) = (mi / (1.0 - 0.9f64.powi(3)), vi / (1.0 - 0.999f64.powi(3)));
                let pi = f64::from(p0[i]) - 0.01 * mh / (vh.sqrt() + 1e-8);
                close(mm[i], mi, 1.0, &what("adam m"));
                close(vv[i], vi, 1.0, &what("adam v"));
                close(p[i], pi, 1.0, &what("adam p"));
            }
            // Top-k against a full sort, with many ties (lower index first), a
            // negative zero, infinities and rows of one value.
            let mut hv: Vec<f32> = rng
                .normal_vec(rows * n, 4.0)
                .iter()
                .map(|v| v.round())
                .collect();
            hv[5] = -0.0;
            hv[6] = 0.0;
            hv[7] = f32::INFINITY;
            hv[8] = f32::NEG_INFINITY;
            hv[n..2 * n].fill(2.0);
            for k in [1, 7, 64, n] {
                let mut got = vec![0u32; rows * k];
                g.top_k_rows(&hv, n, k, &mut got).unwrap();
                for r in 0..rows {
                    let row = &hv[r * n..(r + 1) * n];
                    let mut idx: Vec<u32> = (0..n as u32).collect();
                    idx.sort_by(|&a, &b| {
                        row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b))
                    });
                    let mut want = idx[..k].to_vec();
                    want.sort_unstable();
                    assert_eq!(
                        &got[r * k..(r + 1) * k],
                        &want[..],
                        "{} row {r} k {k}",
                        what("top_k")
                    );
                }
            }
            // Sum of squares over several workgroup blocks (and passes when capped).
            let big = rng.normal_vec(3 * SUMSQ_BLOCK + 17, 1.0);
            let want: f64 = big.iter().map(|&v| f64::from(v).powi(2)).sum();
            let got = g.sum_squares_gpu(&big).unwrap();
            assert!(
                (got - want).abs() <= 1e-5 * want,
                "sum_squares {got} vs {want}"
            );
            assert_eq!(g.sum_squares(&[]), 0.0);
        }
    }

    /// Malformed operands are the CPU backend's errors, not panics; empty work is fine.
    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn malformed_operands_are_errors() {
        let Some(g) = gpu(WgpuOptions::default()) else {
            return;
        };
        let w = vec![1.0f32; 8];
        let bad = SparseCodes {
            row_offsets: vec![0, 1],
            indices: vec![4],
            values: vec![1.0],
            d_sae: 4,
            denorm: vec![],
        };
        let mut o = vec![0.0; 2];
        assert!(g.gather_add(&bad, &w, 2, &mut o).is_err());
        assert!(g.row_dots(&bad, &w, &[0.0; 2], 2, &mut [0.0]).is_err());
        assert!(g.affine_t(&[1.0; 3], &w, &[0.0; 4], 2, &mut o).is_err());
        assert!(g.matmul(&[1.0; 3], 2, false, &w, &mut o, false).is_err());
        assert!(g.top_k_rows(&w, 4, 5, &mut [0; 10]).is_err());
        let s = AdamStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            t: 0,
            grad_scale: 1.0,
        };
        assert!(
            g.adam(&mut [0.0], &[1.0], &mut [0.0], &mut [0.0], &s)
                .is_err()
        );
        // Empty batches do nothing.
        g.affine_t(&[], &w, &[0.0; 4], 2, &mut []).unwrap();
        let empty = SparseCodes {
            row_offsets: vec![0],
            ..Default::default()
        };
        g.gather_add(&empty, &w, 2, &mut []).unwrap();
    }

    /// Repeated training-shaped calls (the weights updated by Adam each round, as
    /// a trainer does) create no device objects once warm, and bind the weights
    /// Adam left on the device.
    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn repeated_primitive_calls_reuse_the_workspace() {
        let Some(g) = gpu(WgpuOptions::default()) else {
            return;
        };
        let mut rng = Rng::new(3);
        let (rows, d, n) = (16, 8, 64);
        let x = rng.normal_vec(rows * d, 1.0);
        let c = codes(rows, n, 1);
        let (mut w, mut m, mut v) = (
            rng.normal_vec(n * d, 1.0),
            vec![0.0; n * d],
            vec![0.0; n * d],
        );
        let mut t = 0;
        let mut round = || {
            let mut h = vec![0.0; rows * n];
            g.affine_t(&x, &w, &vec![0.0; n], d, &mut h).unwrap();
            let mut sel = vec![0u32; rows * 4];
            g.top_k_rows(&h, n, 4, &mut sel).unwrap();
            let mut o = vec![0.0; rows * d];
            g.gather_add(&c, &w, d, &mut o).unwrap();
            let mut dots = vec![0.0; c.indices.len()];
            g.row_dots(&c, &w, &o, d, &mut dots).unwrap();
            let mut wd = vec![0.0; n * d];
            g.matmul(&h, rows, true, &x, &mut wd, true).unwrap();
            t += 1;
            let s = AdamStep {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                t,
                grad_scale: 1.0,
            };
            g.adam(&mut w, &wd, &mut m, &mut v, &s).unwrap();
            g.sum_squares_gpu(&wd).unwrap();
        };
        round();
        round();
        let warm = g.workspace_creations();
        for _ in 0..3 {
            round();
        }
        assert_eq!(
            g.workspace_creations(),
            warm,
            "repeated calls created device objects"
        );
        assert!(
            g.resident_hits() >= 3 * 4,
            "the weights were uploaded every round"
        );
    }

    /// A device error during Adam leaves the host tensors as they were and drops
    /// the resident copies it may have half-updated; the retry equals the CPU step.
    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn failed_adam_changes_nothing_and_forgets_its_resident_copies() {
        let Some(g) = gpu(WgpuOptions::default()) else {
            return;
        };
        let mut rng = Rng::new(9);
        let n = 300;
        let s = AdamStep {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            t: 1,
            grad_scale: 1.0,
        };
        let (mut p, mut m, mut v) = (rng.normal_vec(n, 1.0), vec![0.0; n], vec![0.0; n]);
        let g1 = rng.normal_vec(n, 1.0);
        g.adam(&mut p, &g1, &mut m, &mut v, &s).unwrap(); // now resident
        let before = (p.clone(), m.clone(), v.clone());
        let g2 = rng.normal_vec(n, 1.0);
        *super::lock(&g.uncaptured) = Some("injected device error".into());
        let s2 = AdamStep { t: 2, ..s };
        assert!(g.adam(&mut p, &g2, &mut m, &mut v, &s2).is_err());
        assert_eq!((&p, &m, &v), (&before.0, &before.1, &before.2));
        g.adam(&mut p, &g2, &mut m, &mut v, &s2).unwrap();
        let cpu = crate::CpuBackend::new(1);
        let (mut pc, mut mc, mut vc) = before;
        cpu.adam(&mut pc, &g2, &mut mc, &mut vc, &s2).unwrap();
        for i in 0..n {
            assert!(
                (p[i] - pc[i]).abs() <= 1e-6,
                "p[{i}] {} vs cpu {}",
                p[i],
                pc[i]
            );
            assert!((m[i] - mc[i]).abs() <= 1e-6 && (v[i] - vc[i]).abs() <= 1e-6);
        }
    }
}
