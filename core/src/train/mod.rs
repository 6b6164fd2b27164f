//! Native SAE training (the maths of docs/TRAINING.md): standard (Anthropic's
//! April-2024 recipe, optional ghost grads), TopK (SAELens order `ReLU(topk(h))`,
//! AuxK), BatchTopK (saved as JumpReLU), JumpReLU (STE, rectangle kernel, step
//! L0) and Matryoshka widths for TopK/BatchTopK; Adam, the λ warm-up and lr decay
//! schedules, gradient clipping, dead-latent tracking and activation-norm scaling
//! folded into the weights at save. The trainer asks a backend for
//! [`TrainOps`]; it never names one.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::train::{Arch, TrainConfig, Trainer, toy::ToyModel};
//! let toy = ToyModel::new(16, 32, 3.0, 0.0, 1);
//! let x = toy.sample(256, 2);
//! let mut cfg = TrainConfig::new(Arch::TopK, 16, 64);
//! cfg.k = 4;
//! cfg.total_steps = 20;
//! let mut t = Trainer::new(cfg)?;
//! t.set_scale_from(&x);
//! let cpu = saeplug::CpuBackend::new(1);
//! let first = t.step(&cpu, &x)?;
//! for _ in 1..20 { t.step(&cpu, &x)?; }
//! let last = t.step(&cpu, &x)?;
//! assert!(last.mse < first.mse);
//! let sae = t.to_sae()?; // a saeplug::Sae, raw-activation units
//! assert_eq!(sae.d_sae(), 64);
//! # Ok(()) }
//! ```

mod eval;
#[cfg(all(test, feature = "gpu"))]
mod gpu_tests;
#[cfg(test)]
mod reference;
mod source;
pub(crate) mod step;
#[cfg(test)]
mod tests;
pub mod toy;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::backend::train_ops::{AdamStep, TrainOps};
use crate::config::{Architecture, Format, Normalization, SaeConfig, SaeWeights, TopKOrder};
use crate::error::{Error, Result};
use crate::sae::Sae;
use crate::synthetic::Rng;
use crate::weights::{SafeTensors, Tensor, write_safetensors};

pub use eval::{DENSITY_BIN_WIDTH, EvalStats, evaluate};
pub use source::{ActivationSource, MatrixSource, StoreSource, cycle_rows};
#[cfg(test)]
use step::forward_backward;
use step::{Params, forward_backward_into};

/// The architecture trained.
///
/// ```
/// use saeplug::train::Arch;
/// assert_eq!(Arch::parse("batchtopk"), Some(Arch::BatchTopK));
/// assert_eq!(Arch::BatchTopK.name(), "batchtopk");
/// assert_eq!(Arch::parse("gated"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// ReLU with the L1 penalty weighted by decoder norms.
    Standard,
    /// `ReLU(topk(h))` per row.
    TopK,
    /// Top k·B over the batch; saved as JumpReLU with the tracked threshold.
    BatchTopK,
    /// JumpReLU with a trained log-threshold and the step L0 penalty.
    JumpRelu,
}

impl Arch {
    /// Parse a name (`standard`, `topk`, `batchtopk`, `jumprelu`).
    ///
    /// ```
    /// assert_eq!(saeplug::train::Arch::parse("topk"), Some(saeplug::train::Arch::TopK));
    /// ```
    pub fn parse(s: &str) -> Option<Arch> {
        Some(match s {
            "standard" => Arch::Standard,
            "topk" => Arch::TopK,
            "batchtopk" => Arch::BatchTopK,
            "jumprelu" => Arch::JumpRelu,
            _ => return None,
        })
    }

    /// The name [`Arch::parse`] reads.
    ///
    /// ```
    /// assert_eq!(saeplug::train::Arch::JumpRelu.name(), "jumprelu");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Arch::Standard => "standard",
            Arch::TopK => "topk",
            Arch::BatchTopK => "batchtopk",
            Arch::JumpRelu => "jumprelu",
        }
    }
}

