//! Toy models for dictionary learning: activations built from a known dictionary
//! of unit feature directions in superposition (`d_in < n_features`), each row a
//! sparse non-negative combination with power-law feature frequencies. An SAE
//! that learns has decoder rows close to the true features ([`ToyModel::recovery`]).
//!
//! ```
//! use saeplug::train::toy::ToyModel;
//! let toy = ToyModel::new(8, 16, 2.0, 0.0, 1);
//! let x = toy.sample(100, 2);
//! assert_eq!(x.len(), 100 * 8);
//! // The true dictionary recovers itself perfectly.
//! let (frac, mean) = toy.recovery(toy.features(), 0.9);
//! assert_eq!(frac, 1.0);
//! assert!(mean > 0.9999);
//! ```

use crate::synthetic::Rng;

/// A known dictionary and the frequency and magnitude of each feature.
///
/// ```
/// let toy = saeplug::train::toy::ToyModel::new(4, 12, 1.5, 0.0, 7);
/// assert_eq!(toy.features().len(), 12 * 4);
/// let p = toy.frequencies();
/// assert!(p.windows(2).all(|w| w[0] >= w[1])); // power law, most frequent first
/// assert!((p.iter().sum::<f64>() - 1.5).abs() < 1e-9);
/// ```
#[derive(Clone, Debug)]
pub struct ToyModel {
    d_in: usize,
    features: Vec<f32>,
    freq: Vec<f64>,
    noise: f64,
}

impl ToyModel {
    /// `n_features` random unit directions in `d_in` dimensions; feature `i` is
    /// active with probability ∝ (i + 1)^-0.5, scaled so that `mean_active`
    /// features are active per row on average (each probability capped at 1);
    /// active magnitudes uniform in [0.5, 1.5); Gaussian noise of scale `noise`
    /// per coordinate.
    ///
    /// ```
    /// let toy = saeplug::train::toy::ToyModel::new(16, 64, 4.0, 0.01, 3);
    /// assert_eq!(toy.d_in(), 16);
    /// ```
    pub fn new(d_in: usize, n_features: usize, mean_active: f64, noise: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut features = vec![0.0f32; n_features * d_in];
        for row in features.chunks_exact_mut(d_in.max(1)) {
            let v: Vec<f64> = (0..d_in).map(|_| rng.normal()).collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            row.iter_mut()
                .zip(&v)
                .for_each(|(r, x)| *r = (x / n) as f32);
        }
        let raw: Vec<f64> = (0..n_features)
            .map(|i| ((i + 1) as f64).powf(-0.5))
            .collect();
        let total: f64 = raw.iter().sum();
        let freq = raw
            .iter()
            .map(|r| (r * mean_active / total.max(1e-300)).min(1.0))
            .collect();
        ToyModel {
            d_in,
            features,
            freq,
            noise,
        }
    }

    /// Row width.
    ///
    /// ```
    /// assert_eq!(saeplug::train::toy::ToyModel::new(5, 10, 1.0, 0.0, 0).d_in(), 5);
    /// ```
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// The true dictionary, `[n_features, d_in]`, unit rows.
    ///
    /// ```
    /// let toy = saeplug::train::toy::ToyModel::new(5, 10, 1.0, 0.0, 0);
    /// let n: f32 = toy.features()[..5].iter().map(|v| v * v).sum();
    /// assert!((n - 1.0).abs() < 1e-5);
    /// ```
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Per-feature activation probabilities.
    ///
    /// ```
    /// let toy = saeplug::train::toy::ToyModel::new(5, 10, 1.0, 0.0, 0);
    /// assert_eq!(toy.frequencies().len(), 10);
    /// ```
    pub fn frequencies(&self) -> &[f64] {
        &self.freq
    }

    /// `n` rows `[n, d_in]` drawn with `seed`.
    ///
    /// ```
    /// let toy = saeplug::train::toy::ToyModel::new(5, 10, 1.0, 0.0, 0);
    /// assert_eq!(toy.sample(3, 1), toy.sample(3, 1)); // deterministic
    /// ```
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        let d = self.d_in;
        let mut rng = Rng::new(seed);
        let mut x = vec![0.0f32; n * d];
        for row in x.chunks_exact_mut(d.max(1)) {
            for (i, &p) in self.freq.iter().enumerate() {
                if rng.uniform() < p {
                    let a = (0.5 + rng.uniform()) as f32;
                    let f = &self.features[i * d..(i + 1) * d];
                    row.iter_mut().zip(f).for_each(|(r, f)| *r += a * f);
                }
            }
            if self.noise > 0.0 {
                row.iter_mut()
                    .for_each(|r| *r += (self.noise * rng.normal()) as f32);
            }
        }
        x
    }

    /// How well a learned decoder `[n_rows, d_in]` recovers the dictionary: the
    /// fraction of true features whose best learned row has cosine ≥ `min_cos`,
    /// and the mean over true features of that best cosine.
    ///
    /// ```
    /// let toy = saeplug::train::toy::ToyModel::new(4, 8, 1.0, 0.0, 0);
    /// let (frac, _) = toy.recovery(&[1.0, 0.0, 0.0, 0.0], 0.9);
    /// assert!(frac <= 0.25);
    /// ```
    pub fn recovery(&self, w_dec: &[f32], min_cos: f64) -> (f64, f64) {
        let d = self.d_in;
        let learned: Vec<(&[f32], f64)> = w_dec
            .chunks_exact(d.max(1))
            .map(|r| {
                (
                    r,
                    r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt(),
                )
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        let n_true = self.features.len() / d.max(1);
        let mut hits = 0usize;
        let mut sum = 0.0;
        for f in self.features.chunks_exact(d.max(1)) {
            let best = learned
                .iter()
                .map(|(r, n)| {
                    r.iter()
                        .zip(f)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
                        / n
                })
                .fold(f64::NEG_INFINITY, f64::max);
            if best >= min_cos {
                hits += 1;
            }
            sum += best.max(-1.0);
        }
        (
            hits as f64 / n_true.max(1) as f64,
            sum / n_true.max(1) as f64,
        )
    }
}
