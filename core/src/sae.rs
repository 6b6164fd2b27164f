//! The `Sae` type: configuration, architecture and weight views.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Architecture, Sae};
//! # let dir = std::env::temp_dir().join(format!("saeplug-doc-sae-{}", std::process::id()));
//! # saeplug::synthetic::random_sae(16, 64, Architecture::JumpRelu, 1)?.save_saelens(&dir)?;
//! // `dir` is a SAELens folder (cfg.json + sae_weights.safetensors).
//! let sae = Sae::open(&dir)?;
//! assert_eq!(sae.config().architecture, Architecture::JumpRelu);
//! assert_eq!((sae.d_in(), sae.d_sae()), (16, 64));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::weights::{MappedFile, Tensor, write_atomic, write_safetensors};

/// Order of the top-k selection relative to the ReLU (FORMATS.md section 8.1).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Architecture, Backend, CpuBackend, TopKOrder, synthetic::random_sae};
/// // Signed top-k keeps the k largest |pre-activations|, so it can return negatives.
/// let topk = |order| Architecture::TopK { k: 4, order, rescale_by_decoder_norm: false };
/// let sae = random_sae(16, 64, topk(TopKOrder::Signed), 1)?;
/// let x = saeplug::synthetic::Rng::new(2).normal_vec(16, 1.0);
/// let codes = CpuBackend::new(1).encode_sparse(&sae, &x)?;
/// assert_eq!(codes.indices.len(), 4);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopKOrder {
    /// SAELens and OpenAI: keep the k largest pre-activations, then ReLU them.
    TopKThenRelu,
    /// EleutherAI sparsify: ReLU, then keep the k largest.
    ReluThenTopK,
    /// Legacy sparsify `signed`: keep the k largest by absolute value, no ReLU.
    Signed,
    /// sparsify `groupmax`: the maximum of each of k equal groups of ReLU'd values.
    GroupMax,
}

/// Encoder architecture.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Architecture, Sae};
/// fn describe(sae: &Sae) -> String {
///     match sae.config().architecture {
///         Architecture::TopK { k, .. } => format!("top-{k}"),
///         a => a.name().to_string(),
///     }
/// }
/// let sae = saeplug::synthetic::random_sae(8, 32, Architecture::Gated, 1)?;
/// assert_eq!(describe(&sae), "gated");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `relu(x W_enc + b_enc)`.
    Standard,
    /// `relu(p) * 1[p > threshold]` (also BatchTopK SAEs at inference).
    JumpRelu,
    /// Gated SAE: gate `x W_enc + b_gate > 0`, magnitude `relu(x (W_enc * exp(r_mag)) + b_mag)`.
    Gated,
    /// Top-k SAE.
    TopK {
        /// Number of features kept per row.
        k: usize,
        /// Selection order (SAELens vs sparsify).
        order: TopKOrder,
        /// SAELens `rescale_acts_by_decoder_norm`.
        rescale_by_decoder_norm: bool,
    },
}

impl Architecture {
    /// Stable numeric code used by the C ABI.
    ///
    /// ```
    /// use saeplug::Architecture;
    /// assert_eq!(Architecture::Standard.code(), 0);
    /// assert_eq!(Architecture::JumpRelu.code(), 1);
    /// assert_eq!(Architecture::Gated.code(), 2);
    /// ```
    pub fn code(&self) -> u32 {
        match self {
            Architecture::Standard => 0,
            Architecture::JumpRelu => 1,
            Architecture::Gated => 2,
            Architecture::TopK { .. } => 3,
        }
    }

    /// Name as SAELens spells it.
    ///
    /// ```
    /// assert_eq!(saeplug::Architecture::JumpRelu.name(), "jumprelu");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::JumpRelu => "jumprelu",
            Architecture::Gated => "gated",
            Architecture::TopK { .. } => "topk",
        }
    }
}

