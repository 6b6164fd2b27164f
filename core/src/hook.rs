//! Steering hooks: an SAE, a layer, the token positions to touch and a list of
//! edits, applied in place to an engine's `[n_tokens, d_model]` activations.
//! Recording lives in [`crate::record`], decomposition in [`crate::decompose`].
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use std::sync::Arc;
//! use saeplug::hook::{Hook, Positions};
//! use saeplug::record::Recorder;
//! use saeplug::{Backend, CpuBackend, steer::Edit};
//! let sae = Arc::new(saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?);
//! let cpu = CpuBackend::new(1);
//! // Steer: add 4 * d_10 to the last token of every batch at layer 6.
//! let mut hook = Hook::new(Arc::clone(&sae), 6);
//! hook.positions = Positions::Last;
//! hook.edits.push(Edit::AddFeature { feature: 10, coef: 4.0 });
//! let mut acts = saeplug::synthetic::Rng::new(1).normal_vec(5 * 16, 1.0); // 5 tokens
//! hook.apply(&cpu, &mut acts, 0)?;
//! // Record which features fire, for auto-interp.
//! let mut rec = Recorder::new(sae.d_sae(), 3);
//! rec.record(&cpu.encode_sparse(&sae, &acts)?, 0)?;
//! assert_eq!(rec.tokens(), 5);
//! # Ok(()) }
//! ```

use std::ops::Range;
use std::sync::Arc;

use crate::backend::edits::{check_finite_output, gather_rows, scatter_rows};
use crate::backend::{Backend, rows_of};
use crate::error::{Error, Result};
use crate::params::{Edit, FeatureSource};
use crate::sae::Sae;

/// Which token positions of a sequence a hook edits. Positions are absolute
/// (0 = the first token of the sequence); a batch starting at position `pos0`
/// covers `pos0 .. pos0 + n_tokens`.
///
/// ```
/// use saeplug::hook::Positions;
/// assert_eq!(Positions::All.rows(3, 10), [0, 1, 2]);
/// assert_eq!(Positions::First(2).rows(4, 0), [0, 1]);
/// assert_eq!(Positions::Last.rows(4, 0), [3]);
/// assert_eq!(Positions::Ranges(vec![5..7]).rows(4, 4), [1, 2]); // positions 5 and 6
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Every position.
    All,
    /// Positions `0 .. p` (ActAdd-style prompt steering).
    First(usize),
    /// The last row of each batch (the token being generated).
    Last,
    /// Any of these half-open ranges.
    Ranges(Vec<Range<usize>>),
}

impl Positions {
    /// Rows of a batch of `n` tokens starting at absolute position `pos0`.
    ///
    /// ```
    /// use saeplug::hook::Positions;
    /// // Prompt steering on the first 3 positions: a later batch (positions 8..) is untouched.
    /// assert_eq!(Positions::First(3).rows(4, 0), [0, 1, 2]);
    /// assert!(Positions::First(3).rows(4, 8).is_empty());
    /// ```
    pub fn rows(&self, n: usize, pos0: usize) -> Vec<usize> {
        // Positions past usize::MAX do not exist: such rows are never selected.
        let pos = |r: usize| pos0.checked_add(r);
        match self {
            Positions::All => (0..n).collect(),
            Positions::First(p) => (0..n).filter(|&r| pos(r).is_some_and(|q| q < *p)).collect(),
            Positions::Last => n.checked_sub(1).into_iter().collect(),
            Positions::Ranges(rs) => (0..n)
                .filter(|&r| pos(r).is_some_and(|q| rs.iter().any(|g| g.contains(&q))))
                .collect(),
        }
    }

    /// Check that the positions are well formed: ranges are non-empty
    /// (`start < end`).
    ///
    /// ```
    /// use saeplug::hook::Positions;
    /// assert!(Positions::Ranges(vec![2..5]).validate().is_ok());
    /// assert!(Positions::Ranges(vec![5..2]).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if let Positions::Ranges(rs) = self
            && let Some(r) = rs.iter().find(|r| r.start >= r.end)
        {
            return Err(Error::invalid(format!(
                "position range {}..{} is empty (start must be < end)",
                r.start, r.end
            )));
        }
        Ok(())
    }
}

