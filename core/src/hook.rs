//! Steering hooks: an SAE, a layer, the token positions to touch and a list of
//! edits, applied in place to an engine's `[n_tokens, d_model]` activations.
//! Also feature recording (firing counts, means, top activating positions) and
//! steering-vector decomposition into SAE features.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use std::sync::Arc;
//! use saeplug::hook::{Hook, Positions, Recorder};
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

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, SparseCodes};
use crate::error::{Error, Result};
use crate::sae::Sae;
use crate::solve::{SolverParams, solve};
use crate::steer::{Edit, FeatureSource, apply_edits_with};

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
        match self {
            Positions::All => (0..n).collect(),
            Positions::First(p) => (0..n).filter(|r| pos0 + r < *p).collect(),
            Positions::Last => n.checked_sub(1).into_iter().collect(),
            Positions::Ranges(rs) => (0..n)
                .filter(|r| rs.iter().any(|g| g.contains(&(pos0 + r))))
                .collect(),
        }
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
        let n = crate::backend::rows_of(sae, x)?;
        let rows = self.positions.rows(n, pos0);
        if rows.is_empty() {
            return Ok(());
        }
        let reconstruct = |x: &mut [f32]| -> Result<Vec<f32>> {
            let sel: Vec<f32> = rows
                .iter()
                .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
                .collect();
            let codes = backend.encode_sparse(sae, &sel)?;
            let mut recon = vec![0.0; sel.len()];
            backend.decode_sparse(sae, &codes, &mut recon)?;
            Ok(recon)
        };
        if self.replace == Replace::WithError {
            let recon = reconstruct(x)?;
            for (k, &r) in rows.iter().enumerate() {
                let row = &mut x[r * d..(r + 1) * d];
                let rc = &recon[k * d..(k + 1) * d];
                row.iter_mut().zip(rc).for_each(|(v, c)| *v = c + (*v - c));
            }
        }
        if !self.edits.is_empty() {
            match &self.source {
                FeatureSource::Encoder => backend.steer(sae, x, &self.edits, Some(&rows))?,
                FeatureSource::Solver(_) => {
                    apply_edits_with(sae, x, &self.edits, Some(&rows), &self.source)?
                }
            }
        }
        if self.replace == Replace::ReconstructionOnly {
            let recon = reconstruct(x)?;
            for (k, &r) in rows.iter().enumerate() {
                x[r * d..(r + 1) * d].copy_from_slice(&recon[k * d..(k + 1) * d]);
            }
        }
        Ok(())
    }
}

/// Feature statistics over a run: what auto-interpretability pipelines need.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{SparseCodes, hook::Recorder};
/// let mut rec = Recorder::new(4, 2);
/// // Two tokens at positions 7 and 8: feature 1 fires on both, feature 3 on one.
/// rec.record(&SparseCodes::from_dense(&[0.0, 2.0, 0.0, 0.0, 0.0, 5.0, 0.0, 1.0], 4, Vec::new()), 7)?;
/// assert_eq!(rec.firing_counts(), [0, 2, 0, 1]);
/// assert_eq!(rec.top(1), [(5.0, 8), (2.0, 7)]);
/// assert_eq!(rec.mean_activation()[1], 3.5);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Recorder {
    d_sae: usize,
    top_n: usize,
    tokens: u64,
    count: Vec<u64>,
    sum: Vec<f64>,
    /// Per feature: up to top_n (value, position), kept sorted descending.
    top: Vec<Vec<(f32, u64)>>,
}

impl Recorder {
    /// A recorder for `d_sae` features keeping the `top_n` strongest positions each.
    ///
    /// ```
    /// let rec = saeplug::hook::Recorder::new(16384, 20);
    /// assert_eq!(rec.tokens(), 0);
    /// assert_eq!(rec.firing_counts().len(), 16384);
    /// ```
    pub fn new(d_sae: usize, top_n: usize) -> Self {
        Recorder {
            d_sae,
            top_n,
            tokens: 0,
            count: vec![0; d_sae],
            sum: vec![0.0; d_sae],
            top: vec![Vec::new(); d_sae],
        }
    }