/// Input normalisation applied before encoding and inverted after decoding.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::Normalization;
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
/// assert_eq!(sae.config().normalization, Normalization::None);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// Identity (also `expected_average_only_in`, whose factor is folded in at load).
    None,
    /// `x * sqrt(d_in) / ||x||` per token.
    ConstantNormRescale,
    /// `(x - mean) / (std + 1e-5)` per token, torch's unbiased std.
    LayerNorm,
}

impl Normalization {
    /// Stable numeric code used by the C ABI.
    ///
    /// ```
    /// use saeplug::Normalization;
    /// assert_eq!(Normalization::None.code(), 0);
    /// assert_eq!(Normalization::LayerNorm.code(), 2);
    /// ```
    pub fn code(self) -> u32 {
        match self {
            Normalization::None => 0,
            Normalization::ConstantNormRescale => 1,
            Normalization::LayerNorm => 2,
        }
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The file format an SAE was loaded from.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Format, Sae};
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
/// assert_eq!(sae.config().format, Format::InMemory);
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-fmt-{}", std::process::id()));
/// sae.save_saelens(&dir)?;
/// assert_eq!(Sae::open(&dir)?.config().format, Format::SaeLens);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// SAELens folder: `cfg.json` + `sae_weights.safetensors`.
    SaeLens,
    /// Gemma Scope 1 `params.npz`.
    GemmaScope1,
    /// Gemma Scope 2 `config.json` + `params.safetensors`.
    GemmaScope2,
    /// EleutherAI sparsify `cfg.json` + `sae.safetensors`.
    Sparsify,
    /// Built in memory.
    InMemory,
}

/// Everything about an SAE except its weights.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
/// let cfg = sae.config();
/// assert_eq!((cfg.d_in, cfg.d_sae), (8, 32));
/// assert!(cfg.hook_name.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SaeConfig {
    /// Input (residual) dimension.
    pub d_in: usize,
    /// Number of features (dictionary size).
    pub d_sae: usize,
    /// Encoder architecture.
    pub architecture: Architecture,
    /// Subtract `b_dec` from the input before encoding.
    pub apply_b_dec_to_input: bool,
    /// Input normalisation.
    pub normalization: Normalization,
    /// Hook point named by the file, if any (e.g. `blocks.8.hook_resid_post`).
    pub hook_name: Option<String>,
    /// Source format.
    pub format: Format,
}

/// How `W_enc` is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncLayout {
    /// `[d_in, d_sae]` (SAELens, Gemma Scope).
    InBySae,
    /// `[d_sae, d_in]` (nn.Linear weight, sparsify).
    SaeByIn,
}

/// The weight tensors of an SAE.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::JumpRelu, 1)?;
/// let w = sae.weights();
/// assert_eq!(w.w_dec.shape(), [32, 8]);
/// assert_eq!(w.threshold.as_ref().map(|t| t.shape().to_vec()), Some(vec![32]));
/// assert!(w.r_mag.is_none()); // gated only
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SaeWeights {
    /// Encoder matrix, `[d_in, d_sae]` or `[d_sae, d_in]` (see `w_enc_transposed`).
    pub w_enc: Tensor,
    /// True when `w_enc` is stored `[d_sae, d_in]`.
    pub w_enc_transposed: bool,
    /// Encoder bias `[d_sae]` (`b_gate` for gated SAEs).
    pub b_enc: Tensor,
    /// Decoder matrix `[d_sae, d_in]`.
    pub w_dec: Tensor,
    /// Decoder bias `[d_in]`.
    pub b_dec: Tensor,
    /// JumpReLU threshold `[d_sae]`.
    pub threshold: Option<Tensor>,
    /// Gated `r_mag` `[d_sae]`.
    pub r_mag: Option<Tensor>,
    /// Gated `b_mag` `[d_sae]`.
    pub b_mag: Option<Tensor>,
}

