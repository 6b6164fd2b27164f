//! Compute backends. [`cpu::CpuBackend`] is complete; every backend gives the same
//! results to float32 rounding.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Backend, CpuBackend};
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
//! // Any backend behind the trait object: the CPU here, `WgpuBackend` on a GPU.
//! let backend: Box<dyn Backend> = Box::new(CpuBackend::new(1));
//! let mut f = vec![0.0; 2 * 64];
//! let denorm = backend.encode(&sae, &x, &mut f)?;
//! let mut recon = vec![0.0; x.len()];
//! backend.decode(&sae, &f, &denorm, &mut recon)?;
//! # Ok(()) }
//! ```

pub mod cpu;
pub(crate) mod edits;
pub(crate) mod ito;
mod prep;
pub mod train_ops;
#[cfg(feature = "gpu")]
pub mod wgpu;

pub(crate) use prep::{CodeScale, preprocess};

use crate::error::{Error, Result};
use crate::params::{Edit, FeatureSource, SolveInfo, SolverParams};
use crate::sae::Sae;

/// Per-row inverse of the input normalisation: `out = y * scale + shift`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend};
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
/// // An SAE that normalises its input returns one Denorm per row from encode.
/// let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
/// let mut f = vec![0.0; 2 * 32];
/// let denorm = CpuBackend::new(1).encode(&sae, &x, &mut f)?;
/// assert!(denorm.is_empty()); // this one does not normalise
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Denorm {
    /// Multiplier.
    pub scale: f32,
    /// Offset added after scaling.
    pub shift: f32,
}

/// Sparse feature codes for a batch, in CSR form: row `r`'s active features are
/// `indices[row_offsets[r]..row_offsets[r + 1]]`, ascending, with `values` alongside.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let x = saeplug::synthetic::Rng::new(1).normal_vec(3 * 16, 1.0);
/// let codes = CpuBackend::new(1).encode_sparse(&sae, &x)?;
/// assert_eq!(codes.n_rows(), 3);
/// for r in 0..codes.n_rows() {
///     let (idx, val) = codes.row(r);
///     assert!(idx.windows(2).all(|w| w[0] < w[1])); // ascending
///     assert!(val.iter().all(|v| *v != 0.0));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseCodes {
    /// `n_rows + 1` offsets into `indices`/`values`.
    pub row_offsets: Vec<usize>,
    /// Feature indices.
    pub indices: Vec<u32>,
    /// Feature activations.
    pub values: Vec<f32>,
    /// Dictionary size the indices refer to.
    pub d_sae: usize,
    /// Per-row denormalisation (empty when the SAE does not normalise).
    pub denorm: Vec<Denorm>,
}