/// Hyperparameters. [`TrainConfig::new`] gives SAELens's defaults where it has
/// them.
///
/// ```
/// use saeplug::train::{Arch, TrainConfig};
/// let mut c = TrainConfig::new(Arch::TopK, 576, 4608);
/// assert_eq!((c.k, c.batch_size, c.lr), (32, 4096, 3e-4));
/// c.k = 5000;
/// assert!(c.validate().is_err()); // k > d_sae
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Architecture.
    pub arch: Arch,
    /// Input width.
    pub d_in: usize,
    /// Number of latents.
    pub d_sae: usize,
    /// Active latents per row (TopK) or mean per row (BatchTopK).
    pub k: usize,
    /// Sparsity coefficient λ: L1 (standard) or L0 (JumpReLU).
    pub l1_coeff: f32,
    /// Ghost grads for the dead latents (standard only).
    pub ghost_grads: bool,
    /// AuxK coefficient (TopK/BatchTopK; 0 turns AuxK off).
    pub aux_coeff: f32,
    /// JumpReLU kernel bandwidth ε.
    pub bandwidth: f32,
    /// JumpReLU initial threshold.
    pub init_threshold: f32,
    /// TopK/BatchTopK rank `h_i · ‖W_dec,i‖` and decode the codes with unit
    /// decoder rows (SAELens's `rescale_acts_by_decoder_norm`; default off).
    pub rescale_acts_by_decoder_norm: bool,
    /// Matryoshka nested widths (each below `d_sae`, ascending; TopK/BatchTopK).
    pub matryoshka: Vec<usize>,
    /// Peak learning rate.
    pub lr: f32,
    /// Adam β1.
    pub beta1: f32,
    /// Adam β2.
    pub beta2: f32,
    /// Adam ε.
    pub adam_eps: f32,
    /// Rows per step.
    pub batch_size: usize,
    /// Steps in the whole run (the schedules are fractions of it).
    pub total_steps: u64,
    /// Fraction of steps over which λ rises linearly from 0.
    pub warmup_frac: f32,
    /// Fraction of steps at the end over which the lr falls linearly to 0.
    pub decay_frac: f32,
    /// Global gradient-norm clip (0 = off).
    pub clip_norm: f32,
    /// A latent that has not fired for this many tokens is dead.
    pub dead_window: u64,
    /// Initial decoder row norm.
    pub decoder_init_norm: f32,
    /// Initialisation seed.
    pub seed: u64,
}

impl TrainConfig {
    /// Defaults for `arch` at the given sizes.
    ///
    /// ```
    /// let c = saeplug::train::TrainConfig::new(saeplug::train::Arch::Standard, 8, 32);
    /// assert!(c.validate().is_ok());
    /// ```
    pub fn new(arch: Arch, d_in: usize, d_sae: usize) -> Self {
        TrainConfig {
            arch,
            d_in,
            d_sae,
            k: 32.min(d_sae),
            l1_coeff: match arch {
                Arch::JumpRelu => 1.0,
                _ => 5.0,
            },
            ghost_grads: false,
            aux_coeff: 1.0,
            rescale_acts_by_decoder_norm: false,
            bandwidth: 0.05,
            init_threshold: 0.01,
            matryoshka: Vec::new(),
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            batch_size: 4096,
            total_steps: 1000,
            warmup_frac: 0.05,
            decay_frac: 0.2,
            clip_norm: 1.0,
            dead_window: 10_000_000,
            decoder_init_norm: 0.1,
            seed: 42,
        }
    }

