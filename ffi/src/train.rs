//! Native SAE training and evaluation on activations through the C ABI: a
//! trainer handle stepped on caller batches, checkpoints, and the convenience
//! `saeplug_train_store` / `saeplug_eval_store` over an activation store folder.

use std::ffi::{c_char, c_void};
use std::path::Path;

use saeplug::CpuBackend;
use saeplug::store::Split;
use saeplug::train::{
    ActivationSource, Arch, StepStats, StoreSource, TrainConfig, Trainer, cycle_rows, evaluate,
};

use crate::ctx::saeplug_ctx;
use crate::enums::code;
use crate::error::{FfiError, saeplug_status};
use crate::handle::{HandleOut, borrow, borrow_mut, c_str, check_shape, free_handle, slice_in};
use crate::sae::saeplug_sae;
use crate::store::saeplug_store_split;

u32_enum! {
    /// Architecture trained (`saeplug_train_config.arch`).
    pub enum saeplug_train_arch {
        /// ReLU with the L1 penalty weighted by decoder norms (optional ghost grads).
        Standard = 0,
        /// `ReLU(topk(h))` per row, AuxK for dead latents.
        Topk = 1,
        /// Top k·B over the batch; saved as JumpReLU with the tracked threshold.
        Batchtopk = 2,
        /// JumpReLU with a trained threshold and the L0 penalty.
        Jumprelu = 3,
    }
}

impl From<saeplug_train_arch> for Arch {
    fn from(a: saeplug_train_arch) -> Self {
        match a {
            saeplug_train_arch::Standard => Arch::Standard,
            saeplug_train_arch::Topk => Arch::TopK,
            saeplug_train_arch::Batchtopk => Arch::BatchTopK,
            saeplug_train_arch::Jumprelu => Arch::JumpRelu,
        }
    }
}

fn arch_code(a: Arch) -> u32 {
    match a {
        Arch::Standard => saeplug_train_arch::Standard as u32,
        Arch::TopK => saeplug_train_arch::Topk as u32,
        Arch::BatchTopK => saeplug_train_arch::Batchtopk as u32,
        Arch::JumpRelu => saeplug_train_arch::Jumprelu as u32,
    }
}

/// Hyperparameters of a training run. Fill it with `saeplug_train_config_init`
/// for the architecture you train (SAELens's defaults; the sparsity coefficient's
/// default depends on the architecture), then change the fields you need:
/// `struct_size` tells the library which version of the struct the caller was
/// compiled against.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct saeplug_train_config {
    /// `sizeof(saeplug_train_config)`, set by `saeplug_train_config_init`.
    pub struct_size: usize,
    /// A `saeplug_train_arch` value.
    pub arch: u32,
    /// Input width (0 in `saeplug_train_store`: the store's).
    pub d_in: usize,
    /// Number of latents.
    pub d_sae: usize,
    /// Active latents per row (TopK) or mean per row (BatchTopK); 1..=d_sae.
    pub k: usize,
    /// Peak learning rate (Adam).
    pub lr: f32,
    /// Sparsity coefficient: L1 (standard, default 5) or L0 (JumpReLU, default 1).
    pub l1_coeff: f32,
    /// AuxK coefficient (TopK/BatchTopK; 0 turns AuxK off).
    pub aux_coeff: f32,
    /// Non-zero: ghost grads for dead latents (standard only).
    pub ghost_grads: u32,
    /// Non-zero: rank `h_i·‖W_dec,i‖` and decode with unit decoder rows
    /// (SAELens's `rescale_acts_by_decoder_norm`; TopK/BatchTopK).
    pub rescale_acts_by_decoder_norm: u32,
    /// JumpReLU kernel bandwidth.
    pub bandwidth: f32,
    /// JumpReLU initial threshold.
    pub init_threshold: f32,
    /// Global gradient-norm clip (0 = off).
    pub clip_norm: f32,
    /// Fraction of steps over which the sparsity coefficient rises from 0.
    pub warmup_frac: f32,
    /// Fraction of steps at the end over which the lr falls to 0.
    pub decay_frac: f32,
    /// Rows per step.
    pub batch_size: usize,
    /// Steps of the whole run (the schedules are fractions of it;
    /// `saeplug_train_store` sets it from its token budget).
    pub total_steps: u64,
    /// A latent that has not fired for this many rows is dead.
    pub dead_window: u64,
    /// Initialisation seed (and the store's row shuffle in `saeplug_train_store`).
    pub seed: u64,
    /// CPU threads (0 = all cores); a fixed seed and thread count give the same bits.
    pub threads: u32,
    /// Matryoshka nested widths (ascending, each below d_sae; TopK/BatchTopK),
    /// `n_matryoshka` of them; NULL with 0 for none. Copied by the library.
    pub matryoshka: *const usize,
    /// Number of Matryoshka widths.
    pub n_matryoshka: usize,
}