/// Replace the activations by the SAE's reconstruction?
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use std::sync::Arc;
/// use saeplug::hook::{Hook, Replace};
/// use saeplug::{Backend, CpuBackend};
/// let sae = Arc::new(saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?);
/// let x = saeplug::synthetic::Rng::new(1).normal_vec(2 * 16, 1.0);
/// let mut hook = Hook::new(Arc::clone(&sae), 0);
/// hook.replace = Replace::ReconstructionOnly;
/// let mut y = x.clone();
/// hook.apply(&CpuBackend::new(1), &mut y, 0)?;
/// // With no edits, ReconstructionOnly gives the SAE's reconstruction...
/// let mut recon = vec![0.0; x.len()];
/// let cpu = CpuBackend::new(1);
/// cpu.decode_sparse(&sae, &cpu.encode_sparse(&sae, &x)?, &mut recon)?;
/// assert!(y.iter().zip(&recon).all(|(a, b)| (a - b).abs() < 1e-5));
/// // ...and WithError gives x back (reconstruction plus the error term).
/// hook.replace = Replace::WithError;
/// let mut z = x.clone();
/// hook.apply(&cpu, &mut z, 0)?;
/// assert!(z.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Replace {
    /// No: only the error-preserving edits `x + (f' - f) W_dec`.
    #[default]
    None,
    /// `decode(encode(x)) + (x - decode(encode(x)))`, computed explicitly (the SAE
    /// in the loop with its error term kept), then the edits.
    WithError,
    /// `decode(encode(x'))` for the edited `x'`: the error term is dropped.
    ReconstructionOnly,
}

/// A steering hook.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use std::sync::Arc;
/// use saeplug::hook::{Hook, Positions};
/// use saeplug::{CpuBackend, steer::Edit};
/// let sae = Arc::new(saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?);
/// let mut hook = Hook::new(sae, 4);
/// hook.positions = Positions::Ranges(vec![0..2]);
/// hook.edits = vec![Edit::Ablate { feature: 3 }, Edit::Scale { feature: 8, factor: 2.0 }];
/// let mut x = vec![0.1; 3 * 16];
/// hook.apply(&CpuBackend::new(1), &mut x, 0)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Hook {
    /// The SAE.
    pub sae: Arc<Sae>,
    /// The engine layer (block output) this hook belongs to.
    pub layer: u32,
    /// Positions edited.
    pub positions: Positions,
    /// Edits, applied in order; activations are read from the unedited row.
    pub edits: Vec<Edit>,
    /// Where clamp/ablate/scale read the current activations from.
    pub source: FeatureSource,
    /// Reconstruction mode.
    pub replace: Replace,
}

impl Hook {
    /// A hook with no edits on all positions.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use std::sync::Arc;
    /// let sae = Arc::new(saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?);
    /// let hook = saeplug::hook::Hook::new(sae, 12);
    /// assert_eq!(hook.layer, 12);
    /// assert!(hook.edits.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn new(sae: Arc<Sae>, layer: u32) -> Self {
        Hook {
            sae,
            layer,
            positions: Positions::All,
            edits: Vec::new(),
            source: FeatureSource::Encoder,
            replace: Replace::None,
        }
    }

    /// Apply in place to `x` (`[n, d_in]`, first row at absolute position `pos0`).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use std::sync::Arc;
    /// use saeplug::{CpuBackend, hook::Hook, steer::Edit};
    /// let sae = Arc::new(saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?);
    /// let mut hook = Hook::new(sae, 0);
    /// hook.edits.push(Edit::AddVector { vector: vec![1.0; 16], coef: 2.0 });
    /// let mut x = vec![0.0; 2 * 16];
    /// hook.apply(&CpuBackend::new(1), &mut x, 0)?;
    /// assert!(x.iter().all(|v| *v == 2.0));
    /// assert!(hook.apply(&CpuBackend::new(1), &mut x[..20], 0).is_err()); // not whole rows
    /// # Ok(()) }
    /// ```
    pub fn apply(&self, backend: &dyn Backend, x: &mut [f32], pos0: usize) -> Result<()> {
        let sae = &*self.sae;
        let d = sae.d_in();
        let n = rows_of(sae, x)?;
        self.positions.validate()?;
        if pos0.checked_add(n).is_none() {
            return Err(Error::invalid(format!(
                "batch of {n} tokens at position {pos0} overflows the position range"
            )));
        }
        let rows = self.positions.rows(n, pos0);
        if rows.is_empty() {
            return Ok(());
        }
        if self.replace == Replace::None {
            // One stage: the backend's steer already leaves `x` as it was on error.
            return backend.steer(sae, x, &self.edits, Some(&rows), &self.source);
        }
        // Several stages work on a copy of the selected rows; `x` changes only when
        // all of them succeeded.
        let mut sel = gather_rows(x, d, &rows);
        let reconstruct = |sel: &[f32]| -> Result<Vec<f32>> {
            let codes = backend.encode_sparse(sae, sel)?;
            let mut recon = vec![0.0; sel.len()];
            backend.decode_sparse(sae, &codes, &mut recon)?;
            Ok(recon)
        };
        if self.replace == Replace::WithError {
            // The SAE in the loop with its error term: recon + (x - recon).
            let recon = reconstruct(&sel)?;
            sel.iter_mut()
                .zip(&recon)
                .for_each(|(v, c)| *v = c + (*v - c));
        }
        if !self.edits.is_empty() {
            backend.steer(sae, &mut sel, &self.edits, None, &self.source)?;
        }
        if self.replace == Replace::ReconstructionOnly {
            sel = reconstruct(&sel)?;
        }
        check_finite_output("hook output", &sel, d)?;
        scatter_rows(x, d, &rows, &sel);
        Ok(())
    }
}
