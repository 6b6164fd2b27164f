//! [`TrainOps`] on the CPU: the dense encoder product through `gemm`, the sparse
//! gathers and Adam split over the backend's workers by output rows, so every
//! output element is computed by one thread in a fixed order (bit-identical for
//! any thread count, except inside the GEMM).

use super::gemm::{MatRef, sgemm_col_blocks, sgemm_on};
use super::{CpuBackend, par_rows};
use crate::backend::SparseCodes;
use crate::backend::train_ops::{
    AdamStep, TrainOps, adam_shape, affine_shape, gather_shape, matmul_shape, row_dots_shape,
    top_k_shape,
};
use crate::error::Result;

/// Elements per Adam / sum-of-squares block (fixed, so the order of the f64
/// partial sums never depends on the thread count).
const BLOCK: usize = 1 << 14;

impl TrainOps for CpuBackend {
    fn affine_t(
        &self,
        x: &[f32],
        w_t: &[f32],
        bias: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let (rows, n) = affine_shape(x, w_t, bias, d, out)?;
        let a = MatRef {
            data: x,
            rows,
            cols: d,
            rs: d,
            cs: 1,
        };
        // w_t [n, d] read as its transpose [d, n].
        let b = MatRef {
            data: w_t,
            rows: d,
            cols: n,
            rs: 1,
            cs: d,
        };
        sgemm_col_blocks(a, b, out, self)?;
        par_rows(self, out, n, |_, block| {
            for row in block.chunks_exact_mut(n) {
                row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
            }
        });
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
        let a = if a_t {
            MatRef {
                data: a,
                rows: m,
                cols: k,
                rs: 1,
                cs: m,
            }
        } else {
            MatRef {
                data: a,
                rows: m,
                cols: k,
                rs: k,
                cs: 1,
            }
        };
        let b = MatRef {
            data: b,
            rows: k,
            cols: n,
            rs: n,
            cs: 1,
        };
        sgemm_on(self, a, b, out, accumulate)
    }

    fn gather_add(
        &self,
        codes: &SparseCodes,
        mat: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()> {
        gather_shape(codes, mat, d, out)?;
        par_rows(self, out, d, |first, block| {
            for (j, o) in block.chunks_exact_mut(d).enumerate() {
                let (idx, val) = codes.row(first + j);
                for (&i, &v) in idx.iter().zip(val) {
                    let m = &mat[i as usize * d..i as usize * d + d];
                    o.iter_mut().zip(m).for_each(|(o, m)| *o += v * m);
                }
            }
        });
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
        // Split the rows into one range per worker; each range owns its entries.
        let per = rows.div_ceil(self.threads().max(1)).max(1);
        let mut jobs = Vec::new();
        let mut rest = out;
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + per).min(rows);
            let (mine, tail) = rest.split_at_mut(codes.row_offsets[r1] - codes.row_offsets[r0]);
            rest = tail;
            jobs.push(move || {
                let mut e = 0;
                for r in r0..r1 {
                    let v = &vecs[r * d..r * d + d];
                    for &i in codes.row(r).0 {
                        let m = &mat[i as usize * d..i as usize * d + d];
                        mine[e] = dot(m, v);
                        e += 1;
                    }
                }
            });
            r0 = r1;
        }
        self.run_all(jobs);
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
        let t = i32::try_from(s.t).unwrap_or(i32::MAX);
        let bc1 = 1.0 - s.beta1.powi(t);
        let bc2 = 1.0 - s.beta2.powi(t);
        let mut jobs = Vec::new();
        for (((p, g), m), v) in p
            .chunks_mut(BLOCK)
            .zip(g.chunks(BLOCK))
            .zip(m.chunks_mut(BLOCK))
            .zip(v.chunks_mut(BLOCK))
        {
            jobs.push(move || {
                for i in 0..p.len() {
                    let gi = g[i] * s.grad_scale;
                    m[i] = s.beta1 * m[i] + (1.0 - s.beta1) * gi;
                    v[i] = s.beta2 * v[i] + (1.0 - s.beta2) * gi * gi;
                    let mh = m[i] / bc1;
                    let vh = v[i] / bc2;
                    p[i] -= s.lr * mh / (vh.sqrt() + s.eps);
                }
            });
        }
        if n < 4 * BLOCK {
            jobs.into_iter().for_each(|mut j| j());
        } else {
            self.run_all(jobs);
        }
        Ok(())
    }

    fn top_k_rows(&self, h: &[f32], width: usize, k: usize, out: &mut [u32]) -> Result<()> {
        top_k_shape(h, width, k, out)?;
        par_rows(self, out, k, |first, block| {
            let mut cand: Vec<u32> = Vec::with_capacity(4 * k.max(16));
            for (j, o) in block.chunks_exact_mut(k).enumerate() {
                let row = &h[(first + j) * width..(first + j + 1) * width];
                top_k_row(row, k, &mut cand, o);
            }
        });
        Ok(())
    }

    fn sum_squares(&self, x: &[f32]) -> f64 {
        let mut parts = vec![0.0f64; x.len().div_ceil(BLOCK)];
        let jobs: Vec<_> = parts
            .iter_mut()
            .zip(x.chunks(BLOCK))
            .map(|(s, c)| move || *s = c.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
            .collect();
        if x.len() < 4 * BLOCK {
            jobs.into_iter().for_each(|mut j| j());
        } else {
            self.run_all(jobs);
        }
        parts.iter().sum()
    }
}

