//! The primitive operations SAE training asks a backend for (the trainer in
//! [`crate::train`] builds losses and gradients from them). Only
//! [`TrainOps::affine_t`] is a dense GEMM; the rest are gathers over sparse rows,
//! so a top-k backward costs O(B·k·d_in).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::backend::train_ops::TrainOps;
//! use saeplug::{CpuBackend, SparseCodes};
//! let cpu = CpuBackend::new(1);
//! // h = x · W^T + b for x [1, 2] and W [3, 2] (stored row per latent).
//! let mut h = [0.0; 3];
//! cpu.affine_t(&[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[0.5, 0.0, 0.0], 2, &mut h)?;
//! assert_eq!(h, [1.5, 2.0, 3.0]);
//! // out[0] += 2 · W[2]: a sparse decode.
//! let codes = SparseCodes { row_offsets: vec![0, 1], indices: vec![2], values: vec![2.0],
//!                           d_sae: 3, denorm: vec![] };
//! let mut out = [0.0; 2];
//! cpu.gather_add(&codes, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 2, &mut out)?;
//! assert_eq!(out, [2.0, 2.0]);
//! # Ok(()) }
//! ```

use crate::backend::SparseCodes;
use crate::error::{Error, Result};

/// One Adam update: `p -= lr · m̂ / (√v̂ + eps)` with the gradient multiplied by
/// `grad_scale` first (gradient clipping) and bias correction for step `t` (from 1).
///
/// ```
/// use saeplug::backend::train_ops::{AdamStep, TrainOps};
/// let s = AdamStep { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 1, grad_scale: 1.0 };
/// let (mut p, mut m, mut v) = ([1.0f32], [0.0f32], [0.0f32]);
/// saeplug::CpuBackend::new(1).adam(&mut p, &[2.0], &mut m, &mut v, &s).unwrap();
/// assert!((p[0] - 0.9).abs() < 1e-6); // the first step moves by lr · sign(g)
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate of this step.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Step number, from 1 (bias correction).
    pub t: u64,
    /// Multiplier applied to the gradient (the clipping coefficient).
    pub grad_scale: f32,
}

