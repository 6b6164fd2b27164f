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

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub(crate) use crate::config::{
    Architecture, Format, Normalization, SaeConfig, SaeWeights, TopKOrder,
};
use crate::error::{Error, Result};
use crate::format::LoadedSae;
use crate::weights::{MappedFile, Tensor, first_non_finite};

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How `W_enc` is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncLayout {
    /// `[d_in, d_sae]` (SAELens, Gemma Scope).
    InBySae,
    /// `[d_sae, d_in]` (nn.Linear weight, sparsify).
    SaeByIn,
}

/// Where a weight tensor holds NaN or Inf.
#[derive(Debug)]
struct NonFiniteWeight {
    tensor: String,
    shape: Vec<usize>,
    index: usize,
    value: f32,
}

/// One derived copy of an SAE's weights (see [`Sae::derived`]).
#[derive(Debug)]
struct DerivedSlot {
    key: u64,
    bytes: usize,
    value: Arc<dyn std::any::Any + Send + Sync>,
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
    /// First non-finite weight, found on first use.
    non_finite: OnceLock<Option<NonFiniteWeight>>,
    /// Backend-owned derived copies of the weights (packed panels), by key; they
    /// live and die with the SAE.
    derived: std::sync::Mutex<Vec<DerivedSlot>>,
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

    /// Build an SAE from what a loader returned (see [`crate::format::load`]),
    /// checking every shape against the configuration.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Sae, format};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-fromloaded-{}", std::process::id()));
    /// # saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?.save_saelens(&dir)?;
    /// let sae = Sae::from_loaded(format::load(&dir)?)?; // what Sae::open does
    /// assert_eq!(sae.path(), Some(dir.as_path()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn from_loaded(l: LoadedSae) -> Result<Self> {
        Self::assemble(l.config, l.weights, l.files, Some(l.path))
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
            non_finite: OnceLock::new(),
            derived: std::sync::Mutex::new(Vec::new()),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Open an SAE from a path, detecting the format (see [`crate::format::detect`]).
    ///
    /// Weights are memory-mapped; f32 tensors are borrowed from the map (zero copy).
    /// The files must not be modified or truncated while the `Sae` lives; use
    /// [`Sae::check_unchanged`] before each use to detect a file replaced under the
    /// same path, truncated or rewritten (a truncation *during* a call raises SIGBUS
    /// and stays the host's responsibility). Only regular files are opened. Opening
    /// reads no weight page: the one scan for NaN/Inf weights runs on the first
    /// compute call ([`Sae::check_finite`]).
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
        Self::from_loaded(crate::format::load(path.as_ref())?)
    }

    /// The derived copy stored under `key`, made by `make` on first use. `make`
    /// runs without any lock held (it may run on a thread pool whose workers pick
    /// up other calls on this SAE meanwhile); callers racing for the same key may
    /// each make a copy, and the first one stored is the one every caller gets.
    /// Backends keep packed weights here so that they are freed with the SAE.
    pub(crate) fn derived<T: std::any::Any + Send + Sync>(
        &self,
        key: u64,
        make: impl FnOnce() -> Result<(T, usize)>,
    ) -> Result<Arc<T>> {
        let lookup = |slots: &Vec<DerivedSlot>| {
            slots
                .iter()
                .find(|s| s.key == key)
                .and_then(|s| Arc::clone(&s.value).downcast::<T>().ok())
        };
        let lock = || {
            self.derived
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(t) = lookup(&lock()) {
            return Ok(t);
        }
        let (t, bytes) = make()?;
        let mut slots = lock();
        if let Some(first) = lookup(&slots) {
            return Ok(first);
        }
        let t = Arc::new(t);
        slots.retain(|s| s.key != key);
        slots.push(DerivedSlot {
            key,
            bytes,
            value: t.clone(),
        });
        Ok(t)
    }

    /// Bytes held by derived copies (packed weights) of this SAE.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 1)?;
    /// assert_eq!(sae.derived_bytes(), 0);
    /// CpuBackend::new(1).encode(&sae, &vec![0.5; 16], &mut vec![0.0; 64])?;
    /// assert!(sae.derived_bytes() >= 16 * 64 * 4); // W_enc packed once (f32)
    /// # Ok(()) }
    /// ```
    pub fn derived_bytes(&self) -> usize {
        let slots = self
            .derived
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.iter().map(|s| s.bytes).sum()
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
        self.w
            .tensors()
            .filter(|t| !t.is_mapped() && !self.files.is_empty())
            .map(Tensor::name)
            .collect()
    }

    /// Error ([`crate::ErrorKind::FileChanged`]) if any mapped file was replaced under
    /// its path (another device/inode), or changed size or modification time since
    /// open (see [`crate::weights::MappedFile::check_unchanged`]).
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

    /// Error unless every weight is finite. The scan runs once, on first use, and
    /// its result is kept (opening stays zero-copy and touches no weight pages);
    /// every compute entry point of the backends calls it before reading weights,
    /// so an SAE holding NaN or infinity fails its first call with a
    /// [`crate::ErrorKind::Format`] error naming the tensor and the first bad index.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend, ErrorKind, Sae, SaeWeights, weights::Tensor};
    /// let sae = saeplug::synthetic::random_sae(2, 4, saeplug::Architecture::Standard, 1)?;
    /// sae.check_finite()?;
    /// let mut b_enc = sae.weights().b_enc.as_slice().to_vec();
    /// b_enc[3] = f32::NAN;
    /// let w = sae.weights();
    /// let copy = |t: &Tensor| Tensor::owned(t.name(), t.shape().to_vec(), t.as_slice().to_vec());
    /// let bad = Sae::from_parts(sae.config().clone(), SaeWeights {
    ///     w_enc: copy(&w.w_enc)?, w_enc_transposed: false,
    ///     b_enc: Tensor::owned("b_enc", vec![4], b_enc)?,
    ///     w_dec: copy(&w.w_dec)?, b_dec: copy(&w.b_dec)?,
    ///     threshold: None, r_mag: None, b_mag: None,
    /// })?;
    /// let err = bad.check_finite().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Format);
    /// assert!(err.to_string().contains("'b_enc'") && err.to_string().contains("index 3"));
    /// // Compute calls refuse it too.
    /// assert!(CpuBackend::new(1).encode_sparse(&bad, &[0.0, 0.0]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn check_finite(&self) -> Result<()> {
        let found = self.non_finite.get_or_init(|| {
            self.w.tensors().find_map(|t| {
                let v = t.as_slice();
                first_non_finite(v).map(|i| NonFiniteWeight {
                    tensor: t.name().to_string(),
                    shape: t.shape().to_vec(),
                    index: i,
                    value: v[i],
                })
            })
        });
        match found {
            None => Ok(()),
            Some(NonFiniteWeight {
                tensor: name,
                shape,
                index: i,
                value: v,
            }) => {
                let at = if shape.len() == 2 && shape[1] > 0 {
                    format!(" (row {}, column {})", i / shape[1], i % shape[1])
                } else {
                    String::new()
                };
                Err(Error::format(
                    self.path
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("<memory>")),
                    format!("tensor '{name}' holds a non-finite value {v} at index {i}{at}"),
                ))
            }
        }
    }

    /// Save as a SAELens v6 folder (`cfg.json` + `sae_weights.safetensors`), atomically
    /// per file (see [`crate::format::write_saelens`]). Top-k SAEs of sparsify order
    /// cannot be expressed and are refused.
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
        crate::format::write_saelens(dir.as_ref(), &self.cfg, &self.w)
    }
}
