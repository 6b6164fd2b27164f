//! What loaders produce: an SAE's configuration (architecture, dimensions,
//! normalisation, source format) and its weight tensors. Both the loaders
//! (`format/`) and the assembled [`crate::Sae`] use these types; this module sits
//! below both so that no loader imports `sae.rs`.

use crate::weights::Tensor;

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

impl SaeWeights {
    /// Every tensor present, in a fixed order (w_enc, b_enc, w_dec, b_dec, then the
    /// optional threshold, r_mag, b_mag).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::JumpRelu, 1)?;
    /// let names: Vec<&str> = sae.weights().tensors().map(|t| t.name()).collect();
    /// assert_eq!(names.len(), 5); // four matrices and biases, plus the threshold
    /// # Ok(()) }
    /// ```
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        [
            Some(&self.w_enc),
            Some(&self.b_enc),
            Some(&self.w_dec),
            Some(&self.b_dec),
            self.threshold.as_ref(),
            self.r_mag.as_ref(),
            self.b_mag.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}