/// What one training step measured (scaled units; FVU is scale-free).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct saeplug_train_stats {
    /// Steps done after this one.
    pub step: u64,
    /// Total loss.
    pub loss: f64,
    /// Mean over rows of Σ_d (x̂ − x)².
    pub mse: f64,
    /// Sparsity penalty.
    pub sparsity: f64,
    /// AuxK, ghost-grad and Matryoshka terms.
    pub aux: f64,
    /// Fraction of variance unexplained (batch-centred).
    pub fvu: f64,
    /// Mean active latents per row.
    pub l0: f64,
    /// Fraction of latents dead after this step.
    pub dead_fraction: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f32,
}

fn stats(s: &StepStats, step: u64) -> saeplug_train_stats {
    saeplug_train_stats {
        step,
        loss: s.loss,
        mse: s.mse,
        sparsity: s.sparsity,
        aux: s.aux,
        fvu: s.fvu,
        l0: s.l0,
        dead_fraction: s.dead_frac,
        grad_norm: s.grad_norm,
        lr: s.lr,
    }
}

/// Progress of `saeplug_train_store`, handed to its callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct saeplug_train_progress {
    /// Steps done.
    pub step: u64,
    /// Steps of the run.
    pub total_steps: u64,
    /// Rows trained on so far (`step × batch_size`).
    pub tokens: u64,
    /// The last step's measurements.
    pub stats: saeplug_train_stats,
}

/// Progress callback of `saeplug_train_store`: return 0 to go on, non-zero to
/// stop (the call then writes a checkpoint and returns CANCELLED). Called on the
/// thread that called `saeplug_train_store`; `progress` is valid during the call.
pub type saeplug_train_progress_fn = Option<
    unsafe extern "C" fn(progress: *const saeplug_train_progress, user_data: *mut c_void) -> i32,
>;

/// An SAE being trained on the CPU: parameters, Adam moments, counters and the
/// activation scale. Owned by the caller of `saeplug_trainer_new` or
/// `saeplug_trainer_load_checkpoint`; free with `saeplug_trainer_free`. Use from
/// one thread at a time.
pub struct saeplug_trainer {
    t: Trainer,
    cpu: CpuBackend,
    /// The configuration as the C struct (its `matryoshka` points into `widths`).
    cfg: saeplug_train_config,
    #[allow(dead_code, reason = "owns the memory `cfg.matryoshka` points to")]
    widths: Vec<usize>,
}

impl saeplug_trainer {
    fn new(t: Trainer, threads: u32) -> Result<Self, FfiError> {
        let cpu = CpuBackend::try_new(threads as usize).map_err(|e| {
            let mut e = FfiError::from(e);
            e.message = format!("'threads' = {threads}: {}", e.message);
            e
        })?;
        let widths = t.config().matryoshka.clone();
        let mut cfg = c_config(t.config(), threads);
        cfg.matryoshka = if widths.is_empty() {
            std::ptr::null()
        } else {
            widths.as_ptr()
        };
        Ok(saeplug_trainer {
            t,
            cpu,
            cfg,
            widths,
        })
    }
}

fn c_config(c: &TrainConfig, threads: u32) -> saeplug_train_config {
    saeplug_train_config {
        struct_size: size_of::<saeplug_train_config>(),
        arch: arch_code(c.arch),
        d_in: c.d_in,
        d_sae: c.d_sae,
        k: c.k,
        lr: c.lr,
        l1_coeff: c.l1_coeff,
        aux_coeff: c.aux_coeff,
        ghost_grads: u32::from(c.ghost_grads),
        rescale_acts_by_decoder_norm: u32::from(c.rescale_acts_by_decoder_norm),
        bandwidth: c.bandwidth,
        init_threshold: c.init_threshold,
        clip_norm: c.clip_norm,
        warmup_frac: c.warmup_frac,
        decay_frac: c.decay_frac,
        batch_size: c.batch_size,
        total_steps: c.total_steps,
        dead_window: c.dead_window,
        seed: c.seed,
        threads,
        matryoshka: std::ptr::null(),
        n_matryoshka: c.matryoshka.len(),
    }
}

