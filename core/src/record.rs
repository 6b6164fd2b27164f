//! Feature recording: per-feature firing counts, mean activations and the top
//! activating positions over a run, written as JSON (what auto-interpretability
//! pipelines start from).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Backend, CpuBackend, record::Recorder};
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let acts = saeplug::synthetic::Rng::new(1).normal_vec(5 * 16, 1.0); // 5 tokens
//! let mut rec = Recorder::new(sae.d_sae(), 3);
//! rec.record(&CpuBackend::new(1).encode_sparse(&sae, &acts)?, 0)?;
//! assert_eq!(rec.tokens(), 5);
//! # Ok(()) }
//! ```

pub mod contexts;

use std::collections::BTreeMap;
use std::path::Path;

use crate::backend::SparseCodes;
use crate::error::{Error, Result};

/// Feature statistics over a run: what auto-interpretability pipelines need.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{SparseCodes, record::Recorder};
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
    /// let rec = saeplug::record::Recorder::new(16384, 20);
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
    /// use saeplug::{SparseCodes, record::Recorder};
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
    /// let mut rec = saeplug::record::Recorder::new(2, 1);
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
    /// let mut rec = saeplug::record::Recorder::new(2, 1);
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
    /// let mut rec = saeplug::record::Recorder::new(2, 1);
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
    /// let mut rec = saeplug::record::Recorder::new(1, 2);
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
    /// let mut rec = saeplug::record::Recorder::new(2, 1);
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
    /// let rec = saeplug::record::Recorder::new(2, 1);
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