/// A loaded sparse autoencoder. Cheap to share across threads (`Send + Sync`);
/// all compute entry points take `&Sae`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use std::sync::Arc;
/// use saeplug::{Backend, CpuBackend};
/// let sae = Arc::new(saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 1)?);
/// // One SAE, many threads, each with its own backend.
/// let handles: Vec<_> = (0..2).map(|t| {
///     let sae = Arc::clone(&sae);
///     std::thread::spawn(move || {
///         let x = vec![t as f32; 16];
///         CpuBackend::new(1).encode_sparse(&sae, &x).map(|c| c.n_rows())
///     })
/// }).collect();
/// for h in handles {
///     assert_eq!(h.join().unwrap()?, 1);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sae {
    pub(crate) cfg: SaeConfig,
    pub(crate) w: SaeWeights,
    pub(crate) enc_layout: EncLayout,
    pub(crate) files: Vec<Arc<MappedFile>>,
    pub(crate) path: Option<PathBuf>,
    dec_norms: OnceLock<Vec<f32>>,
    exp_r_mag: OnceLock<Vec<f32>>,
    id: u64,
}

impl Sae {
    /// Build an SAE from a config and weights, checking every shape.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::weights::Tensor;
    /// use saeplug::{Architecture, Format, Normalization, Sae, SaeConfig, SaeWeights};
    /// let (d_in, d_sae) = (2, 3);
    /// let cfg = SaeConfig {
    ///     d_in, d_sae,
    ///     architecture: Architecture::Standard,
    ///     apply_b_dec_to_input: false,
    ///     normalization: Normalization::None,
    ///     hook_name: Some("blocks.0.hook_resid_post".into()),
    ///     format: Format::InMemory,
    /// };
    /// let w = SaeWeights {
    ///     w_enc: Tensor::owned("W_enc", vec![d_in, d_sae], vec![1.0, 0.0, 1.0, 0.0, 1.0, -1.0])?,
    ///     w_enc_transposed: false,
    ///     b_enc: Tensor::owned("b_enc", vec![d_sae], vec![0.0; 3])?,
    ///     w_dec: Tensor::owned("W_dec", vec![d_sae, d_in], vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5])?,
    ///     b_dec: Tensor::owned("b_dec", vec![d_in], vec![0.0; 2])?,
    ///     threshold: None, r_mag: None, b_mag: None,
    /// };
    /// let sae = Sae::from_parts(cfg, w)?;
    /// assert_eq!(sae.d_sae(), 3);
    /// # Ok(()) }
    /// ```
    pub fn from_parts(cfg: SaeConfig, w: SaeWeights) -> Result<Self> {
        Self::assemble(cfg, w, Vec::new(), None)
    }