/// The Rust configuration of a C one, checked (sizes, k, widths, ranges).
///
/// # Safety
/// `c.matryoshka` NULL or `c.n_matryoshka` readable `size_t`s.
unsafe fn rust_config(c: &saeplug_train_config) -> Result<TrainConfig, FfiError> {
    if c.struct_size != size_of::<saeplug_train_config>() {
        return Err(FfiError::invalid(format!(
            "'cfg->struct_size' = {}, this library's saeplug_train_config has {} bytes: \
             fill the struct with saeplug_train_config_init",
            c.struct_size,
            size_of::<saeplug_train_config>()
        )));
    }
    let arch: saeplug_train_arch = code("cfg->arch", c.arch)?;
    let mut t = TrainConfig::new(arch.into(), c.d_in, c.d_sae);
    t.k = c.k;
    t.lr = c.lr;
    t.l1_coeff = c.l1_coeff;
    t.aux_coeff = c.aux_coeff;
    t.ghost_grads = c.ghost_grads != 0;
    t.rescale_acts_by_decoder_norm = c.rescale_acts_by_decoder_norm != 0;
    t.bandwidth = c.bandwidth;
    t.init_threshold = c.init_threshold;
    t.clip_norm = c.clip_norm;
    t.warmup_frac = c.warmup_frac;
    t.decay_frac = c.decay_frac;
    t.batch_size = c.batch_size;
    t.total_steps = c.total_steps;
    t.dead_window = c.dead_window;
    t.seed = c.seed;
    // SAFETY: forwarded to the caller (checked for NULL and alignment).
    t.matryoshka = unsafe { slice_in(c.matryoshka, c.n_matryoshka, "cfg->matryoshka") }?.to_vec();
    if t.total_steps == 0 {
        return Err(FfiError::invalid(
            "'cfg->total_steps' is 0: the schedules need the run's length",
        ));
    }
    t.validate().map_err(|e| {
        let mut e = FfiError::from(e);
        e.message = format!("training configuration: {}", e.message);
        e
    })?;
    Ok(t)
}

/// Fill `*cfg` with the defaults of architecture `arch` (a `saeplug_train_arch`)
/// at the given sizes (SAELens's where it has them: lr 3e-4, batch 4096, k
/// 32 or d_sae if smaller, Adam 0.9/0.999, 1000 steps, seed 42, all cores) and
/// `struct_size`. Nothing is checked but `arch`: `saeplug_trainer_new` checks the rest.
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (unknown arch).
/// Memory: `*cfg` filled by value (`matryoshka` NULL). Thread safety: any thread.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 64, 256));
/// assert(cfg.struct_size == sizeof cfg && cfg.k == 32 && cfg.batch_size == 4096);
/// assert(saeplug_train_config_init(&cfg, 9, 64, 256) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `cfg` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_train_config_init(
    cfg: *mut saeplug_train_config,
    arch: u32,
    d_in: usize,
    d_sae: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let cfg = unsafe { borrow_mut(cfg, "cfg") }?;
        let arch: saeplug_train_arch = code("arch", arch)?;
        *cfg = c_config(&TrainConfig::new(arch.into(), d_in, d_sae), 0);
        Ok(())
    }
}

/// A new trainer initialised as SAELens v6 does (decoder rows random at norm 0.1,
/// `W_enc = W_decᵀ`, zero biases) from `*cfg`, computing on the CPU with
/// `cfg->threads` threads. The activation scale is 1 until
/// `saeplug_trainer_set_scale`.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (struct_size, unknown
/// arch, d_in or d_sae 0, k outside 1..=d_sae, total_steps 0, bad widths or
/// coefficients, too many threads: the message names the field).
/// Memory: on success `*out` owns a new trainer (free with
/// `saeplug_trainer_free`; it holds about 3 × 2 × d_in × d_sae floats).
/// Thread safety: any thread.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 16, 64));
/// cfg.k = 65; // more than d_sae
/// assert(saeplug_trainer_new(&cfg, &t) == SAEPLUG_STATUS_INVALID_ARGUMENT && t == NULL);
/// cfg.k = 4;
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `cfg` NULL or readable (its `matryoshka` NULL or `n_matryoshka` readable
/// entries); `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_new(
    cfg: *const saeplug_train_config,
    out: *mut *mut saeplug_trainer,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let c = unsafe { borrow(cfg, "cfg") }?;
        let out = HandleOut::new(out, "out")?;
        // SAFETY: caller contract above.
        let tc = unsafe { rust_config(c) }?;
        let t = saeplug_trainer::new(Trainer::new(tc)?, c.threads)?;
        // SAFETY: writable per the caller contract.
        unsafe { out.set(t) };
        Ok(())
    }
}

/// Checked rows of a caller batch for trainer `t`.
///
/// # Safety
/// `x` NULL or `x_len` readable floats.
unsafe fn rows_of<'a>(
    t: &saeplug_trainer,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
) -> Result<&'a [f32], FfiError> {
    // SAFETY: forwarded to the caller.
    let x = unsafe { slice_in(x, x_len, "x") }?;
    check_shape("x", x.len(), n_rows, t.t.config().d_in)?;
    if n_rows == 0 {
        return Err(FfiError::invalid(
            "'n_rows' is 0: a batch needs at least one row",
        ));
    }
    Ok(x)
}