impl SparseCodes {
    /// Compress a dense `[n, d_sae]` matrix (zeros dropped).
    ///
    /// ```
    /// use saeplug::SparseCodes;
    /// let dense = [0.0, 1.5, 0.0, 0.0, /* row 2 */ 2.0, 0.0, 0.0, 3.0];
    /// let codes = SparseCodes::from_dense(&dense, 4, Vec::new());
    /// assert_eq!(codes.row_offsets, [0, 1, 3]);
    /// assert_eq!(codes.indices, [1, 0, 3]);
    /// assert_eq!(codes.to_dense(), dense);
    /// ```
    pub fn from_dense(dense: &[f32], d_sae: usize, denorm: Vec<Denorm>) -> Self {
        let n = dense.len().checked_div(d_sae).unwrap_or(0);
        let mut codes = SparseCodes {
            row_offsets: Vec::with_capacity(n + 1),
            d_sae,
            denorm,
            ..Default::default()
        };
        codes.row_offsets.push(0);
        for row in dense.chunks_exact(d_sae.max(1)) {
            for (i, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    codes.indices.push(i as u32);
                    codes.values.push(v);
                }
            }
            codes.row_offsets.push(codes.indices.len());
        }
        codes
    }

    /// Number of rows.
    ///
    /// ```
    /// let codes = saeplug::SparseCodes::from_dense(&[0.0; 12], 4, Vec::new());
    /// assert_eq!(codes.n_rows(), 3);
    /// assert!(codes.indices.is_empty());
    /// ```
    pub fn n_rows(&self) -> usize {
        self.row_offsets.len().saturating_sub(1)
    }

    /// Row `r` as (indices, values).
    ///
    /// ```
    /// let codes = saeplug::SparseCodes::from_dense(&[0.0, 2.0, 0.0, 5.0, 0.0, 0.0], 3, Vec::new());
    /// assert_eq!(codes.row(0), (&[1u32][..], &[2.0f32][..]));
    /// assert_eq!(codes.row(1), (&[0u32][..], &[5.0f32][..]));
    /// ```
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.row_offsets[r], self.row_offsets[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// Expand to a dense `[n_rows, d_sae]` matrix.
    ///
    /// ```
    /// let dense = vec![0.0, 0.25, 4.0, 0.0];
    /// assert_eq!(saeplug::SparseCodes::from_dense(&dense, 2, Vec::new()).to_dense(), dense);
    /// ```
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.n_rows() * self.d_sae];
        for r in 0..self.n_rows() {
            let (idx, val) = self.row(r);
            for (&i, &v) in idx.iter().zip(val) {
                out[r * self.d_sae + i as usize] = v;
            }
        }
        out
    }

    /// Check internal consistency against an SAE (offsets monotone, indices in range),
    /// and that the SAE's weights are finite ([`Sae::check_finite`]).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 4, saeplug::Architecture::Standard, 1)?;
    /// let mut codes = saeplug::SparseCodes::from_dense(&[1.0, 0.0, 0.0, 2.0], 4, Vec::new());
    /// assert!(codes.validate(&sae).is_ok());
    /// codes.indices[0] = 9; // out of range for d_sae = 4
    /// assert!(codes.validate(&sae).is_err());
    /// # Ok(()) }
    /// ```
    pub fn validate(&self, sae: &Sae) -> Result<()> {
        sae.check_finite()?;
        if self.d_sae != sae.d_sae() {
            return Err(Error::invalid(format!(
                "codes are for d_sae = {}, the SAE has {}",
                self.d_sae,
                sae.d_sae()
            )));
        }
        if self.row_offsets.first().copied().unwrap_or(0) != 0
            || self.row_offsets.windows(2).any(|w| w[0] > w[1])
            || self.row_offsets.last().copied().unwrap_or(0) != self.indices.len()
            || self.indices.len() != self.values.len()
        {
            return Err(Error::invalid(
                "sparse codes: row_offsets must start at 0, never decrease, and end at the number of indices (= number of values)",
            ));
        }
        if let Some(&bad) = self.indices.iter().find(|&&i| i as usize >= self.d_sae) {
            return Err(Error::invalid(format!(
                "sparse codes: feature index {bad} >= d_sae {}",
                self.d_sae
            )));
        }
        if let Some(v) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "sparse codes: non-finite value {v}"
            )));
        }
        if !self.denorm.is_empty() && self.denorm.len() != self.n_rows() {
            return Err(Error::invalid(
                "sparse codes: denorm must be empty or one per row",
            ));
        }
        Ok(())
    }
}

/// Operations every backend implements.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend, Sae};
/// fn l0(backend: &dyn Backend, sae: &Sae, x: &[f32]) -> saeplug::Result<usize> {
///     Ok(backend.encode_sparse(sae, x)?.indices.len())
/// }
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let x = vec![0.5; 16];
/// assert!(l0(&CpuBackend::new(1), &sae, &x)? <= 64);
/// # Ok(()) }
/// ```
pub trait Backend: Send + Sync {
    /// Short name ("cpu", "wgpu").
    ///
    /// ```
    /// use saeplug::Backend;
    /// assert_eq!(saeplug::CpuBackend::new(1).name(), "cpu");
    /// ```
    fn name(&self) -> &'static str;