    /// Refuse sizes and values training cannot use.
    ///
    /// ```
    /// let mut c = saeplug::train::TrainConfig::new(saeplug::train::Arch::TopK, 8, 32);
    /// c.d_sae = 0;
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.d_in == 0 || self.d_sae == 0 {
            return bad(format!(
                "d_in {} and d_sae {} must be positive",
                self.d_in, self.d_sae
            ));
        }
        if self.d_sae > u32::MAX as usize || self.d_in.checked_mul(self.d_sae).is_none() {
            return bad(format!("d_sae {} is too large", self.d_sae));
        }
        if matches!(self.arch, Arch::TopK | Arch::BatchTopK) && (self.k == 0 || self.k > self.d_sae)
        {
            return bad(format!(
                "k {} must be in 1..=d_sae ({})",
                self.k, self.d_sae
            ));
        }
        if !self.matryoshka.is_empty() {
            if !matches!(self.arch, Arch::TopK | Arch::BatchTopK) {
                return bad("Matryoshka widths apply to topk and batchtopk only".into());
            }
            if !self.matryoshka.windows(2).all(|w| w[0] < w[1])
                || self.matryoshka.iter().any(|&w| w == 0 || w >= self.d_sae)
            {
                return bad(format!(
                    "Matryoshka widths {:?} must ascend, each in 1..d_sae ({})",
                    self.matryoshka, self.d_sae
                ));
            }
        }
        if self.ghost_grads && self.arch != Arch::Standard {
            return bad("ghost grads apply to the standard architecture only".into());
        }
        if self.batch_size == 0 || self.batch_size > u32::MAX as usize {
            return bad(format!("batch size {} is out of range", self.batch_size));
        }
        let finite_pos = [
            self.lr,
            self.bandwidth,
            self.init_threshold,
            self.decoder_init_norm,
        ];
        if finite_pos.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return bad(
                "lr, bandwidth, init threshold and decoder init norm must be positive".into(),
            );
        }
        let nonneg = [self.l1_coeff, self.aux_coeff, self.clip_norm, self.adam_eps];
        if nonneg.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return bad("coefficients must be finite and non-negative".into());
        }
        let frac = [self.warmup_frac, self.decay_frac, self.beta1, self.beta2];
        if frac.iter().any(|v| !(0.0..1.0).contains(v)) || self.warmup_frac + self.decay_frac > 1.0
        {
            return bad("warm-up/decay fractions and Adam betas must be in [0, 1)".into());
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        json!({
            "arch": self.arch.name(), "d_in": self.d_in, "d_sae": self.d_sae, "k": self.k,
            "l1_coeff": self.l1_coeff, "ghost_grads": self.ghost_grads, "aux_coeff": self.aux_coeff,
            "rescale_acts_by_decoder_norm": self.rescale_acts_by_decoder_norm,
            "bandwidth": self.bandwidth, "init_threshold": self.init_threshold,
            "matryoshka": self.matryoshka, "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2,
            "adam_eps": self.adam_eps, "batch_size": self.batch_size, "total_steps": self.total_steps,
            "warmup_frac": self.warmup_frac, "decay_frac": self.decay_frac,
            "clip_norm": self.clip_norm, "dead_window": self.dead_window,
            "decoder_init_norm": self.decoder_init_norm, "seed": self.seed,
        })
    }

    fn from_json(v: &Value) -> Option<TrainConfig> {
        let u = |k: &str| v.get(k)?.as_u64();
        let f = |k: &str| v.get(k)?.as_f64().map(|x| x as f32);
        let mut c = TrainConfig::new(
            Arch::parse(v.get("arch")?.as_str()?)?,
            usize::try_from(u("d_in")?).ok()?,
            usize::try_from(u("d_sae")?).ok()?,
        );
        c.k = usize::try_from(u("k")?).ok()?;
        c.l1_coeff = f("l1_coeff")?;
        c.ghost_grads = v.get("ghost_grads")?.as_bool()?;
        c.aux_coeff = f("aux_coeff")?;
        c.rescale_acts_by_decoder_norm = v.get("rescale_acts_by_decoder_norm")?.as_bool()?;
        c.bandwidth = f("bandwidth")?;
        c.init_threshold = f("init_threshold")?;
        c.matryoshka = v
            .get("matryoshka")?
            .as_array()?
            .iter()
            .map(|w| w.as_u64().and_then(|w| usize::try_from(w).ok()))
            .collect::<Option<_>>()?;
        c.lr = f("lr")?;
        c.beta1 = f("beta1")?;
        c.beta2 = f("beta2")?;
        c.adam_eps = f("adam_eps")?;
        c.batch_size = usize::try_from(u("batch_size")?).ok()?;
        c.total_steps = u("total_steps")?;
        c.warmup_frac = f("warmup_frac")?;
        c.decay_frac = f("decay_frac")?;
        c.clip_norm = f("clip_norm")?;
        c.dead_window = u("dead_window")?;
        c.decoder_init_norm = f("decoder_init_norm")?;
        c.seed = u("seed")?;
        Some(c)
    }

    /// λ at step `t` (from 0): linear warm-up over the first `warmup_frac` of steps.
    pub(crate) fn lambda_at(&self, t: u64) -> f32 {
        let warm = (f64::from(self.warmup_frac) * self.total_steps as f64).round() as u64;
        if warm == 0 {
            self.l1_coeff
        } else {
            self.l1_coeff * ((t + 1) as f32 / warm as f32).min(1.0)
        }
    }

    /// lr at step `t`: linear decay to 0 over the last `decay_frac` of steps.
    pub(crate) fn lr_at(&self, t: u64) -> f32 {
        let decay = (f64::from(self.decay_frac) * self.total_steps as f64).round() as u64;
        let start = self.total_steps.saturating_sub(decay);
        if decay == 0 || t < start {
            self.lr
        } else {
            self.lr * (self.total_steps.saturating_sub(t) as f32 / decay as f32)
        }
    }
}