/// Set the activation scale from `n_rows` rows `x` (`[n_rows, d_in]`, `x_len`
/// floats): `√d_in / mean‖x‖`, the SAELens "expected_average_only_in"
/// normalisation, folded into the weights at save. Call it before the first step
/// with a representative sample (`saeplug_train_store` uses up to 64 batches).
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (shape, no rows);
/// NON_FINITE (NaN or Inf in `x`). Memory: nothing retained.
/// Thread safety: `t` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// saeplug_trainer_info info;
/// float x[2 * 4] = {2, 2, 2, 2, 2, 2, 2, 2}; // two rows of norm 4
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_STANDARD, 4, 8));
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_set_scale(t, x, 8, 2));
/// CHECK(saeplug_trainer_get_info(t, &info));
/// assert(info.scale == 0.5f);
/// x[3] = NAN;
/// assert(saeplug_trainer_set_scale(t, x, 8, 2) == SAEPLUG_STATUS_NON_FINITE);
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `t` NULL or live; `x` NULL or `x_len` readable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_set_scale(
    t: *mut saeplug_trainer,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let t = unsafe { borrow_mut(t, "t") }?;
        // SAFETY: caller contract above.
        let x = unsafe { rows_of(t, x, x_len, n_rows) }?;
        check_finite(x, t.t.config().d_in)?;
        t.t.set_scale_from(x);
        Ok(())
    }
}

fn check_finite(x: &[f32], d: usize) -> Result<(), FfiError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(p) => Err(saeplug::Error::NonFinite {
            row: p / d,
            col: p % d,
            value: x[p],
        }
        .into()),
        None => Ok(()),
    }
}

/// One training step on the batch `x` (`[n_rows, d_in]`, `x_len` floats; any
/// number of rows): gradients, clipping, Adam, dead-latent counters. `*stats`
/// (may be NULL) receives what the step measured.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (shape, no rows);
/// NON_FINITE (NaN or Inf in `x`: refused, the trainer unchanged).
/// Memory: nothing retained; the trainer reuses its own buffers.
/// Thread safety: `t` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// saeplug_train_stats s;
/// float x[8 * 16];
/// for (int i = 0; i < 8 * 16; i++) x[i] = (float)((i * 7) % 11) - 5.0f;
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 16, 64));
/// cfg.k = 4;
/// cfg.batch_size = 8;
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_step(t, x, 8 * 16, 8, &s));
/// assert(s.step == 1 && s.l0 <= 4.0 && isfinite(s.loss));
/// assert(saeplug_trainer_step(t, x, 8 * 16 - 1, 8, &s) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// x[5] = NAN;
/// assert(saeplug_trainer_step(t, x, 8 * 16, 8, NULL) == SAEPLUG_STATUS_NON_FINITE);
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `t` NULL or live; `x` NULL or `x_len` readable floats; `stats` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_step(
    t: *mut saeplug_trainer,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
    stats_out: *mut saeplug_train_stats,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let t = unsafe { borrow_mut(t, "t") }?;
        // SAFETY: caller contract above.
        let x = unsafe { rows_of(t, x, x_len, n_rows) }?;
        let s = t.t.step(&t.cpu, x)?;
        if !stats_out.is_null() {
            // SAFETY: non-NULL and writable per the caller contract.
            unsafe { *stats_out = stats(&s, t.t.steps_done()) };
        }
        Ok(())
    }
}

/// State of a trainer, filled by `saeplug_trainer_get_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct saeplug_trainer_info {
    /// The configuration (its `matryoshka` points into the trainer: valid while
    /// the trainer lives).
    pub config: saeplug_train_config,
    /// Steps done.
    pub steps_done: u64,
    /// The activation scale (1 until set).
    pub scale: f32,
}

/// Describe a trainer: its configuration (as loaded from a checkpoint, too),
/// steps done and activation scale.
/// Returns: OK; NULL_POINTER. Memory: `*info` filled by value; its
/// `config.matryoshka` is owned by the trainer. Thread safety: `t` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// saeplug_trainer_info info;
/// size_t widths[2] = {16, 32};
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_BATCHTOPK, 8, 64));
/// cfg.k = 4;
/// cfg.matryoshka = widths;
/// cfg.n_matryoshka = 2;
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_get_info(t, &info));
/// assert(info.steps_done == 0 && info.config.n_matryoshka == 2 && info.config.matryoshka[1] == 32);
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `t` NULL or live; `info` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_get_info(
    t: *const saeplug_trainer,
    info: *mut saeplug_trainer_info,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (t, info) = unsafe { (borrow(t, "t")?, borrow_mut(info, "info")?) };
        *info = saeplug_trainer_info {
            config: t.cfg,
            steps_done: t.t.steps_done(),
            scale: t.t.scale(),
        };
        Ok(())
    }
}