    /// Add one batch of codes whose first row is at absolute position `pos0`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{SparseCodes, hook::Recorder};
    /// let mut rec = Recorder::new(3, 1);
    /// rec.record(&SparseCodes::from_dense(&[1.0, 0.0, 0.0], 3, Vec::new()), 0)?;
    /// assert!(rec.record(&SparseCodes::from_dense(&[1.0, 0.0], 2, Vec::new()), 1).is_err()); // other d_sae
    /// assert_eq!(rec.tokens(), 1);
    /// # Ok(()) }
    /// ```
    pub fn record(&mut self, codes: &SparseCodes, pos0: u64) -> Result<()> {
        if codes.d_sae != self.d_sae {
            return Err(Error::invalid(format!(
                "codes have d_sae {}, the recorder {}",
                codes.d_sae, self.d_sae
            )));
        }
        for r in 0..codes.n_rows() {
            let pos = pos0 + r as u64;
            let (idx, val) = codes.row(r);
            for (&i, &v) in idx.iter().zip(val) {
                let i = i as usize;
                self.count[i] += 1;
                self.sum[i] += v as f64;
                let t = &mut self.top[i];
                if self.top_n > 0 && (t.len() < self.top_n || t.last().is_some_and(|l| v > l.0)) {
                    let at = t.partition_point(|e| e.0 >= v);
                    t.insert(at, (v, pos));
                    t.truncate(self.top_n);
                }
            }
        }
        self.tokens += codes.n_rows() as u64;
        Ok(())
    }

    /// Tokens seen.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut rec = saeplug::hook::Recorder::new(2, 1);
    /// rec.record(&saeplug::SparseCodes::from_dense(&[0.0; 6], 2, Vec::new()), 0)?;
    /// assert_eq!(rec.tokens(), 3);
    /// # Ok(()) }
    /// ```
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Times each feature fired.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut rec = saeplug::hook::Recorder::new(2, 1);
    /// rec.record(&saeplug::SparseCodes::from_dense(&[0.0, 1.0, 0.0, 3.0], 2, Vec::new()), 0)?;
    /// assert_eq!(rec.firing_counts(), [0, 2]);
    /// # Ok(()) }
    /// ```
    pub fn firing_counts(&self) -> &[u64] {
        &self.count
    }

    /// Mean activation of each feature over all tokens seen.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut rec = saeplug::hook::Recorder::new(2, 1);
    /// rec.record(&saeplug::SparseCodes::from_dense(&[0.0, 1.0, 0.0, 3.0], 2, Vec::new()), 0)?;
    /// assert_eq!(rec.mean_activation(), [0.0, 2.0]);
    /// # Ok(()) }
    /// ```
    pub fn mean_activation(&self) -> Vec<f64> {
        self.sum
            .iter()
            .map(|s| s / self.tokens.max(1) as f64)
            .collect()
    }

    /// Top (value, position) pairs of feature `i`, strongest first.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut rec = saeplug::hook::Recorder::new(1, 2);
    /// rec.record(&saeplug::SparseCodes::from_dense(&[1.0, 4.0, 2.0], 1, Vec::new()), 100)?;
    /// assert_eq!(rec.top(0), [(4.0, 101), (2.0, 102)]); // the 2 strongest, with positions
    /// # Ok(()) }
    /// ```
    pub fn top(&self, i: usize) -> &[(f32, u64)] {
        &self.top[i]
    }

