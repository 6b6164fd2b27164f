//! The single call into the `gemm` crate, behind a bounds-checked safe wrapper.

use super::CpuBackend;
use crate::error::{Error, Result};

/// A strided read-only matrix: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl MatRef<'_> {
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1).checked_mul(self.rs).and_then(|a| {
            (self.cols - 1)
                .checked_mul(self.cs)
                .and_then(|b| a.checked_add(b))
        });
        matches!(last, Some(l) if l < self.data.len())
            && self.rs <= isize::MAX as usize
            && self.cs <= isize::MAX as usize
    }
}

/// `c[m, n] = (accumulate ? c : 0) + a[m, k] @ b[k, n]`, `c` row-major and dense.
pub(crate) fn sgemm(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.len() != m * n || !a.fits() || !b.fits() {
        return Err(Error::invalid(format!(
            "internal GEMM shape mismatch: a {}x{}, b {}x{}, c {}",
            a.rows,
            a.cols,
            b.rows,
            b.cols,
            c.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `fits()` proved every strided index of `a` and `b` is in bounds, and `c`
    // holds exactly m*n elements addressed row-major (rs = n, cs = 1). The three
    // slices are distinct borrows (`c` is `&mut`), so the output does not alias the
    // inputs. Strides fit in isize (checked in `fits`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0f32 } else { 0.0f32 },
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Batches up to this many rows use the streaming kernel [`axpy_block`]: at batch 1
/// the product is bandwidth-bound and packing `b` for a GEMM only costs.
const SMALL_M: usize = 4;

/// `c[m, w] = a[m, k] @ b[k, w]` for `b` with unit column stride, as `k` row axpys:
/// each row of `b` is streamed once and used for all `m` outputs.
fn axpy_block(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) -> Result<()> {
    let (m, k, w) = (a.rows, a.cols, b.cols);
    if !a.fits() || !b.fits() || b.cs != 1 || c.len() != m * w || b.rows != k {
        return Err(Error::invalid("internal GEMV shape mismatch"));
    }
    c.fill(0.0);
    for i in 0..k {
        let brow = &b.data[i * b.rs..i * b.rs + w];
        for (r, crow) in c.chunks_exact_mut(w).enumerate() {
            let s = a.data[r * a.rs + i * a.cs];
            if s != 0.0 {
                crow.iter_mut().zip(brow).for_each(|(o, v)| *o += s * v);
            }
        }
    }
    Ok(())
}

/// Output columns per block in [`sgemm_col_blocks`].
const COL_BLOCK: usize = 1024;

/// `c[m, n] = a[m, k] @ b[k, n]` with the columns split into blocks of
/// [`COL_BLOCK`], dealt round-robin to `threads` threads that each run a
/// single-threaded GEMM into a private block buffer; the blocks are then gathered
/// into row-major `c`. For short-and-wide products (a batch of tokens times an
/// encoder) this measured ~1.7x faster than letting `gemm` parallelise itself
/// (docs/PERFORMANCE.md).
pub(crate) fn sgemm_col_blocks(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    cpu: &CpuBackend,
) -> Result<()> {
    let (m, n) = (a.rows, b.cols);
    let threads = cpu.threads();
    if threads <= 1 || n < 2 * COL_BLOCK || m == 0 {
        // gemm parallelises with rayon: on this backend's workers.
        return cpu.install(|| sgemm(a, b, c, false, threads));
    }
    if c.len() != m * n {
        return Err(Error::invalid(format!(
            "internal GEMM output has {} elements, expected {}",
            c.len(),
            m * n
        )));
    }
    // Small batches stream `b` once: one contiguous column range per thread.
    let small = m <= SMALL_M && b.cs == 1;
    let cb = if small {
        n.div_ceil(threads).next_multiple_of(16)
    } else {
        COL_BLOCK
    };
    let mut blocks = vec![0.0f32; m * n];
    // Block j holds columns [j*cb, ..) as a dense row-major [m, w] matrix.
    let mut per_thread: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
    for (j, blk) in blocks.chunks_mut(m * cb).enumerate() {
        per_thread[j % threads].push((j, blk));
    }
    let mut results: Vec<Result<()>> = (0..threads).map(|_| Ok(())).collect();
    let jobs = per_thread
        .into_iter()
        .zip(results.iter_mut())
        .map(|(list, slot)| {
            move || {
                *slot = list.into_iter().try_for_each(|(j, blk)| {
                    let j0 = j * cb;
                    let w = blk.len() / m;
                    let sub = MatRef {
                        data: b.data.get(j0 * b.cs..).unwrap_or(&[]),
                        rows: b.rows,
                        cols: w,
                        rs: b.rs,
                        cs: b.cs,
                    };
                    if small {
                        axpy_block(a, sub, blk)
                    } else {
                        sgemm(a, sub, blk, false, 1)
                    }
                });
            }
        })
        .collect();
    cpu.run_all(jobs);
    results.into_iter().collect::<Result<()>>()?;
    for (j, blk) in blocks.chunks(m * cb).enumerate() {
        let (j0, w) = (j * cb, blk.len() / m);
        for (r, src) in blk.chunks_exact(w).enumerate() {
            c[r * n + j0..r * n + j0 + w].copy_from_slice(src);
        }
    }
    Ok(())
}