/// What one training step measured (in the scaled units trained on; FVU is
/// scale-free).
///
/// ```
/// let s = saeplug::train::StepStats::default();
/// assert_eq!(s.l0, 0.0);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Total loss.
    pub loss: f64,
    /// Mean over rows of Σ_d (x̂ − x)².
    pub mse: f64,
    /// Sparsity penalty (with the warmed-up λ).
    pub sparsity: f64,
    /// AuxK, ghost-grad and Matryoshka terms.
    pub aux: f64,
    /// Fraction of variance unexplained (batch-centred).
    pub fvu: f64,
    /// Mean active latents per row.
    pub l0: f64,
    /// Fraction of latents dead after this step.
    pub dead_frac: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f32,
}

/// An SAE being trained: parameters, Adam moments, step counter, dead-latent
/// counters, the BatchTopK threshold and the activation scale.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::train::{Arch, TrainConfig, Trainer};
/// let t = Trainer::new(TrainConfig::new(Arch::Standard, 8, 16))?;
/// assert_eq!(t.steps_done(), 0);
/// assert!(Trainer::new(TrainConfig::new(Arch::TopK, 8, 0)).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Trainer {
    cfg: TrainConfig,
    pub(crate) p: Params,
    m: Params,
    v: Params,
    step: u64,
    since_fired: Vec<u64>,
    pub(crate) topk_threshold: f32,
    scale: f32,
    /// Buffers kept across steps (pre-activations, gradients); not state.
    scratch_h: Vec<f32>,
    scratch_g: Params,
    /// Tests force the dense or the sparse products (`None`: by density).
    pub(crate) force_dense: Option<bool>,
}