    /// The statistics as JSON: `{"d_sae", "tokens", "firing_count": [...],
    /// "mean_activation": [...], "mean_when_firing": [...],
    /// "top": {"<feature>": [[position, value], ...]}}` (features that fired).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut rec = saeplug::hook::Recorder::new(2, 1);
    /// rec.record(&saeplug::SparseCodes::from_dense(&[0.0, 1.5], 2, Vec::new()), 3)?;
    /// let json = rec.to_json();
    /// assert!(json.contains("\"firing_count\":[0,1]"), "{json}");
    /// # Ok(()) }
    /// ```
    pub fn to_json(&self) -> String {
        let mean_fire: Vec<f64> = self
            .sum
            .iter()
            .zip(&self.count)
            .map(|(s, c)| if *c == 0 { 0.0 } else { s / *c as f64 })
            .collect();
        let top: BTreeMap<String, Vec<(u64, f32)>> = self
            .top
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_empty())
            .map(|(i, t)| (i.to_string(), t.iter().map(|(v, p)| (*p, *v)).collect()))
            .collect();
        serde_json::json!({
            "d_sae": self.d_sae,
            "tokens": self.tokens,
            "firing_count": self.count,
            "mean_activation": self.mean_activation(),
            "mean_when_firing": mean_fire,
            "top": top,
        })
        .to_string()
    }

    /// Write [`Recorder::to_json`] to `path` atomically.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let rec = saeplug::hook::Recorder::new(2, 1);
    /// let path = std::env::temp_dir().join(format!("saeplug-doc-rec-{}.json", std::process::id()));
    /// rec.write_json(&path)?;
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), rec.to_json());
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn write_json(&self, path: &Path) -> Result<()> {
        crate::weights::write_atomic(path, self.to_json().as_bytes())
    }
}

/// A steering vector expressed in SAE features.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::hook::decompose_vector;
/// use saeplug::solve::{Solver, SolverParams};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let v = saeplug::hook::recompose(&sae, &[(4, 2.0), (9, -1.0)]);
/// let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 8);
/// p.nonnegative = false; // the vector has a negative component
/// let dec = decompose_vector(&sae, &v, &p)?;
/// assert!(dec.cosine > 0.999 && dec.rel_error < 1e-3);
/// assert!(dec.features[..2].iter().any(|&(i, _)| i == 4));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Decomposition {
    /// (feature, coefficient), strongest |coefficient| first.
    pub features: Vec<(usize, f32)>,
    /// `sum c_i d_i`.
    pub recomposed: Vec<f32>,
    /// Cosine between the vector and its recomposition.
    pub cosine: f64,
    /// `||v - recomposed|| / ||v||`.
    pub rel_error: f64,
}

