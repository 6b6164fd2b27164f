//! The `Sae` type: configuration, architecture and weight views.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::weights::{MappedFile, Tensor, write_atomic, write_safetensors};

/// Order of the top-k selection relative to the ReLU (FORMATS.md section 8.1).
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
    pub fn code(&self) -> u32 {
        match self {
            Architecture::Standard => 0,
            Architecture::JumpRelu => 1,
            Architecture::Gated => 2,
            Architecture::TopK { .. } => 3,
        }
    }

    /// Name as SAELens spells it.
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
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        crate::format::open(path.as_ref())
    }

    /// A process-unique identity (backends key cached device copies by it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Configuration.
    pub fn config(&self) -> &SaeConfig {
        &self.cfg
    }

    /// Input dimension.
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }

    /// Number of features.
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }

    /// Weights.
    pub fn weights(&self) -> &SaeWeights {
        &self.w
    }

    /// Path the SAE was opened from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Names of tensors that had to be copied (converted dtype or misaligned);
    /// empty means fully zero-copy.
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
    pub fn check_unchanged(&self) -> Result<()> {
        self.files.iter().try_for_each(|f| f.check_unchanged())
    }

    /// Euclidean norm of each decoder row, computed once on first use.
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

    /// Decoder norms when the architecture uses them (top-k with rescaling), else empty.
    pub(crate) fn decoder_norms_if_needed(&self) -> &[f32] {
        match self.cfg.architecture {
            Architecture::TopK {
                rescale_by_decoder_norm: true,
                ..
            } => self.decoder_norms(),
            _ => &[],
        }
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