/// Write the trained SAE as a SAELens v6 folder `dir` (cfg.json +
/// sae_weights.safetensors; created with its parents), in raw-activation units
/// (the scale folded in); BatchTopK is saved as JumpReLU. `saeplug_sae_open`,
/// and SAELens, open it.
/// Returns: OK; NULL_POINTER; INVALID_UTF8; IO. Memory: nothing retained.
/// Thread safety: `t` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// saeplug_sae *s = NULL;
/// saeplug_sae_info info;
/// char dir[4096];
/// snprintf(dir, sizeof dir, "%s/trained-sae", tmp_dir);
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 8, 32));
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_save(t, dir));
/// CHECK(saeplug_sae_open(dir, &s));
/// CHECK(saeplug_sae_get_info(s, &info));
/// assert(info.d_in == 8 && info.d_sae == 32 && info.k == 32);
/// saeplug_sae_free(s);
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `t` NULL or live; `dir` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_save(
    t: *const saeplug_trainer,
    dir: *const c_char,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (t, dir) = unsafe { (borrow(t, "t")?, c_str(dir, "dir")?) };
        t.t.save_saelens(Path::new(dir))?;
        Ok(())
    }
}

/// The trained SAE as an SAE handle held in memory (the same weights
/// `saeplug_trainer_save` writes), for encoding, hooks or `saeplug_eval_store`
/// without a round trip through files.
/// Returns: OK; NULL_POINTER. Memory: on success `*out` owns a new SAE handle
/// (free with `saeplug_sae_free`), independent of the trainer.
/// Thread safety: `t` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// saeplug_sae *s = NULL;
/// saeplug_sae_info info;
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_JUMPRELU, 8, 32));
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_to_sae(t, &s));
/// saeplug_trainer_free(t); // the SAE handle stays valid
/// CHECK(saeplug_sae_get_info(s, &info));
/// assert(info.architecture == SAEPLUG_ARCHITECTURE_JUMPRELU && info.d_sae == 32);
/// saeplug_sae_free(s);
/// ```
///
/// # Safety
/// `t` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_to_sae(
    t: *const saeplug_trainer,
    out: *mut *mut saeplug_sae,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let t = unsafe { borrow(t, "t") }?;
        let out = HandleOut::new(out, "out")?;
        let sae = t.t.to_sae()?;
        // SAFETY: writable per the caller contract.
        unsafe { out.set(saeplug_sae { sae: std::sync::Arc::new(sae) }) };
        Ok(())
    }
}

/// Write the whole training state (parameters, Adam moments, counters, scale,
/// configuration) to the file `path`, atomically (write then rename: a crash
/// leaves the previous checkpoint whole).
/// Returns: OK; NULL_POINTER; INVALID_UTF8; IO. Memory: nothing retained.
/// Thread safety: `t` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL;
/// char path[4096];
/// snprintf(path, sizeof path, "%s/ckpt-save.safetensors", tmp_dir);
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 8, 32));
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_save_checkpoint(t, path));
/// assert(saeplug_trainer_save_checkpoint(t, "/nonexistent/dir/ckpt") == SAEPLUG_STATUS_IO);
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `t` NULL or live; `path` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_save_checkpoint(
    t: *const saeplug_trainer,
    path: *const c_char,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (t, path) = unsafe { (borrow(t, "t")?, c_str(path, "path")?) };
        t.t.save_checkpoint(Path::new(path))?;
        Ok(())
    }
}

/// Resume: a trainer from a checkpoint written by
/// `saeplug_trainer_save_checkpoint` (or `saeplug train`), computing with
/// `threads` CPU threads (0 = all cores). Its configuration is the checkpoint's;
/// with the same thread count, training continues bit-identically.
/// Returns: OK; NULL_POINTER; INVALID_UTF8; IO; FORMAT (not a checkpoint, or a
/// damaged one); INVALID_ARGUMENT (too many threads).
/// Memory: on success `*out` owns a new trainer (free with `saeplug_trainer_free`).
/// Thread safety: any thread.
///
/// Example:
///
/// ```c
/// saeplug_train_config cfg;
/// saeplug_trainer *t = NULL, *back = NULL, *none = NULL;
/// saeplug_trainer_info info;
/// float x[4 * 8];
/// char path[4096];
/// for (int i = 0; i < 4 * 8; i++) x[i] = (float)(i % 5) - 2.0f;
/// snprintf(path, sizeof path, "%s/ckpt-load.safetensors", tmp_dir);
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 8, 32));
/// cfg.k = 2;
/// CHECK(saeplug_trainer_new(&cfg, &t));
/// CHECK(saeplug_trainer_step(t, x, 4 * 8, 4, NULL));
/// CHECK(saeplug_trainer_save_checkpoint(t, path));
/// CHECK(saeplug_trainer_load_checkpoint(path, 1, &back));
/// CHECK(saeplug_trainer_get_info(back, &info));
/// assert(info.steps_done == 1 && info.config.k == 2);
/// assert(saeplug_trainer_load_checkpoint(sae_dir, 1, &none) != SAEPLUG_STATUS_OK && none == NULL); // a folder
/// saeplug_trainer_free(back);
/// saeplug_trainer_free(t);
/// ```
///
/// # Safety
/// `path` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_load_checkpoint(
    path: *const c_char,
    threads: u32,
    out: *mut *mut saeplug_trainer,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let path = unsafe { c_str(path, "path") }?;
        let out = HandleOut::new(out, "out")?;
        let t = saeplug_trainer::new(Trainer::load_checkpoint(Path::new(path))?, threads)?;
        // SAFETY: writable per the caller contract.
        unsafe { out.set(t) };
        Ok(())
    }
}