fn finish(sae: &Sae, v: &[f32], mut features: Vec<(usize, f32)>) -> Decomposition {
    features.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let recomposed = recompose(sae, &features);
    let dot: f64 = v
        .iter()
        .zip(&recomposed)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let nv = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let nr = recomposed
        .iter()
        .map(|a| (*a as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let err = v
        .iter()
        .zip(&recomposed)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    Decomposition {
        features,
        recomposed,
        cosine: if nv == 0.0 || nr == 0.0 {
            0.0
        } else {
            dot / (nv * nr)
        },
        rel_error: if nv == 0.0 { 0.0 } else { err / nv },
    }
}

/// `sum c_i d_i`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let sae = saeplug::synthetic::random_sae(4, 8, saeplug::Architecture::Standard, 3)?;
/// let v = saeplug::hook::recompose(&sae, &[(2, 3.0)]);
/// let d2 = &sae.weights().w_dec.as_slice()[2 * 4..3 * 4];
/// assert!(v.iter().zip(d2).all(|(a, b)| (a - 3.0 * b).abs() < 1e-6));
/// # Ok(()) }
/// ```
pub fn recompose(sae: &Sae, features: &[(usize, f32)]) -> Vec<f32> {
    let d = sae.d_in();
    let wd = sae.weights().w_dec.as_slice();
    let mut out = vec![0.0f32; d];
    for &(i, c) in features {
        if i < sae.d_sae() {
            out.iter_mut()
                .zip(&wd[i * d..(i + 1) * d])
                .for_each(|(o, w)| *o += c * w);
        }
    }
    out
}

/// Decompose a steering vector `v` with a signed ITO solve on the decoder
/// (steering vectors are off-distribution for the encoder; no b_dec involved).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::hook::{decompose_vector, recompose};
/// use saeplug::solve::{Solver, SolverParams};
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
/// let v = recompose(&sae, &[(7, 1.5), (40, -0.5)]); // signed: steering vectors may subtract
/// let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 4);
/// p.nonnegative = false;
/// let dec = decompose_vector(&sae, &v, &p)?;
/// assert_eq!(dec.features[0].0, 7);
/// assert!((dec.features[0].1 - 1.5).abs() < 1e-3);
/// # Ok(()) }
/// ```
pub fn decompose_vector(sae: &Sae, v: &[f32], p: &SolverParams) -> Result<Decomposition> {
    if v.len() != sae.d_in() {
        return Err(Error::invalid(format!(
            "vector has {} values, d_in is {}",
            v.len(),
            sae.d_in()
        )));
    }
    // solve() fits x - b_dec: shift by b_dec so it fits v itself.
    let x: Vec<f32> = v
        .iter()
        .zip(sae.weights().b_dec.as_slice())
        .map(|(a, b)| a + b)
        .collect();
    let (codes, _) = solve(&CpuBackend::default(), sae, &x, p)?;
    let (idx, val) = codes.row(0);
    Ok(finish(
        sae,
        v,
        idx.iter()
            .map(|&i| i as usize)
            .zip(val.iter().copied())
            .collect(),
    ))
}

/// ActAdd decomposition (GDM): `f(h+) - f(h-)` per position, averaged over the
/// positions, against `v = mean(h+ - h-)`. `h_plus`, `h_minus`: `[p, d_in]`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{CpuBackend, hook::decompose_actadd};
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let mut rng = saeplug::synthetic::Rng::new(1);
/// let (h_plus, h_minus) = (rng.normal_vec(3 * 16, 1.0), rng.normal_vec(3 * 16, 1.0));
/// let dec = decompose_actadd(&CpuBackend::new(1), &sae, &h_plus, &h_minus)?;
/// assert_eq!(dec.recomposed.len(), 16);
/// # Ok(()) }
/// ```
pub fn decompose_actadd(
    backend: &dyn Backend,
    sae: &Sae,
    h_plus: &[f32],
    h_minus: &[f32],
) -> Result<Decomposition> {
    if h_plus.len() != h_minus.len() {
        return Err(Error::invalid("h+ and h- must have the same shape"));
    }
    let d = sae.d_in();
    let ds = sae.d_sae();
    let p = crate::backend::rows_of(sae, h_plus)?;
    if p == 0 {
        return Err(Error::invalid("no positions"));
    }
    let mut fp = vec![0.0; p * ds];
    let mut fm = vec![0.0; p * ds];
    backend.encode(sae, h_plus, &mut fp)?;
    backend.encode(sae, h_minus, &mut fm)?;
    let mut c = vec![0.0f64; ds];
    for (a, b) in fp.chunks_exact(ds).zip(fm.chunks_exact(ds)) {
        for i in 0..ds {
            c[i] += (a[i] - b[i]) as f64 / p as f64;
        }
    }
    let mut v = vec![0.0f32; d];
    for (a, b) in h_plus.chunks_exact(d).zip(h_minus.chunks_exact(d)) {
        for j in 0..d {
            v[j] += (a[j] - b[j]) / p as f32;
        }
    }
    let features = c
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| (i, *x as f32))
        .collect();
    Ok(finish(sae, &v, features))
}

/// Remove features from a vector: `v - sum_{i in remove} c_i d_i` with the
/// coefficients of `dec`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::hook::{decompose_vector, filter, recompose};
/// use saeplug::solve::{Solver, SolverParams};
/// let sae = saeplug::synthetic::random_sae(32, 128, saeplug::Architecture::Standard, 3)?;
/// let v = recompose(&sae, &[(7, 1.5), (40, 0.5)]);
/// let dec = decompose_vector(&sae, &v, &SolverParams::new(Solver::OrthogonalMatchingPursuit, 4))?;
/// // Drop feature 40 from the steering vector: what is left is 1.5 * d_7.
/// let kept = filter(&sae, &v, &dec, &[40]);
/// let want = recompose(&sae, &[(7, 1.5)]);
/// assert!(kept.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3));
/// # Ok(()) }
/// ```
pub fn filter(sae: &Sae, v: &[f32], dec: &Decomposition, remove: &[usize]) -> Vec<f32> {
    let drop: Vec<(usize, f32)> = dec
        .features
        .iter()
        .copied()
        .filter(|(i, _)| remove.contains(i))
        .collect();
    let r = recompose(sae, &drop);
    v.iter().zip(&r).map(|(a, b)| a - b).collect()
}