/// The training primitives a backend provides. Every method is deterministic:
/// the same inputs (and, on the CPU, the same thread count) give bit-identical
/// outputs.
///
/// ```
/// use saeplug::backend::train_ops::TrainOps;
/// let ops: &dyn TrainOps = &saeplug::CpuBackend::new(2);
/// assert_eq!(ops.sum_squares(&[3.0, 4.0]), 25.0);
/// ```
pub trait TrainOps: Sync {
    /// `out[r, j] = bias[j] + Σ_d x[r, d] · w_t[j, d]`: `x` is `[rows, d]`, `w_t`
    /// is `[n, d]` (one row per output), `out` is `[rows, n]`. The one dense GEMM.
    ///
    /// ```
    /// use saeplug::backend::train_ops::TrainOps;
    /// let mut out = [0.0; 2];
    /// saeplug::CpuBackend::new(1).affine_t(&[2.0], &[3.0, 4.0], &[1.0, 0.0], 1, &mut out).unwrap();
    /// assert_eq!(out, [7.0, 8.0]);
    /// ```
    fn affine_t(
        &self,
        x: &[f32],
        w_t: &[f32],
        bias: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()>;

    /// `out[m, n] (+)= op(a) · b`: `b` is `[k, n]`; `a` is `[m, k]`, or `[k, m]` read
    /// transposed when `a_t`. The dense products of a batch whose codes are not
    /// sparse (a ReLU SAE early in training).
    ///
    /// ```
    /// use saeplug::backend::train_ops::TrainOps;
    /// let cpu = saeplug::CpuBackend::new(1);
    /// let mut out = [0.0; 2];
    /// // [1, 2] · [[1, 0], [0, 1]] and the same a stored as a column, transposed.
    /// cpu.matmul(&[1.0, 2.0], 2, false, &[1.0, 0.0, 0.0, 1.0], &mut out, false).unwrap();
    /// assert_eq!(out, [1.0, 2.0]);
    /// cpu.matmul(&[1.0, 2.0], 2, true, &[1.0, 0.0, 0.0, 1.0], &mut out, true).unwrap();
    /// assert_eq!(out, [2.0, 4.0]);
    /// ```
    fn matmul(
        &self,
        a: &[f32],
        k: usize,
        a_t: bool,
        b: &[f32],
        out: &mut [f32],
        accumulate: bool,
    ) -> Result<()>;

    /// `out[r, :] += Σ values[e] · mat[indices[e], :]` over the entries `e` of row
    /// `r` of `codes`; `mat` and `out` have rows of length `d`. A sparse decode, and
    /// (with rows = latents and indices = batch rows) a sparse weight gradient.
    ///
    /// ```
    /// use saeplug::{SparseCodes, backend::train_ops::TrainOps};
    /// let c = SparseCodes { row_offsets: vec![0, 2], indices: vec![0, 1], values: vec![1.0, -1.0],
    ///                       d_sae: 2, denorm: vec![] };
    /// let mut out = [10.0];
    /// saeplug::CpuBackend::new(1).gather_add(&c, &[3.0, 1.0], 1, &mut out).unwrap();
    /// assert_eq!(out, [12.0]);
    /// ```
    fn gather_add(&self, codes: &SparseCodes, mat: &[f32], d: usize, out: &mut [f32])
    -> Result<()>;

    /// `out[e] = mat[indices[e], :] · vecs[r, :]` for every entry `e` of row `r`
    /// (the gradient reaching each active latent from a residual).
    ///
    /// ```
    /// use saeplug::{SparseCodes, backend::train_ops::TrainOps};
    /// let c = SparseCodes { row_offsets: vec![0, 1], indices: vec![1], values: vec![9.0],
    ///                       d_sae: 2, denorm: vec![] };
    /// let mut out = [0.0];
    /// saeplug::CpuBackend::new(1).row_dots(&c, &[1.0, 0.0, 2.0, 3.0], &[1.0, 1.0], 2, &mut out).unwrap();
    /// assert_eq!(out, [5.0]);
    /// ```
    fn row_dots(
        &self,
        codes: &SparseCodes,
        mat: &[f32],
        vecs: &[f32],
        d: usize,
        out: &mut [f32],
    ) -> Result<()>;

    /// One Adam step over a parameter tensor and its moments (see [`AdamStep`]).
    ///
    /// ```
    /// use saeplug::backend::train_ops::{AdamStep, TrainOps};
    /// let s = AdamStep { lr: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 1, grad_scale: 1.0 };
    /// let (mut p, mut m, mut v) = ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
    /// saeplug::CpuBackend::new(1).adam(&mut p, &[1.0, -1.0], &mut m, &mut v, &s).unwrap();
    /// assert!((p[0] + 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6);
    /// ```
    fn adam(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        s: &AdamStep,
    ) -> Result<()>;

    /// The `k` largest entries of each row of `h` (`[rows, width]`), ties to the
    /// lower index, written to `out` (`[rows, k]`) ascending by index.
    ///
    /// ```
    /// use saeplug::backend::train_ops::TrainOps;
    /// let mut out = [0u32; 4];
    /// saeplug::CpuBackend::new(1)
    ///     .top_k_rows(&[0.5, 3.0, -1.0, 3.0, /* row 1 */ 1.0, 0.0, 2.0, 0.0], 4, 2, &mut out)
    ///     .unwrap();
    /// assert_eq!(out, [1, 3, 0, 2]);
    /// ```
    fn top_k_rows(&self, h: &[f32], width: usize, k: usize, out: &mut [u32]) -> Result<()>;

    /// `Σ x²` accumulated in f64 in a fixed order (the global gradient norm).
    ///
    /// ```
    /// use saeplug::backend::train_ops::TrainOps;
    /// assert_eq!(saeplug::CpuBackend::new(1).sum_squares(&[1.0, 2.0]), 5.0);
    /// ```
    fn sum_squares(&self, x: &[f32]) -> f64;
}

/// Check the shapes shared by [`TrainOps::gather_add`] and [`TrainOps::row_dots`]:
/// offsets ascending and in range, indices within `mat`.
pub(crate) fn check_sparse(codes: &SparseCodes, mat: &[f32], d: usize) -> Result<()> {
    let o = &codes.row_offsets;
    let ok = !o.is_empty()
        && o[0] == 0
        && o.windows(2).all(|w| w[0] <= w[1])
        && o.last() == Some(&codes.indices.len())
        && codes.values.len() == codes.indices.len()
        && d > 0
        && mat.len().is_multiple_of(d);
    if !ok {
        return Err(Error::invalid(
            "internal sparse training operand is malformed",
        ));
    }
    let n_mat = mat.len() / d;
    if codes.indices.iter().any(|&i| i as usize >= n_mat) {
        return Err(Error::invalid(
            "internal sparse training operand indexes past its matrix",
        ));
    }
    Ok(())
}

/// Check [`TrainOps::affine_t`]'s shapes; returns (rows, n).
pub(crate) fn affine_shape(
    x: &[f32],
    w_t: &[f32],
    bias: &[f32],
    d: usize,
    out: &[f32],
) -> Result<(usize, usize)> {
    let n = bias.len();
    if d == 0 || n == 0 || !x.len().is_multiple_of(d) || w_t.len() != n * d {
        return Err(Error::invalid("internal affine_t operand shapes disagree"));
    }
    let rows = x.len() / d;
    if out.len() != rows * n {
        return Err(Error::invalid(
            "internal affine_t output has the wrong size",
        ));
    }
    Ok((rows, n))
}

/// Check [`TrainOps::matmul`]'s shapes; returns (m, n).
pub(crate) fn matmul_shape(a: &[f32], k: usize, b: &[f32], out: &[f32]) -> Result<(usize, usize)> {
    if k == 0 || !a.len().is_multiple_of(k) || !b.len().is_multiple_of(k) {
        return Err(Error::invalid("internal matmul operand shapes disagree"));
    }
    let (m, n) = (a.len() / k, b.len() / k);
    if out.len() != m * n {
        return Err(Error::invalid("internal matmul output has the wrong size"));
    }
    Ok((m, n))
}

/// Check [`TrainOps::gather_add`]'s operands (see [`check_sparse`]).
pub(crate) fn gather_shape(codes: &SparseCodes, mat: &[f32], d: usize, out: &[f32]) -> Result<()> {
    check_sparse(codes, mat, d)?;
    if out.len() != codes.n_rows() * d {
        return Err(Error::invalid("internal gather output has the wrong size"));
    }
    Ok(())
}

/// Check [`TrainOps::row_dots`]'s operands (see [`check_sparse`]).
pub(crate) fn row_dots_shape(
    codes: &SparseCodes,
    mat: &[f32],
    vecs: &[f32],
    d: usize,
    out: &[f32],
) -> Result<()> {
    check_sparse(codes, mat, d)?;
    if vecs.len() != codes.n_rows() * d || out.len() != codes.indices.len() {
        return Err(Error::invalid("internal row_dots operand shapes disagree"));
    }
    Ok(())
}

/// Check [`TrainOps::adam`]'s operands; returns the tensor length.
pub(crate) fn adam_shape(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    s: &AdamStep,
) -> Result<usize> {
    let n = p.len();
    if g.len() != n || m.len() != n || v.len() != n || s.t == 0 {
        return Err(Error::invalid("internal Adam operand shapes disagree"));
    }
    Ok(n)
}

/// Check [`TrainOps::top_k_rows`]'s shapes; returns the row count.
pub(crate) fn top_k_shape(h: &[f32], width: usize, k: usize, out: &[u32]) -> Result<usize> {
    if width == 0
        || k == 0
        || k > width
        || width > u32::MAX as usize
        || !h.len().is_multiple_of(width)
        || out.len() != h.len() / width * k
    {
        return Err(Error::invalid(
            "internal top_k_rows operand shapes disagree",
        ));
    }
    Ok(h.len() / width)
}