/// Free a trainer; NULL is a no-op; twice is UB.
/// Returns: nothing. Memory: releases the trainer.
/// Thread safety: no call using `t` may be running on another thread.
///
/// Example:
///
/// ```c
/// saeplug_trainer_free(NULL); // no-op
/// ```
///
/// # Safety
/// `t` NULL or from `saeplug_trainer_new`/`saeplug_trainer_load_checkpoint`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_trainer_free(t: *mut saeplug_trainer) {
    ffi_boundary_value! { ();
        // SAFETY: NULL or from a constructor of this file, freed once (caller contract).
        unsafe { free_handle(t) }
    }
}

/// The train split of a store as a training source, shuffled by `seed`, refused
/// when it holds NaN or Inf rows.
fn store_source(dir: &str, split: Split, seed: Option<u64>) -> Result<StoreSource, FfiError> {
    let s = StoreSource::open(Path::new(dir), split, seed)?;
    s.check_finite().map_err(|e| {
        let mut e = FfiError::from(e);
        e.message = format!("{dir}: {}", e.message);
        e
    })?;
    if s.n_rows() == 0 {
        return Err(FfiError::invalid(format!(
            "{dir}: the {} split holds no rows",
            split.name()
        )));
    }
    Ok(s)
}

/// Train an SAE on the train split of the activation store in folder `store_dir`
/// (written by `saeplug-llama capture` or `saeplug_store_*`), exactly as
/// `saeplug train --input STORE` does: rows shuffled by `cfg->seed`, the scale
/// from the first (up to 64) batches, `tokens` rows in all (0: one pass; a small
/// store is cycled over), `cfg->total_steps` = ceil(tokens / batch_size).
/// `cfg->d_in` 0 takes the store's; otherwise it must match. At the end the SAE
/// is written to `out_dir` as a SAELens v6 folder. `progress` (may be NULL) is
/// called with `user_data` every `progress_every` steps (0: only after the last
/// one) and after the last; a non-zero return stops the run: the state is
/// written to `out_dir/checkpoint.safetensors` (resume it with
/// `saeplug_trainer_load_checkpoint`) and the call returns CANCELLED.
/// `*final_stats` (may be NULL) receives the last step's measurements.
/// Returns: OK; CANCELLED; NULL_POINTER; INVALID_UTF8; INVALID_ARGUMENT (bad
/// configuration, d_in differing from the store's, NaN or Inf rows in the
/// store, an empty split); IO (no store there, output not writable); FORMAT (a
/// store whose manifest and shards disagree).
/// Memory: nothing retained; the store is memory-mapped, read batch by batch.
/// Thread safety: any thread; the callback runs on the calling thread.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// saeplug_train_config cfg;
/// saeplug_train_stats last;
/// char store[4096], out[4096];
/// static float acts[64 * 8];
/// int32_t tok[64];
/// uint32_t seq[64], pos[64];
/// for (int i = 0; i < 64 * 8; i++) acts[i] = (float)((i * 13) % 17) - 8.0f;
/// for (int i = 0; i < 64; i++) { tok[i] = i; seq[i] = (uint32_t)i / 8; pos[i] = (uint32_t)i % 8 + 1; }
/// snprintf(store, sizeof store, "%s/train-store-acts", tmp_dir);
/// snprintf(out, sizeof out, "%s/train-store-sae", tmp_dir);
/// CHECK(saeplug_store_create(store, 8, SAEPLUG_STORE_DTYPE_F32, 0, "l_out-0", 0, 9, 1, NULL, &w));
/// CHECK(saeplug_store_append(w, SAEPLUG_STORE_SPLIT_TRAIN, acts, 64 * 8, 64, tok, seq, pos));
/// CHECK(saeplug_store_finish(w));
/// saeplug_store_free(w);
/// CHECK(saeplug_train_config_init(&cfg, SAEPLUG_TRAIN_ARCH_TOPK, 0, 32));
/// cfg.k = 4;
/// cfg.batch_size = 16;
/// cfg.threads = 1;
/// CHECK(saeplug_train_store(store, &cfg, 256, out, 0, NULL, NULL, &last));
/// assert(last.step == 16 && last.l0 <= 4.0);
/// cfg.d_in = 7; // not the store's width
/// assert(saeplug_train_store(store, &cfg, 256, out, 0, NULL, NULL, NULL) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// Strings NULL or NUL-terminated; `cfg` NULL or readable (as for
/// `saeplug_trainer_new`); `final_stats` NULL or writable; `progress` NULL or a
/// function safe to call with `user_data`.
#[unsafe(no_mangle)]
#[allow(
    clippy::too_many_arguments,
    reason = "flat C parameters, no option struct"
)]
pub unsafe extern "C" fn saeplug_train_store(
    store_dir: *const c_char,
    cfg: *const saeplug_train_config,
    tokens: u64,
    out_dir: *const c_char,
    progress_every: u64,
    progress: saeplug_train_progress_fn,
    user_data: *mut c_void,
    final_stats: *mut saeplug_train_stats,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (dir, c, out) = unsafe {
            (c_str(store_dir, "store_dir")?, borrow(cfg, "cfg")?, c_str(out_dir, "out_dir")?)
        };
        let mut c = *c;
        // The schedules are set from the token budget below: any non-zero here.
        c.total_steps = 1;
        let src = store_source(dir, Split::Train, Some(c.seed))?;
        let (n, d_in) = (src.n_rows(), src.d_in());
        if c.d_in == 0 {
            c.d_in = d_in;
        } else if c.d_in != d_in {
            return Err(FfiError::invalid(format!(
                "'cfg->d_in' = {} but the store {dir} holds rows of d_in {d_in}",
                c.d_in
            )));
        }
        // SAFETY: caller contract above.
        let mut tc = unsafe { rust_config(&c) }?;
        let tokens = if tokens == 0 { n as u64 } else { tokens };
        tc.total_steps = tokens.div_ceil(tc.batch_size as u64);
        let mut tr = saeplug_trainer::new(Trainer::new(tc)?, c.threads)?;
        let bs = tr.t.config().batch_size;
        let mut first = vec![0.0f32; n.min(64 * bs) * d_in];
        src.rows(0, &mut first)?;
        tr.t.set_scale_from(&first);
        drop(first);
        let total = tr.t.config().total_steps;
        let mut batch = vec![0.0f32; bs * d_in];
        let mut last = saeplug_train_stats::default();
        while tr.t.steps_done() < total {
            let s = tr.t.steps_done();
            cycle_rows(&src, s * bs as u64, &mut batch)?;
            let st = tr.t.step(&tr.cpu, &batch)?;
            last = stats(&st, s + 1);
            let due = s + 1 == total || (progress_every > 0 && (s + 1) % progress_every == 0);
            if let (Some(f), true) = (progress, due) {
                let p = saeplug_train_progress {
                    step: s + 1,
                    total_steps: total,
                    tokens: (s + 1) * bs as u64,
                    stats: last,
                };
                // SAFETY: the caller vouches for `progress` and `user_data`; `p` lives across the call.
                if unsafe { f(&p, user_data) } != 0 {
                    std::fs::create_dir_all(out).map_err(|e| saeplug::Error::Io {
                        path: out.into(),
                        source: e,
                    })?;
                    tr.t.save_checkpoint(&Path::new(out).join("checkpoint.safetensors"))?;
                    return Err(FfiError::new(
                        saeplug_status::Cancelled,
                        format!(
                            "training cancelled by the progress callback at step {} of {total}; \
                             the state is in {out}/checkpoint.safetensors",
                            s + 1
                        ),
                    ));
                }
            }
        }
        tr.t.save_saelens(Path::new(out))?;
        if !final_stats.is_null() {
            // SAFETY: non-NULL and writable per the caller contract.
            unsafe { *final_stats = last };
        }
        Ok(())
    }
}

