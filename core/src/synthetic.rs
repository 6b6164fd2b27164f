//! Deterministic random SAEs and data, for demos, tests and benchmarks.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::synthetic::{random_sae, sparse_data};
//! let sae = random_sae(64, 256, saeplug::Architecture::Gated, 42)?;
//! let x = sparse_data(&sae, 10, 4, 0.05, 43);
//! assert_eq!(x.len(), 10 * 64);
//! # Ok(()) }
//! ```

use crate::error::Result;
use crate::sae::{Architecture, Format, Normalization, Sae, SaeConfig, SaeWeights};
use crate::weights::Tensor;

/// SplitMix64: small, fast, deterministic; not for cryptography.
///
/// ```
/// use saeplug::synthetic::Rng;
/// let (mut a, mut b) = (Rng::new(9), Rng::new(9));
/// assert_eq!(a.next_u64(), b.next_u64()); // deterministic
/// ```
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    ///
    /// ```
    /// let mut rng = saeplug::synthetic::Rng::new(1);
    /// assert_ne!(rng.next_u64(), rng.next_u64());
    /// ```
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 64 random bits.
    ///
    /// ```
    /// let mut rng = saeplug::synthetic::Rng::new(0);
    /// let bits = rng.next_u64();
    /// assert_ne!(bits, 0);
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    ///
    /// ```
    /// let mut rng = saeplug::synthetic::Rng::new(3);
    /// assert!((0..1000).map(|_| rng.uniform()).all(|u| (0.0..1.0).contains(&u)));
    /// ```
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    ///
    /// ```
    /// let mut rng = saeplug::synthetic::Rng::new(3);
    /// let mean = (0..10_000).map(|_| rng.normal()).sum::<f64>() / 10_000.0;
    /// assert!(mean.abs() < 0.05);
    /// ```
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` normal samples scaled by `s`, as f32.
    ///
    /// ```
    /// let v = saeplug::synthetic::Rng::new(3).normal_vec(5, 0.1);
    /// assert_eq!(v.len(), 5);
    /// assert!(v.iter().all(|x| x.abs() < 1.0));
    /// ```
    pub fn normal_vec(&mut self, n: usize, s: f64) -> Vec<f32> {
        (0..n).map(|_| (self.normal() * s) as f32).collect()
    }
}

/// A random SAE of the given architecture: decoder rows of unit norm, `W_enc` the
/// decoder's transpose (tied initialisation), encoder biases around -0.2 so that
/// only well-aligned features fire, thresholds in [0.3, 0.5).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Architecture, TopKOrder, synthetic::random_sae};
/// let sae = random_sae(16, 64, Architecture::TopK { k: 8, order: TopKOrder::TopKThenRelu, rescale_by_decoder_norm: false }, 5)?;
/// assert!(sae.decoder_norms().iter().all(|n| (n - 1.0).abs() < 1e-5)); // unit decoder rows
/// # Ok(()) }
/// ```
pub fn random_sae(d_in: usize, d_sae: usize, architecture: Architecture, seed: u64) -> Result<Sae> {
    let mut rng = Rng::new(seed);
    let mut w_dec = rng.normal_vec(d_sae * d_in, 1.0);
    for row in w_dec.chunks_exact_mut(d_in.max(1)) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
    let mut w_enc = vec![0.0f32; d_in * d_sae];
    for i in 0..d_sae {
        for j in 0..d_in {
            w_enc[j * d_sae + i] = w_dec[i * d_in + j];
        }
    }
    let small = |rng: &mut Rng, n: usize| rng.normal_vec(n, 0.05);
    let b_enc: Vec<f32> = small(&mut rng, d_sae).iter().map(|b| b - 0.2).collect();
    let b_dec = small(&mut rng, d_in);
    let (threshold, r_mag, b_mag) = match architecture {
        Architecture::JumpRelu => (
            Some(
                (0..d_sae)
                    .map(|_| (0.3 + rng.uniform() * 0.2) as f32)
                    .collect(),
            ),
            None,
            None,
        ),
        Architecture::Gated => (
            None,
            Some(small(&mut rng, d_sae)),
            Some(small(&mut rng, d_sae)),
        ),
        _ => (None, None, None),
    };
    let vec_t = |name: &str, v: Option<Vec<f32>>| -> Result<Option<Tensor>> {
        v.map(|v| Tensor::owned(name, vec![d_sae], v)).transpose()
    };
    let w = SaeWeights {
        w_enc: Tensor::owned("W_enc", vec![d_in, d_sae], w_enc)?,
        w_enc_transposed: false,
        b_enc: Tensor::owned("b_enc", vec![d_sae], b_enc)?,
        w_dec: Tensor::owned("W_dec", vec![d_sae, d_in], w_dec)?,
        b_dec: Tensor::owned("b_dec", vec![d_in], b_dec)?,
        threshold: vec_t("threshold", threshold)?,
        r_mag: vec_t("r_mag", r_mag)?,
        b_mag: vec_t("b_mag", b_mag)?,
    };
    let cfg = SaeConfig {
        d_in,
        d_sae,
        architecture,
        apply_b_dec_to_input: true,
        normalization: Normalization::None,
        hook_name: None,
        format: Format::InMemory,
    };
    Sae::from_parts(cfg, w)
}

/// Activations that are sparse nonnegative combinations of `sae`'s decoder rows
/// (`active` per row, coefficients in [0.5, 2.5)) plus Gaussian noise of scale `noise`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend, synthetic::{random_sae, sparse_data}};
/// let sae = random_sae(32, 128, saeplug::Architecture::Standard, 5)?;
/// let x = sparse_data(&sae, 8, 3, 0.0, 6);
/// let codes = CpuBackend::new(1).encode_sparse(&sae, &x)?;
/// assert_eq!(codes.n_rows(), 8);
/// # Ok(()) }
/// ```
pub fn sparse_data(sae: &Sae, n: usize, active: usize, noise: f64, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let wd = sae.weights().w_dec.as_slice();
    let b = sae.weights().b_dec.as_slice();
    let mut x = vec![0.0f32; n * d];
    for row in x.chunks_exact_mut(d) {
        row.copy_from_slice(b);
        for _ in 0..active {
            let i = (rng.next_u64() % ds as u64) as usize;
            let c = (0.5 + 2.0 * rng.uniform()) as f32;
            for (o, w) in row.iter_mut().zip(&wd[i * d..(i + 1) * d]) {
                *o += c * w;
            }
        }
        for o in row.iter_mut() {
            *o += (rng.normal() * noise) as f32;
        }
    }
    x
}