    /// Dense encode of `x` (`[n_rows, d_in]` row-major) into `out` (`[n_rows, d_sae]`).
    /// Returns the per-row denormalisation (empty when the SAE does not normalise).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
    /// let x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
    /// let mut f = vec![0.0; 2 * 64];
    /// CpuBackend::new(1).encode(&sae, &x, &mut f)?;
    /// assert!(f.iter().all(|v| *v >= 0.0)); // ReLU
    /// assert!(CpuBackend::new(1).encode(&sae, &x[..15], &mut f).is_err()); // not whole rows
    /// # Ok(()) }
    /// ```
    fn encode(&self, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<Vec<Denorm>>;

    /// Sparse encode of `x`: only the nonzero features.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
    /// let x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
    /// let cpu = CpuBackend::new(1);
    /// let mut dense = vec![0.0; 2 * 64];
    /// cpu.encode(&sae, &x, &mut dense)?;
    /// assert_eq!(cpu.encode_sparse(&sae, &x)?.to_dense(), dense);
    /// # Ok(()) }
    /// ```
    fn encode_sparse(&self, sae: &Sae, x: &[f32]) -> Result<SparseCodes>;

    /// Dense decode of `f` (`[n_rows, d_sae]`) into `out` (`[n_rows, d_in]`).
    /// `denorm` is what `encode` returned (empty for SAEs without normalisation).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend};
    /// let sae = saeplug::synthetic::random_sae(4, 8, saeplug::Architecture::Standard, 3)?;
    /// let mut f = vec![0.0; 8];
    /// f[2] = 1.5; // one active feature
    /// let mut out = vec![0.0; 4];
    /// CpuBackend::new(1).decode(&sae, &f, &[], &mut out)?;
    /// let w = sae.weights();
    /// for j in 0..4 {
    ///     let want = 1.5 * w.w_dec.as_slice()[2 * 4 + j] + w.b_dec.as_slice()[j];
    ///     assert!((out[j] - want).abs() < 1e-6);
    /// }
    /// # Ok(()) }
    /// ```
    fn decode(&self, sae: &Sae, f: &[f32], denorm: &[Denorm], out: &mut [f32]) -> Result<()>;

    /// Decode sparse codes in O(nnz · d_in) into `out` (`[n_rows, d_in]`).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
    /// let x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
    /// let cpu = CpuBackend::new(1);
    /// let mut f = vec![0.0; 2 * 64];
    /// let denorm = cpu.encode(&sae, &x, &mut f)?;
    /// let (mut a, mut b) = (vec![0.0; 32], vec![0.0; 32]);
    /// cpu.decode(&sae, &f, &denorm, &mut a)?;
    /// cpu.decode_sparse(&sae, &cpu.encode_sparse(&sae, &x)?, &mut b)?;
    /// assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
    /// # Ok(()) }
    /// ```
    fn decode_sparse(&self, sae: &Sae, codes: &SparseCodes, out: &mut [f32]) -> Result<()>;

    /// Apply error-preserving `edits` in place to the rows of `x` (`[n, d_in]`)
    /// selected by `rows` (`None` = all): `x + (f' - f) W_dec` (+ vectors), with
    /// the current activations `f` read from `source` (the SAE's encoder, or an
    /// ITO solver run on this backend). On error `x` is left as it was.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend, steer::{Edit, FeatureSource}};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
    /// let mut x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
    /// let before = x.clone();
    /// // Add 2 * d_5 to row 1 only.
    /// let edit = [Edit::AddFeature { feature: 5, coef: 2.0 }];
    /// CpuBackend::new(1).steer(&sae, &mut x, &edit, Some(&[1]), &FeatureSource::Encoder)?;
    /// assert_eq!(x[..16], before[..16]);
    /// let d5 = &sae.weights().w_dec.as_slice()[5 * 16..6 * 16];
    /// assert!((0..16).all(|j| (x[16 + j] - before[16 + j] - 2.0 * d5[j]).abs() < 1e-6));
    /// // A bad edit changes nothing.
    /// let bad = [Edit::AddFeature { feature: 1, coef: 1.0 }, Edit::Ablate { feature: 99 }];
    /// let y = x.clone();
    /// assert!(CpuBackend::new(1).steer(&sae, &mut x, &bad, None, &FeatureSource::Encoder).is_err());
    /// assert_eq!(x, y);
    /// # Ok(()) }
    /// ```
    fn steer(
        &self,
        sae: &Sae,
        x: &mut [f32],
        edits: &[Edit],
        rows: Option<&[usize]>,
        source: &FeatureSource,
    ) -> Result<()>;

    /// Inference-time optimisation on this backend: solve every row of `x`
    /// (`[n, d_in]`) for sparse codes on the SAE's decoder (`crate::solve`).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend, solve::{Solver, SolverParams}};
    /// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
    /// let x = saeplug::synthetic::sparse_data(&sae, 2, 3, 0.0, 1);
    /// let p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 8);
    /// let (codes, info) = CpuBackend::new(1).solve(&sae, &x, &p)?;
    /// assert_eq!(codes.n_rows(), 2);
    /// assert!(info.residual.iter().all(|r| *r < 1e-3));
    /// # Ok(()) }
    /// ```
    fn solve(&self, sae: &Sae, x: &[f32], p: &SolverParams) -> Result<(SparseCodes, SolveInfo)>;

    /// Activation of the single feature `i` for one input row `x` (`[d_in]`).
    /// The default encodes the whole row; backends may compute only feature `i`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::JumpRelu, 3)?;
    /// let x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
    /// let cpu = CpuBackend::new(1);
    /// let mut f = vec![0.0; 64];
    /// cpu.encode(&sae, &x, &mut f)?;
    /// for i in [0, 17, 63] {
    ///     assert!((cpu.feature_activation(&sae, &x, i)? - f[i]).abs() < 1e-5);
    /// }
    /// # Ok(()) }
    /// ```
    fn feature_activation(&self, sae: &Sae, x: &[f32], i: usize) -> Result<f32> {
        edits::check_row_feature(sae, x, i)?;
        let mut f = vec![0.0f32; sae.d_sae()];
        self.encode(sae, x, &mut f)?;
        Ok(f[i])
    }
}

/// Dense codes as the decoder multiplies them: top-k SAEs that rescale by decoder
/// norms decode `f_i / ||d_i||` (SAELens); every other SAE decodes `f` itself.
pub(crate) fn decoder_input<'a>(sae: &Sae, f: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
    let scale = CodeScale::of(sae);
    match scale.norms() {
        None => std::borrow::Cow::Borrowed(f),
        Some(_) => std::borrow::Cow::Owned(
            f.chunks_exact(sae.d_sae())
                .flat_map(|r| r.iter().enumerate().map(move |(i, v)| scale.coef_of(i, *v)))
                .collect(),
        ),
    }
}