/// Bins of `saeplug_eval_result.density_histogram`: enough for 10^20 rows.
pub const SAEPLUG_EVAL_HISTOGRAM_BINS: usize = 200;

/// What `saeplug_eval_store` measured (docs/TRAINING.md "Evaluation").
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct saeplug_eval_result {
    /// Rows evaluated.
    pub rows: u64,
    /// Mean number of latents with f > 0 per row.
    pub l0: f64,
    /// Fraction of variance unexplained, centred:
    /// Σ‖x − x̂‖² / Σ_d Σ_rows (x_d − mean_d)² (explained variance = 1 − fvu).
    pub fvu: f64,
    /// Mean squared error per element.
    pub mse: f64,
    /// Latents that never fired on these rows.
    pub dead_latents: usize,
    /// Latents firing on more than 10% of the rows.
    pub dense_latents: usize,
    /// `dead_latents / d_sae`.
    pub dead_fraction: f64,
    /// `dense_latents / d_sae`.
    pub dense_fraction: f64,
    /// Lower edge of bin 0 of the histogram: floor(log10(1 / rows)).
    pub histogram_lo: f64,
    /// Bin width in decades (0.1).
    pub histogram_bin_width: f64,
    /// Bins used (from `histogram_lo` to 0).
    pub histogram_bins: usize,
    /// Live latents per bin of log10(feature density); the last used bin holds density 1.
    pub density_histogram: [u64; SAEPLUG_EVAL_HISTOGRAM_BINS],
}