/// The `k` largest of `row` (total order; ties to the lower index) into `out`,
/// ascending by index, in one pass: candidates above the running k-th largest are
/// kept, and every `4k` candidates shrink to the best k whose k-th becomes the bar
/// (a later value equal to the bar loses the tie, so only larger ones enter).
fn top_k_row(row: &[f32], k: usize, cand: &mut Vec<u32>, out: &mut [u32]) {
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    let cap = 4 * k.max(16);
    cand.clear();
    let mut bar: Option<f32> = None;
    for (i, v) in row.iter().enumerate() {
        if bar.is_some_and(|b| v.total_cmp(&b) != std::cmp::Ordering::Greater) {
            continue;
        }
        cand.push(i as u32);
        if cand.len() == cap {
            cand.select_nth_unstable_by(k - 1, cmp);
            cand.truncate(k);
            bar = Some(row[cand[k - 1] as usize]);
        }
    }
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, cmp);
        cand.truncate(k);
    }
    out.copy_from_slice(&cand[..k]);
    out.sort_unstable();
}

/// Dot product with eight partial sums (a fixed order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn ops_match_f64_loops_and_are_thread_count_independent() {
        let (rows, d, n) = (37, 19, 300);
        let x = lcg(rows * d, 1);
        let w = lcg(n * d, 2);
        let b = lcg(n, 3);
        let mut h1 = vec![0.0; rows * n];
        let mut h4 = vec![0.0; rows * n];
        CpuBackend::new(1).affine_t(&x, &w, &b, d, &mut h1).unwrap();
        CpuBackend::new(4).affine_t(&x, &w, &b, d, &mut h4).unwrap();
        for r in 0..rows {
            for j in 0..n {
                let want: f64 = f64::from(b[j])
                    + (0..d)
                        .map(|k| f64::from(x[r * d + k]) * f64::from(w[j * d + k]))
                        .sum::<f64>();
                assert!((f64::from(h1[r * n + j]) - want).abs() < 1e-5);
                assert!((f64::from(h4[r * n + j]) - want).abs() < 1e-5);
            }
        }
        // A sparse matrix with several entries per row (duplicates allowed).
        let mut codes = SparseCodes {
            row_offsets: vec![0],
            d_sae: n,
            ..Default::default()
        };
        for r in 0..rows {
            for e in 0..(r % 5) {
                codes.indices.push(((r * 31 + e * 7) % n) as u32);
                codes.values.push(0.1 * e as f32 - 0.2);
            }
            codes.row_offsets.push(codes.indices.len());
        }
        let mut outs = Vec::new();
        let mut dots = Vec::new();
        for t in [1, 3] {
            let cpu = CpuBackend::new(t);
            let mut o = vec![0.5; rows * d];
            cpu.gather_add(&codes, &w, d, &mut o).unwrap();
            let mut dd = vec![0.0; codes.indices.len()];
            cpu.row_dots(&codes, &w, &x, d, &mut dd).unwrap();
            outs.push(o);
            dots.push(dd);
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(dots[0], dots[1]);
        for r in 0..rows {
            let (idx, val) = codes.row(r);
            for k in 0..d {
                let want: f64 = 0.5
                    + idx
                        .iter()
                        .zip(val)
                        .map(|(&i, &v)| f64::from(v) * f64::from(w[i as usize * d + k]))
                        .sum::<f64>();
                assert!((f64::from(outs[0][r * d + k]) - want).abs() < 1e-5);
            }
            for (e, &i) in idx.iter().enumerate() {
                let want: f64 = (0..d)
                    .map(|k| f64::from(w[i as usize * d + k]) * f64::from(x[r * d + k]))
                    .sum();
                let got = dots[0][codes.row_offsets[r] + e];
                assert!((f64::from(got) - want).abs() < 1e-5);
            }
        }
        // Malformed operands are errors, not panics.
        let bad = SparseCodes {
            row_offsets: vec![0, 1],
            indices: vec![n as u32],
            values: vec![1.0],
            d_sae: n,
            denorm: vec![],
        };
        let mut o = vec![0.0; d];
        assert!(CpuBackend::new(1).gather_add(&bad, &w, d, &mut o).is_err());
        // matmul, both layouts, against f64 loops.
        let (m, k, nn) = (9, 37, 11);
        let a = lcg(m * k, 21);
        let bm = lcg(k * nn, 22);
        let mut at = vec![0.0; k * m];
        for i in 0..m {
            for j in 0..k {
                at[j * m + i] = a[i * k + j];
            }
        }
        for (aa, t) in [(&a, false), (&at, true)] {
            let mut out = vec![1.0; m * nn];
            CpuBackend::new(2)
                .matmul(aa, k, t, &bm, &mut out, true)
                .unwrap();
            for i in 0..m {
                for j in 0..nn {
                    let want: f64 = 1.0
                        + (0..k)
                            .map(|l| f64::from(a[i * k + l]) * f64::from(bm[l * nn + j]))
                            .sum::<f64>();
                    assert!((f64::from(out[i * nn + j]) - want).abs() < 1e-5);
                }
            }
        }
        // Top-k against a full sort (values with many ties: ties to the lower index).
        let hv: Vec<f32> = lcg(rows * n, 5).iter().map(|v| (v * 8.0).round()).collect();
        for k in [1, 7, n] {
            let mut got = vec![0u32; rows * k];
            CpuBackend::new(3).top_k_rows(&hv, n, k, &mut got).unwrap();
            for r in 0..rows {
                let row = &hv[r * n..(r + 1) * n];
                let mut idx: Vec<u32> = (0..n as u32).collect();
                idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
                let mut want = idx[..k].to_vec();
                want.sort_unstable();
                assert_eq!(&got[r * k..(r + 1) * k], &want[..], "row {r} k {k}");
            }
        }
        let big = lcg(5 * BLOCK + 3, 9);
        let want: f64 = big.iter().map(|&v| f64::from(v).powi(2)).sum();
        let got = CpuBackend::new(3).sum_squares(&big);
        assert!((got - want).abs() < 1e-9 * want);
        assert_eq!(
            got.to_bits(),
            CpuBackend::new(1).sum_squares(&big).to_bits()
        );
    }
}