impl Trainer {
    /// Initialise as SAELens v6 does: decoder rows uniform random rescaled to
    /// `decoder_init_norm`, `W_enc = W_decᵀ`, zero biases; JumpReLU thresholds at
    /// `init_threshold`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// let a = Trainer::new(TrainConfig::new(Arch::JumpRelu, 4, 8))?;
    /// let b = Trainer::new(TrainConfig::new(Arch::JumpRelu, 4, 8))?;
    /// assert_eq!(a.to_sae()?.weights().w_dec.as_slice(), b.to_sae()?.weights().w_dec.as_slice());
    /// # Ok(()) }
    /// ```
    pub fn new(cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let (d, ds) = (cfg.d_in, cfg.d_sae);
        let mut rng = Rng::new(cfg.seed);
        let mut w_dec: Vec<f32> = (0..d * ds)
            .map(|_| (2.0 * rng.uniform() - 1.0) as f32)
            .collect();
        for row in w_dec.chunks_exact_mut(d) {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v *= cfg.decoder_init_norm / n);
        }
        let log_threshold = if cfg.arch == Arch::JumpRelu {
            vec![cfg.init_threshold.ln(); ds]
        } else {
            Vec::new()
        };
        let p = Params {
            w_enc_t: w_dec.clone(),
            b_enc: vec![0.0; ds],
            w_dec,
            b_dec: vec![0.0; d],
            log_threshold,
        };
        Ok(Trainer {
            scratch_h: Vec::new(),
            scratch_g: Params::zeros_like(&p),
            force_dense: None,
            m: Params::zeros_like(&p),
            v: Params::zeros_like(&p),
            p,
            step: 0,
            since_fired: vec![0; ds],
            topk_threshold: 0.0,
            scale: 1.0,
            cfg,
        })
    }

    /// The configuration.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// assert_eq!(Trainer::new(TrainConfig::new(Arch::TopK, 4, 8))?.config().d_sae, 8);
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps taken so far.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let t = saeplug::train::Trainer::new(saeplug::train::TrainConfig::new(saeplug::train::Arch::TopK, 4, 8))?;
    /// assert_eq!(t.steps_done(), 0);
    /// # Ok(()) }
    /// ```
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The activation scale (`√d_in / mean‖x‖`, 1 until set).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut t = saeplug::train::Trainer::new(saeplug::train::TrainConfig::new(saeplug::train::Arch::TopK, 4, 8))?;
    /// t.set_scale_from(&[2.0; 8]); // two rows of norm 4
    /// assert_eq!(t.scale(), 0.5);
    /// # Ok(()) }
    /// ```
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Set the activation scale to `√d_in / mean‖x‖` over the rows of `x` (the
    /// SAELens "expected_average_only_in" normalisation; it is folded into the
    /// weights by [`Trainer::to_sae`]). Rows of zero norm leave the scale at 1.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let mut t = saeplug::train::Trainer::new(saeplug::train::TrainConfig::new(saeplug::train::Arch::TopK, 1, 8))?;
    /// t.set_scale_from(&[4.0]);
    /// assert_eq!(t.scale(), 0.25);
    /// # Ok(()) }
    /// ```
    pub fn set_scale_from(&mut self, x: &[f32]) {
        let d = self.cfg.d_in;
        let n = x.len() / d;
        let mean = x
            .chunks_exact(d)
            .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / n.max(1) as f64;
        self.scale = if mean > 0.0 && mean.is_finite() {
            ((d as f64).sqrt() / mean) as f32
        } else {
            1.0
        };
    }

    fn dead_mask(&self) -> Vec<bool> {
        self.since_fired
            .iter()
            .map(|&s| s >= self.cfg.dead_window)
            .collect()
    }

    fn scaled(&self, x: &[f32]) -> Result<Vec<f32>> {
        let d = self.cfg.d_in;
        if x.is_empty() || !x.len().is_multiple_of(d) {
            return Err(Error::invalid(format!(
                "a batch of {} values is not a whole number of rows of d_in {d}",
                x.len()
            )));
        }
        if x.len() / d > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "a batch of {} rows is too large (at most {})",
                x.len() / d,
                u32::MAX
            )));
        }
        if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                row: pos / d,
                col: pos % d,
                value: x[pos],
            });
        }
        Ok(x.iter().map(|v| v * self.scale).collect())
    }

    /// Loss and gradients of the batch at the current parameters (no update).
    #[cfg(test)]
    pub(crate) fn gradients(&self, ops: &dyn TrainOps, x: &[f32]) -> Result<(Params, step::Pass)> {
        let xs = self.scaled(x)?;
        forward_backward(
            ops,
            &self.cfg,
            &self.p,
            &self.dead_mask(),
            self.cfg.lambda_at(self.step),
            &xs,
            self.force_dense,
        )
    }

    /// One training step on the raw batch `x` (`[rows, d_in]`; rows may differ
    /// from `batch_size`): gradients, clipping to the global norm, Adam, then the
    /// dead-latent counters and the BatchTopK threshold. Non-finite input is refused.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// let mut t = Trainer::new(TrainConfig::new(Arch::Standard, 4, 8))?;
    /// let cpu = saeplug::CpuBackend::new(1);
    /// let s = t.step(&cpu, &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])?;
    /// assert!(s.loss.is_finite());
    /// assert!(t.step(&cpu, &[f32::NAN, 0.0, 0.0, 0.0]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn step(&mut self, ops: &dyn TrainOps, x: &[f32]) -> Result<StepStats> {
        let xs = self.scaled(x)?;
        let dead = self.dead_mask();
        let mut g = std::mem::replace(&mut self.scratch_g, Params::zeros_like(&Params::empty()));
        let mut h = std::mem::take(&mut self.scratch_h);
        let res = forward_backward_into(
            ops,
            &self.cfg,
            &self.p,
            &dead,
            self.cfg.lambda_at(self.step),
            &xs,
            &mut h,
            &mut g,
            self.force_dense,
        );
        self.scratch_h = h;
        let pass = match res {
            Ok(p) => p,
            Err(e) => {
                self.scratch_g = g;
                return Err(e);
            }
        };
        let out = self.apply(ops, &g, &pass, x.len() / self.cfg.d_in);
        self.scratch_g = g;
        out
    }

    /// Clip, Adam, counters: the update after a pass.
    fn apply(
        &mut self,
        ops: &dyn TrainOps,
        g: &Params,
        pass: &step::Pass,
        rows: usize,
    ) -> Result<StepStats> {
        let t = self.step;
        let norm = g
            .named()
            .iter()
            .map(|(_, v)| ops.sum_squares(v))
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() {
            return Err(Error::NonFiniteOutput {
                what: "training gradient norm (row = step)",
                row: usize::try_from(t).unwrap_or(usize::MAX),
                col: 0,
                value: norm as f32,
            });
        }
        let grad_scale = if self.cfg.clip_norm > 0.0 {
            (f64::from(self.cfg.clip_norm) / (norm + 1e-6)).min(1.0) as f32
        } else {
            1.0
        };
        let lr = self.cfg.lr_at(t);
        let s = AdamStep {
            lr,
            beta1: self.cfg.beta1,
            beta2: self.cfg.beta2,
            eps: self.cfg.adam_eps,
            t: t + 1,
            grad_scale,
        };
        let (p, m, v) = (&mut self.p, &mut self.m, &mut self.v);
        for (((_, p), (_, m)), ((_, v), (_, g))) in p
            .named_mut()
            .into_iter()
            .zip(m.named_mut())
            .zip(v.named_mut().into_iter().zip(g.named()))
        {
            ops.adam(p, g, m, v, &s)?;
        }
        let nb = rows as u64;
        for (s, &f) in self.since_fired.iter_mut().zip(&pass.fired) {
            *s = if f { 0 } else { s.saturating_add(nb) };
        }
        if let Some(mk) = pass.min_kept {
            self.topk_threshold = 0.99 * self.topk_threshold + 0.01 * mk;
        }
        self.step += 1;
        let dead = self.dead_mask().iter().filter(|d| **d).count();
        Ok(StepStats {
            loss: pass.loss,
            mse: pass.mse,
            sparsity: pass.sparsity,
            aux: pass.aux,
            fvu: pass.fvu,
            l0: pass.l0,
            dead_frac: dead as f64 / self.cfg.d_sae as f64,
            grad_norm: norm,
            lr,
        })
    }

    /// The trained SAE in raw-activation units (the scale folded in:
    /// `W_enc·s`, `W_dec/s`, `b_dec/s`), as saeplug and SAELens run it. BatchTopK
    /// becomes JumpReLU with the tracked threshold.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// let sae = Trainer::new(TrainConfig::new(Arch::BatchTopK, 4, 8))?.to_sae()?;
    /// assert_eq!(sae.config().architecture, saeplug::Architecture::JumpRelu);
    /// # Ok(()) }
    /// ```
    pub fn to_sae(&self) -> Result<Sae> {
        let (d, ds, s) = (self.cfg.d_in, self.cfg.d_sae, self.scale);
        // When the codes are ranked by decoder norms, the saved decoder rows are unit
        // norm (as SAELens saves): with c_i = ‖W_i‖ / s, W_enc·s·c_i, b_enc·c_i,
        // W_dec/(s·c_i); the codes are then h_i·‖W_i‖/s (raw units).
        let norm: Vec<f32> = if self.rescales() {
            self.p
                .w_dec
                .chunks_exact(d)
                .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
                .map(|n| if n > 0.0 { n / s } else { 1.0 })
                .collect()
        } else {
            vec![1.0; ds]
        };
        let mut w_enc = vec![0.0f32; d * ds];
        for i in 0..ds {
            for j in 0..d {
                w_enc[j * ds + i] = self.p.w_enc_t[i * d + j] * s * norm[i];
            }
        }
        let architecture = match self.cfg.arch {
            Arch::Standard => Architecture::Standard,
            Arch::TopK => Architecture::TopK {
                k: self.cfg.k,
                order: TopKOrder::TopKThenRelu,
                rescale_by_decoder_norm: self.cfg.rescale_acts_by_decoder_norm,
            },
            Arch::BatchTopK | Arch::JumpRelu => Architecture::JumpRelu,
        };
        let threshold = match self.cfg.arch {
            Arch::JumpRelu => Some(self.p.log_threshold.iter().map(|l| l.exp()).collect()),
            // Tracked on h·‖W‖ in training units; the saved codes are that over s.
            Arch::BatchTopK if self.rescales() => Some(vec![self.topk_threshold / s; ds]),
            Arch::BatchTopK => Some(vec![self.topk_threshold; ds]),
            _ => None,
        };
        let w = SaeWeights {
            w_enc: Tensor::owned("W_enc", vec![d, ds], w_enc)?,
            w_enc_transposed: false,
            b_enc: Tensor::owned(
                "b_enc",
                vec![ds],
                self.p.b_enc.iter().zip(&norm).map(|(b, n)| b * n).collect(),
            )?,
            w_dec: Tensor::owned(
                "W_dec",
                vec![ds, d],
                self.p
                    .w_dec
                    .iter()
                    .enumerate()
                    .map(|(e, v)| v / s / norm[e / d])
                    .collect(),
            )?,
            b_dec: Tensor::owned(
                "b_dec",
                vec![d],
                self.p.b_dec.iter().map(|v| v / s).collect(),
            )?,
            threshold: threshold
                .map(|t| Tensor::owned("threshold", vec![ds], t))
                .transpose()?,
            r_mag: None,
            b_mag: None,
        };
        let cfg = SaeConfig {
            d_in: d,
            d_sae: ds,
            architecture,
            apply_b_dec_to_input: true,
            normalization: Normalization::None,
            hook_name: None,
            format: Format::InMemory,
        };
        Sae::from_parts(cfg, w)
    }

    /// Write the trained SAE as a SAELens v6 folder (see [`Trainer::to_sae`]).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-trainsave-{}", std::process::id()));
    /// Trainer::new(TrainConfig::new(Arch::TopK, 4, 8))?.save_saelens(&dir)?;
    /// assert_eq!(saeplug::Sae::open(&dir)?.d_sae(), 8);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn save_saelens(&self, dir: &Path) -> Result<()> {
        self.to_sae()?.save_saelens(dir)
    }

    /// Encode raw rows with the model being trained (f32, the training forward:
    /// per-row top-k for TopK, the threshold for BatchTopK) into dense `[rows, d_sae]`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// let t = Trainer::new(TrainConfig::new(Arch::TopK, 4, 8))?;
    /// let f = t.encode(&saeplug::CpuBackend::new(1), &[1.0, 2.0, 3.0, 4.0])?;
    /// assert!(f.iter().filter(|v| **v != 0.0).count() <= 8);
    /// # Ok(()) }
    /// ```
    pub fn encode(&self, ops: &dyn TrainOps, x: &[f32]) -> Result<Vec<f32>> {
        let xs = self.scaled(x)?;
        let (d, ds) = (self.cfg.d_in, self.cfg.d_sae);
        let mut xc = xs;
        for row in xc.chunks_exact_mut(d) {
            row.iter_mut().zip(&self.p.b_dec).for_each(|(x, b)| *x -= b);
        }
        let mut h = vec![0.0f32; xc.len() / d * ds];
        ops.affine_t(&xc, &self.p.w_enc_t, &self.p.b_enc, d, &mut h)?;
        if self.rescales() {
            // Ranked (and thresholded) on h_i · ‖W_i‖; returned over s (see to_sae).
            let norms: Vec<f32> = self
                .p
                .w_dec
                .chunks_exact(d)
                .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
                .collect();
            for row in h.chunks_exact_mut(ds) {
                row.iter_mut().zip(&norms).for_each(|(v, n)| *v *= n);
            }
        }
        for row in h.chunks_exact_mut(ds) {
            match self.cfg.arch {
                Arch::Standard => row.iter_mut().for_each(|v| *v = v.max(0.0)),
                Arch::JumpRelu => {
                    for (v, l) in row.iter_mut().zip(&self.p.log_threshold) {
                        if *v <= l.exp() {
                            *v = 0.0;
                        }
                    }
                }
                Arch::BatchTopK => row.iter_mut().for_each(|v| {
                    if *v <= self.topk_threshold {
                        *v = 0.0
                    }
                }),
                Arch::TopK => {}
            }
        }
        if self.cfg.arch == Arch::TopK {
            let k = self.cfg.k;
            let mut sel = vec![0u32; h.len() / ds * k];
            ops.top_k_rows(&h, ds, k, &mut sel)?;
            for (row, idx) in h.chunks_exact_mut(ds).zip(sel.chunks_exact(k)) {
                let mut keep = vec![0.0f32; ds];
                for &i in idx {
                    keep[i as usize] = row[i as usize].max(0.0);
                }
                row.copy_from_slice(&keep);
            }
        }
        if self.rescales() {
            h.iter_mut().for_each(|v| *v /= self.scale);
        }
        Ok(h)
    }

    fn rescales(&self) -> bool {
        self.cfg.rescale_acts_by_decoder_norm
            && matches!(self.cfg.arch, Arch::TopK | Arch::BatchTopK)
    }

    /// Write the whole training state (parameters, Adam moments, counters, scale,
    /// configuration) to `path` atomically (write then rename: a crash leaves the
    /// previous checkpoint whole).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::train::{Arch, TrainConfig, Trainer};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-ckpt-{}.safetensors", std::process::id()));
    /// let t = Trainer::new(TrainConfig::new(Arch::TopK, 4, 8))?;
    /// t.save_checkpoint(&path)?;
    /// let back = Trainer::load_checkpoint(&path)?;
    /// assert_eq!(back.config(), t.config());
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut names = Vec::new();
        for (prefix, ps) in [("p.", &self.p), ("m.", &self.m), ("v.", &self.v)] {
            for (n, t) in ps.named() {
                names.push((format!("{prefix}{n}"), t));
            }
        }
        let shapes: Vec<[usize; 1]> = names.iter().map(|(_, t)| [t.len()]).collect();
        let ts: Vec<(&str, &[usize], &[f32])> = names
            .iter()
            .zip(&shapes)
            .map(|((n, t), s)| (n.as_str(), &s[..], t.as_slice()))
            .collect();
        let mut meta = BTreeMap::new();
        meta.insert("saeplug_train".into(), "1".into());
        meta.insert("config".into(), self.cfg.to_json().to_string());
        meta.insert("step".into(), self.step.to_string());
        meta.insert("scale_bits".into(), self.scale.to_bits().to_string());
        meta.insert(
            "topk_threshold_bits".into(),
            self.topk_threshold.to_bits().to_string(),
        );
        meta.insert(
            "since_fired".into(),
            Value::from(self.since_fired.clone()).to_string(),
        );
        write_safetensors(path, &ts, &meta)
    }

    /// Read a checkpoint written by [`Trainer::save_checkpoint`]; training
    /// continues bit-identically.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-ckpt2-{}.safetensors", std::process::id()));
    /// std::fs::write(&path, b"not a checkpoint").unwrap();
    /// assert!(saeplug::train::Trainer::load_checkpoint(&path).is_err());
    /// # std::fs::remove_file(&path).ok();
    /// ```
    pub fn load_checkpoint(path: &Path) -> Result<Trainer> {
        let st = SafeTensors::open(path)?;
        let bad = |m: &str| Error::format(path, format!("not a saeplug training checkpoint: {m}"));
        let meta = &st.metadata;
        let get = |k: &str| meta.get(k).ok_or_else(|| bad(&format!("no '{k}'")));
        let cfg_v: Value = serde_json::from_str(get("config")?).map_err(|_| bad("config"))?;
        let cfg = TrainConfig::from_json(&cfg_v).ok_or_else(|| bad("config fields"))?;
        let num = |k: &str| -> Result<u64> { get(k)?.parse::<u64>().map_err(|_| bad(k)) };
        let bits = |k: &str| -> Result<f32> {
            Ok(f32::from_bits(u32::try_from(num(k)?).map_err(|_| bad(k))?))
        };
        let mut t = Trainer::new(cfg)?;
        t.step = num("step")?;
        t.scale = bits("scale_bits")?;
        t.topk_threshold = bits("topk_threshold_bits")?;
        let sf: Value =
            serde_json::from_str(get("since_fired")?).map_err(|_| bad("since_fired"))?;
        t.since_fired = sf
            .as_array()
            .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .filter(|v| v.len() == t.cfg.d_sae)
            .ok_or_else(|| bad("since_fired"))?;
        for (prefix, ps) in [("p.", &mut t.p), ("m.", &mut t.m), ("v.", &mut t.v)] {
            for (n, dst) in ps.named_mut() {
                let name = format!("{prefix}{n}");
                let src = st.tensor(&name)?;
                if src.as_slice().len() != dst.len() {
                    return Err(bad(&format!("tensor '{name}' has the wrong size")));
                }
                dst.copy_from_slice(src.as_slice());
            }
        }
        Ok(t)
    }
}