/// Evaluate `sae` on split `split` (a `saeplug_store_split`) of the activation
/// store in folder `store_dir`, on `ctx`'s backend: the first `max_rows` rows
/// in stored order (0: all). Fills `*result` with L0, the centred FVU, MSE,
/// dead and dense (density > 0.1) latents and the log10 feature-density
/// histogram, the definitions of `saeplug-llama eval` (which adds CE/KL in the
/// engine).
/// Returns: OK; NULL_POINTER; INVALID_UTF8; INVALID_ARGUMENT (unknown split, an
/// empty split, the SAE's d_in not the store's); NON_FINITE (NaN or Inf rows);
/// IO (no store there); FORMAT (manifest and shards disagree); FILE_CHANGED; BACKEND.
/// Memory: nothing retained; `*result` filled by value.
/// Thread safety: `ctx` by one thread at a time; `sae` may be shared.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// saeplug_eval_result r;
/// char store[4096];
/// static float acts[40 * 64];
/// int32_t tok[40];
/// uint32_t seq[40], pos[40];
/// for (int i = 0; i < 40 * 64; i++) acts[i] = 0.1f * (float)((i * 29) % 23) - 1.0f;
/// for (int i = 0; i < 40; i++) { tok[i] = i; seq[i] = 0; pos[i] = (uint32_t)i + 1; }
/// snprintf(store, sizeof store, "%s/eval-store-acts", tmp_dir);
/// CHECK(saeplug_store_create(store, 64, SAEPLUG_STORE_DTYPE_F32, 0, "l_out-0", 0, 41, 1, NULL, &w));
/// CHECK(saeplug_store_append(w, SAEPLUG_STORE_SPLIT_HELDOUT, acts, 40 * 64, 40, tok, seq, pos));
/// CHECK(saeplug_store_finish(w));
/// saeplug_store_free(w);
/// CHECK(saeplug_eval_store(sae, ctx, store, SAEPLUG_STORE_SPLIT_HELDOUT, 0, &r));
/// assert(r.rows == 40 && r.fvu >= 0.0 && r.histogram_bins == 20);
/// assert(saeplug_eval_store(sae, ctx, store, SAEPLUG_STORE_SPLIT_TRAIN, 0, &r)
///        == SAEPLUG_STATUS_INVALID_ARGUMENT); // no train rows
/// ```
///
/// # Safety
/// `sae` and `ctx` NULL or live; `store_dir` NULL or NUL-terminated; `result`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_eval_store(
    sae: *const saeplug_sae,
    ctx: *mut saeplug_ctx,
    store_dir: *const c_char,
    split: u32,
    max_rows: u64,
    result: *mut saeplug_eval_result,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (sae, ctx, dir, result) = unsafe {
            (
                borrow(sae, "sae")?,
                borrow_mut(ctx, "ctx")?,
                c_str(store_dir, "store_dir")?,
                borrow_mut(result, "result")?,
            )
        };
        let split: saeplug_store_split = code("split", split)?;
        sae.sae.check_unchanged()?;
        let src = StoreSource::open(Path::new(dir), split.into(), None)?;
        if src.n_rows() == 0 {
            return Err(FfiError::invalid(format!(
                "{dir}: the {} split holds no rows",
                Split::from(split).name()
            )));
        }
        let max = usize::try_from(max_rows).unwrap_or(usize::MAX);
        let s = evaluate(ctx.backend(), &sae.sae, &src, max, 1024)?;
        let d_sae = sae.sae.d_sae() as f64;
        let mut hist = [0u64; SAEPLUG_EVAL_HISTOGRAM_BINS];
        let bins = s.histogram.len().min(SAEPLUG_EVAL_HISTOGRAM_BINS);
        hist[..bins].copy_from_slice(&s.histogram[..bins]);
        *result = saeplug_eval_result {
            rows: s.rows,
            l0: s.l0,
            fvu: s.fvu,
            mse: s.mse,
            dead_latents: s.dead,
            dense_latents: s.dense,
            dead_fraction: s.dead as f64 / d_sae,
            dense_fraction: s.dense as f64 / d_sae,
            histogram_lo: s.histogram_lo,
            histogram_bin_width: saeplug::train::DENSITY_BIN_WIDTH,
            histogram_bins: bins,
            density_histogram: hist,
        };
        Ok(())
    }
}