/// Apply per-row denormalisation in place (no-op when `denorm` is empty).
pub(crate) fn apply_denorm(out: &mut [f32], d: usize, denorm: &[Denorm]) {
    for (row, dn) in out.chunks_exact_mut(d).zip(denorm) {
        row.iter_mut().for_each(|v| *v = *v * dn.scale + dn.shift);
    }
}

/// Number of rows in `x`, checking it is a whole number of `d_in` rows of finite values.
pub(crate) fn rows_of(sae: &Sae, x: &[f32]) -> Result<usize> {
    sae.check_finite()?;
    let d = sae.d_in();
    if !x.len().is_multiple_of(d) {
        return Err(Error::invalid(format!(
            "input has {} values, not a multiple of d_in = {d}",
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            row: i / d,
            col: i % d,
            value: x[i],
        });
    }
    Ok(x.len() / d)
}

/// Check an output buffer length.
pub(crate) fn check_len(what: &str, got: usize, need: usize) -> Result<()> {
    if got != need {
        return Err(Error::invalid(format!(
            "{what} has {got} elements, expected {need}"
        )));
    }
    Ok(())
}

/// Validate dense decode arguments (whole rows of finite codes, output length,
/// denormalisation); returns the number of rows.
pub(crate) fn check_decode(sae: &Sae, f: &[f32], denorm: &[Denorm], out: &[f32]) -> Result<usize> {
    sae.check_finite()?;
    let (d, ds) = (sae.d_in(), sae.d_sae());
    if !f.len().is_multiple_of(ds) {
        return Err(Error::invalid(format!(
            "codes have {} values, not a multiple of d_sae = {ds}",
            f.len()
        )));
    }
    let n = f.len() / ds;
    check_len("decode output", out.len(), n * d)?;
    check_denorm(sae, denorm, n)?;
    if let Some(v) = f.iter().find(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "codes contain a non-finite value {v}"
        )));
    }
    Ok(n)
}

/// Check `denorm` against the SAE's normalisation and the batch size.
pub(crate) fn check_denorm(sae: &Sae, denorm: &[Denorm], n_rows: usize) -> Result<()> {
    use crate::sae::Normalization;
    match (sae.config().normalization, denorm.len()) {
        (Normalization::None, 0) => Ok(()),
        (Normalization::None, _) => Err(Error::invalid(
            "denormalisation given for an SAE that does not normalise its input",
        )),
        (_, n) if n == n_rows => Ok(()),
        (norm, n) => Err(Error::invalid(format!(
            "this SAE normalises its input ({norm:?}); decode needs the {n_rows} per-row statistics returned by encode, got {n}"
        ))),
    }
}