    pub(crate) fn assemble(
        cfg: SaeConfig,
        w: SaeWeights,
        files: Vec<Arc<MappedFile>>,
        path: Option<PathBuf>,
    ) -> Result<Self> {
        let (d_in, d_sae) = (cfg.d_in, cfg.d_sae);
        if d_in == 0 || d_sae == 0 {
            return Err(Error::invalid(format!(
                "d_in ({d_in}) and d_sae ({d_sae}) must be positive"
            )));
        }
        let where_ = path.clone().unwrap_or_else(|| PathBuf::from("<memory>"));
        let check = |t: &Tensor, expected: &[usize]| -> Result<()> {
            if t.shape() != expected {
                return Err(Error::Shape {
                    path: where_.clone(),
                    name: t.name().to_string(),
                    expected: expected.to_vec(),
                    got: t.shape().to_vec(),
                });
            }
            Ok(())
        };
        let enc_layout = if w.w_enc_transposed {
            check(&w.w_enc, &[d_sae, d_in])?;
            EncLayout::SaeByIn
        } else {
            check(&w.w_enc, &[d_in, d_sae])?;
            EncLayout::InBySae
        };
        check(&w.b_enc, &[d_sae])?;
        check(&w.w_dec, &[d_sae, d_in])?;
        check(&w.b_dec, &[d_in])?;
        let need = |t: &Option<Tensor>, name: &str| -> Result<()> {
            match t {
                Some(t) => check(t, &[d_sae]),
                None => Err(Error::MissingTensor {
                    path: where_.clone(),
                    name: name.to_string(),
                }),
            }
        };
        match cfg.architecture {
            Architecture::JumpRelu => need(&w.threshold, "threshold")?,
            Architecture::Gated => {
                need(&w.r_mag, "r_mag")?;
                need(&w.b_mag, "b_mag")?;
            }
            Architecture::TopK { k, order, .. } => {
                if k == 0 || k > d_sae {
                    return Err(Error::invalid(format!(
                        "top-k SAE: k = {k} must be in 1..={d_sae} (d_sae)"
                    )));
                }
                if order == TopKOrder::GroupMax && d_sae % k != 0 {
                    return Err(Error::invalid(format!(
                        "groupmax SAE: d_sae = {d_sae} is not a multiple of k = {k}"
                    )));
                }
            }
            Architecture::Standard => {}
        }
        Ok(Sae {
            cfg,
            w,
            enc_layout,
            files,
            path,
            dec_norms: OnceLock::new(),
            exp_r_mag: OnceLock::new(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Open an SAE from a path, detecting the format (see [`crate::format::detect`]).
    ///
    /// Weights are memory-mapped; f32 tensors are borrowed from the map (zero copy).
    /// The files must not be modified or truncated while the `Sae` lives; use
    /// [`Sae::check_unchanged`] to detect size/mtime changes.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::Sae;
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-open-{}", std::process::id()));
    /// # saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 1)?.save_saelens(&dir)?;
    /// // A folder, or the weights file inside it; Gemma Scope params.npz and
    /// // sparsify folders open the same way.
    /// let a = Sae::open(&dir)?;
    /// let b = Sae::open(dir.join("sae_weights.safetensors"))?;
    /// assert_eq!(a.weights().w_dec.as_slice(), b.weights().w_dec.as_slice());
    /// assert!(Sae::open(dir.join("missing")).is_err());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        crate::format::open(path.as_ref())
    }

    /// A process-unique identity (backends key cached device copies by it).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let a = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// let b = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// assert_ne!(a.id(), b.id()); // same weights, different SAEs
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Configuration.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// assert!(sae.config().apply_b_dec_to_input); // synthetic SAEs subtract b_dec first
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &SaeConfig {
        &self.cfg
    }

    /// Input dimension.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// assert_eq!(sae.d_in(), 8);
    /// # Ok(()) }
    /// ```
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }

    /// Number of features.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// assert_eq!(sae.d_sae(), 32);
    /// # Ok(()) }
    /// ```
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }

    /// Weights.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// // Decoder row (feature) 5 as a slice: a steering direction.
    /// let d5 = &sae.weights().w_dec.as_slice()[5 * 8..6 * 8];
    /// assert_eq!(d5.len(), 8);
    /// # Ok(()) }
    /// ```
    pub fn weights(&self) -> &SaeWeights {
        &self.w
    }

    /// Path the SAE was opened from.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// assert!(sae.path().is_none()); // built in memory
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Names of tensors that had to be copied (converted dtype or misaligned);
    /// empty means fully zero-copy.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-copied-{}", std::process::id()));
    /// saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?.save_saelens(&dir)?;
    /// let sae = saeplug::Sae::open(&dir)?;
    /// assert!(sae.copied_tensors().is_empty()); // f32 safetensors: every tensor mapped
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn copied_tensors(&self) -> Vec<&str> {
        let w = &self.w;
        [
            Some(&w.w_enc),
            Some(&w.b_enc),
            Some(&w.w_dec),
            Some(&w.b_dec),
            w.threshold.as_ref(),
            w.r_mag.as_ref(),
            w.b_mag.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter(|t| !t.is_mapped() && !self.files.is_empty())
        .map(Tensor::name)
        .collect()
    }

    /// Error if any mapped file changed size or modification time since open.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-unchanged-{}", std::process::id()));
    /// saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?.save_saelens(&dir)?;
    /// let sae = saeplug::Sae::open(&dir)?;
    /// sae.check_unchanged()?;
    /// # drop(sae);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn check_unchanged(&self) -> Result<()> {
        self.files.iter().try_for_each(|f| f.check_unchanged())
    }

    /// Euclidean norm of each decoder row, computed once on first use.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
    /// assert_eq!(sae.decoder_norms().len(), 32);
    /// # Ok(()) }
    /// ```
    pub fn decoder_norms(&self) -> &[f32] {
        self.dec_norms.get_or_init(|| {
            self.w
                .w_dec
                .as_slice()
                .chunks_exact(self.cfg.d_in)
                .map(|r| {
                    r.iter()
                        .map(|v| (*v as f64) * (*v as f64))
                        .sum::<f64>()
                        .sqrt() as f32
                })
                .collect()
        })
    }

    /// `exp(r_mag)` for gated SAEs, computed once on first use.
    pub(crate) fn exp_r_mag(&self) -> &[f32] {
        self.exp_r_mag.get_or_init(|| match &self.w.r_mag {
            Some(r) => r.as_slice().iter().map(|v| v.exp()).collect(),
            None => Vec::new(),
        })
    }

    /// Save as a SAELens v6 folder (`cfg.json` + `sae_weights.safetensors`), atomically
    /// per file. Top-k SAEs of sparsify order cannot be expressed and are refused.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Architecture, Sae};
    /// let sae = saeplug::synthetic::random_sae(8, 32, Architecture::Gated, 1)?;
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-save-{}", std::process::id()));
    /// sae.save_saelens(&dir)?;
    /// let back = Sae::open(&dir)?;
    /// assert_eq!(back.config().architecture, Architecture::Gated);
    /// assert_eq!(back.weights().b_enc.as_slice(), sae.weights().b_enc.as_slice());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn save_saelens(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let c = &self.cfg;
        let norm = match c.normalization {
            Normalization::None => "none",
            Normalization::ConstantNormRescale => "constant_norm_rescale",
            Normalization::LayerNorm => "layer_norm",
        };
        let mut cfg = serde_json::json!({
            "d_in": c.d_in, "d_sae": c.d_sae, "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": c.apply_b_dec_to_input,
            "normalize_activations": norm, "reshape_activations": "none",
            "architecture": c.architecture.name(),
            "metadata": {"sae_lens_version": "6.0.0", "hook_name": c.hook_name},
        });
        if let Architecture::TopK {
            k,
            order,
            rescale_by_decoder_norm,
        } = c.architecture
        {
            if order != TopKOrder::TopKThenRelu {
                return Err(Error::Unsupported(format!(
                    "a {order:?} top-k SAE has no SAELens equivalent"
                )));
            }
            cfg["k"] = k.into();
            cfg["rescale_acts_by_decoder_norm"] = rescale_by_decoder_norm.into();
        }
        let w = &self.w;
        let w_enc_t;
        let w_enc: &[f32] = if w.w_enc_transposed {
            w_enc_t = transpose(w.w_enc.as_slice(), c.d_sae, c.d_in);
            &w_enc_t
        } else {
            w.w_enc.as_slice()
        };
        let (di, ds) = (c.d_in, c.d_sae);
        let mut ts: Vec<(&str, &[usize], &[f32])> = Vec::new();
        let s_enc = [di, ds];
        let s_dec = [ds, di];
        let s_sae = [ds];
        let s_in = [di];
        ts.push(("W_enc", &s_enc, w_enc));
        ts.push(("W_dec", &s_dec, w.w_dec.as_slice()));
        ts.push(("b_dec", &s_in, w.b_dec.as_slice()));
        let bias_name = if c.architecture == Architecture::Gated {
            "b_gate"
        } else {
            "b_enc"
        };
        ts.push((bias_name, &s_sae, w.b_enc.as_slice()));
        for (name, t) in [
            ("threshold", &w.threshold),
            ("r_mag", &w.r_mag),
            ("b_mag", &w.b_mag),
        ] {
            if let Some(t) = t {
                ts.push((name, &s_sae, t.as_slice()));
            }
        }
        write_safetensors(&dir.join("sae_weights.safetensors"), &ts, &BTreeMap::new())?;
        let text = serde_json::to_vec_pretty(&cfg)
            .map_err(|e| Error::invalid(format!("cannot serialise cfg.json: {e}")))?;
        write_atomic(&dir.join("cfg.json"), &text)
    }
}

pub(crate) fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}
