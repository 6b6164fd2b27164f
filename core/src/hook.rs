//! Steering hooks: an SAE, a layer, the token positions to touch and a list of
//! edits, applied in place to an engine's `[n_tokens, d_model]` activations.
//! Also feature recording (firing counts, means, top activating positions) and
//! steering-vector decomposition into SAE features.

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
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Times each feature fired.
    pub fn firing_counts(&self) -> &[u64] {
        &self.count
    }

    /// Mean activation of each feature over all tokens seen.
    pub fn mean_activation(&self) -> Vec<f64> {
        self.sum
            .iter()
            .map(|s| s / self.tokens.max(1) as f64)
            .collect()
    }

    /// Top (value, position) pairs of feature `i`, strongest first.
    pub fn top(&self, i: usize) -> &[(f32, u64)] {
        &self.top[i]
    }

    /// The statistics as JSON: `{"d_sae", "tokens", "firing_count": [...],
    /// "mean_activation": [...], "mean_when_firing": [...],
    /// "top": {"<feature>": [[position, value], ...]}}` (features that fired).
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
    pub fn write_json(&self, path: &Path) -> Result<()> {
        crate::weights::write_atomic(path, self.to_json().as_bytes())
    }
}

/// A steering vector expressed in SAE features.
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
