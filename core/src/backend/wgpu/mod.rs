//! The wgpu backend: the WGSL kernels of `saeplug-shaders` on any Vulkan adapter
//! (a real GPU, or Mesa's lavapipe in CI). Weights are uploaded once per SAE and
//! cached; pipelines are created once per kernel; every wgpu error is caught by an
//! error scope or the uncaptured-error handler and returned as `Error::Backend`.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Backend, CpuBackend, WgpuBackend, WgpuOptions};
//! let gpu = match WgpuBackend::new(WgpuOptions::default()) {
//!     Ok(gpu) => gpu,
//!     Err(e) => {
//!         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
//!         return Ok(());
//!     }
//! };
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let x = saeplug::synthetic::Rng::new(1).normal_vec(4 * 16, 1.0);
//! let (mut on_gpu, mut on_cpu) = (vec![0.0; 4 * 64], vec![0.0; 4 * 64]);
//! gpu.encode(&sae, &x, &mut on_gpu)?; // uploads the weights on first use
//! CpuBackend::new(1).encode(&sae, &x, &mut on_cpu)?;
//! assert!(on_gpu.iter().zip(&on_cpu).all(|(a, b)| (a - b).abs() < 1e-4));
//! # Ok(()) }
//! ```

mod dispatch;
mod ito;
mod train;
mod workspace;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use saeplug_shaders::Kernel;

use crate::backend::edits::{
    Selection, activations_from_codes, activations_from_dense, apply_with, check_finite_output,
};
use crate::backend::{Backend, Denorm, SparseCodes, check_denorm, check_len, preprocess, rows_of};
use crate::error::{Error, Result};
use crate::params::{Edit, FeatureSource, SolveInfo, SolverParams};
use crate::sae::{Architecture, EncLayout, Sae, TopKOrder};

/// The uniform every kernel binds at binding 0 (mirror of `common/params.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    n_rows: u32,
    k_dim: u32,
    n_cols: u32,
    ld_out: u32,
    col_offset: u32,
    ld_lhs: u32,
    lhs_offset: u32,
    flags: u32,
    k: u32,
    lo: u32,
    hi: u32,
    mode: u32,
    coef: f32,
    _pad: [u32; 3],
}

// The WGSL struct is 64 bytes (checked against naga's layouter in the shader tests).
const _: () = assert!(size_of::<Params>() == 64);

/// How to choose and size the device.
///
/// ```
/// use saeplug::{WgpuBackend, WgpuOptions};
/// let opts = WgpuOptions {
///     adapter_name: Some("llvmpipe".into()), // Mesa's software adapter, by name
///     max_chunk_bytes: Some(1 << 20),        // weights bound in chunks of at most 1 MiB
///     ..Default::default()
/// };
/// match WgpuBackend::new(opts) {
///     Ok(gpu) => assert!(gpu.max_chunk_bytes() <= 1 << 20),
///     Err(e) => eprintln!("no such adapter: {e}"),
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Only adapters whose name contains this (case-insensitive). Defaults to
    /// `$SAEPLUG_ADAPTER`.
    pub adapter_name: Option<String>,
    /// Cap on the bytes of one weight chunk (tests use it to force chunking);
    /// the adapter's `max_storage_buffer_binding_size` always applies.
    pub max_chunk_bytes: Option<u64>,
    /// Store encoder weights as f16 on the device (half the memory and bandwidth;
    /// weights are rounded to f16). Needs the adapter feature SHADER_F16: `new`
    /// fails with `Unsupported` without it.
    pub f16_weights: bool,
}

/// Poll a future that native wgpu resolves without a reactor.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// An SAE's weights on the device.
pub(crate) struct GpuSae {
    /// (first column, width, buffer `[d_in, width]`) chunks of W_enc.
    enc: Vec<(usize, usize, wgpu::Buffer)>,
    /// (first feature, rows, buffer `[rows, d_in]`) chunks of W_dec.
    dec: Vec<(usize, usize, wgpu::Buffer)>,
    b_enc: wgpu::Buffer,
    /// threshold (jumprelu) | exp(r_mag) (gated) | decoder norms (top-k).
    aux: wgpu::Buffer,
    /// b_mag (gated), else a copy of `aux`'s shape.
    aux2: wgpu::Buffer,
    b_dec: wgpu::Buffer,
    inv_norm: wgpu::Buffer,
    /// W_dec^T in column chunks `[d_in, width]`, built on the first ITO call.
    dec_t: std::sync::OnceLock<Vec<(usize, usize, wgpu::Buffer)>>,
}

impl Drop for GpuSae {
    /// Free the device memory now: workspaces may still cache bind groups that
    /// name these buffers (they are never used again, as no new call binds them).
    fn drop(&mut self) {
        let chunks = self
            .enc
            .iter()
            .chain(&self.dec)
            .chain(self.dec_t.get().into_iter().flatten());
        for (_, _, b) in chunks {
            b.destroy();
        }
        for b in [
            &self.b_enc,
            &self.aux,
            &self.aux2,
            &self.b_dec,
            &self.inv_norm,
        ] {
            b.destroy();
        }
    }
}

/// The wgpu backend. `Send + Sync`: calls from several threads are serialised
/// by wgpu's queue. Each call checks a workspace (storage, staging and uniform
/// buffers and bind groups, kept between calls and grown on demand) out of a pool,
/// so a repeated call of the same shape creates no device objects; buffers over
/// 64 MiB are released after the call that needed them.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, WgpuBackend, WgpuOptions};
/// let gpu = match WgpuBackend::new(WgpuOptions::default()) {
///     Ok(gpu) => gpu,
///     Err(e) => {
///         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
///         return Ok(());
///     }
/// };
/// println!("running on {} ({:?})", gpu.adapter_info().name, gpu.adapter_info().device_type);
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
/// let codes = gpu.encode_sparse(&sae, &vec![0.5; 2 * 16])?;
/// assert_eq!(codes.n_rows(), 2);
/// # Ok(()) }
/// ```
pub struct WgpuBackend {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) max_chunk: u64,
    pub(crate) max_groups: u32,
    /// Encoder weights stored as f16 (SHADER_F16 kernels).
    pub(crate) f16: bool,
    /// Offset between uniform slots (the adapter's uniform offset alignment).
    pub(crate) uniform_align: u64,
    pipelines: Mutex<HashMap<&'static str, wgpu::ComputePipeline>>,
    saes: Mutex<HashMap<u64, Arc<GpuSae>>>,
    /// Idle workspaces; a call takes one (or makes one) and puts it back on success.
    pool: Mutex<Vec<workspace::Workspace>>,
    /// Training tensors kept on the device between calls (keyed by content).
    resident: Mutex<train::Resident>,
    pub(crate) uncaptured: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WgpuBackend {
    /// Open the best Vulkan adapter (discrete > integrated > virtual > CPU, e.g.
    /// lavapipe), or the one named by `opts.adapter_name` / `$SAEPLUG_ADAPTER`.
    ///
    /// ```
    /// use saeplug::{ErrorKind, WgpuBackend, WgpuOptions};
    /// match WgpuBackend::new(WgpuOptions { f16_weights: true, ..Default::default() }) {
    ///     Ok(gpu) => assert!(gpu.f16_weights()),
    ///     // No adapter, or one without SHADER_F16.
    ///     Err(e) => assert!(matches!(e.kind(), ErrorKind::Backend | ErrorKind::Unsupported), "{e}"),
    /// }
    /// ```
    pub fn new(opts: WgpuOptions) -> Result<Self> {
        let backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let want = opts
            .adapter_name
            .or_else(|| std::env::var("SAEPLUG_ADAPTER").ok())
            .map(|s| s.to_lowercase());
        let mut adapters = block_on(instance.enumerate_adapters(backends));
        let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        adapters.retain(|a| {
            want.as_ref()
                .is_none_or(|w| a.get_info().name.to_lowercase().contains(w))
        });
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        };
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let adapter = adapters.into_iter().next().ok_or_else(|| {
            Error::Backend(format!(
                "no Vulkan adapter found{} (adapters seen: {:?}); on Debian install mesa-vulkan-drivers and libvulkan1 for lavapipe",
                want.as_ref().map(|w| format!(" matching '{w}'")).unwrap_or_default(),
                seen
            ))
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let mut required_features = wgpu::Features::empty();
        if opts.f16_weights {
            if !adapter.features().contains(wgpu::Features::SHADER_F16) {
                return Err(Error::Unsupported(format!(
                    "f16 weights need SHADER_F16, which adapter '{}' lacks",
                    info.name
                )));
            }
            required_features |= wgpu::Features::SHADER_F16;
        }
        let (device, queue) = block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("saeplug"),
            required_features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Backend(format!("request_device on '{}': {e}", info.name)))?;
        let uncaptured: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&slot).get_or_insert_with(|| e.to_string());
        }));
        let mut max_chunk = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if let Some(m) = opts.max_chunk_bytes {
            max_chunk = max_chunk.min(m.max(4096));
        }
        Ok(WgpuBackend {
            device,
            queue,
            info,
            f16: opts.f16_weights,
            max_chunk,
            max_groups: limits.max_compute_workgroups_per_dimension,
            uniform_align: (limits.min_uniform_buffer_offset_alignment as u64)
                .max(size_of::<Params>() as u64)
                .next_power_of_two(),
            pipelines: Mutex::default(),
            saes: Mutex::default(),
            pool: Mutex::default(),
            resident: Mutex::default(),
            uncaptured,
        })
    }

    /// The adapter in use.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{WgpuBackend, WgpuOptions, wgpu_types::DeviceType};
    /// let gpu = match WgpuBackend::new(WgpuOptions::default()) {
    ///     Ok(gpu) => gpu,
    ///     Err(e) => {
    ///         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
    ///         return Ok(());
    ///     }
    /// };
    /// if gpu.adapter_info().device_type == DeviceType::Cpu {
    ///     eprintln!("software adapter: fine for correctness, not for speed");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// True when encoder weights are stored as f16 on the device.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{WgpuBackend, WgpuOptions};
    /// let gpu = match WgpuBackend::new(WgpuOptions::default()) {
    ///     Ok(gpu) => gpu,
    ///     Err(e) => {
    ///         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
    ///         return Ok(());
    ///     }
    /// };
    /// assert!(!gpu.f16_weights()); // opt-in: f16 weights round the encoder
    /// # Ok(()) }
    /// ```
    pub fn f16_weights(&self) -> bool {
        self.f16
    }

    /// Bytes of the largest weight chunk bound at once.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{WgpuBackend, WgpuOptions};
    /// let gpu = match WgpuBackend::new(WgpuOptions::default()) {
    ///     Ok(gpu) => gpu,
    ///     Err(e) => {
    ///         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
    ///         return Ok(());
    ///     }
    /// };
    /// assert!(gpu.max_chunk_bytes() >= 4 * 64);
    /// # Ok(()) }
    /// ```
    pub fn max_chunk_bytes(&self) -> u64 {
        self.max_chunk
    }

    pub(crate) fn pipeline(&self, k: &Kernel) -> wgpu::ComputePipeline {
        let mut p = lock(&self.pipelines);
        p.entry(k.name)
            .or_insert_with(|| {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(k.name),
                        source: wgpu::ShaderSource::Wgsl(k.source.into()),
                    });
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(k.name),
                        layout: None,
                        module: &module,
                        entry_point: Some(k.entry),
                        compilation_options: Default::default(),
                        cache: None,
                    })
            })
            .clone()
    }

    /// Upload `sae`'s weights once (cached by the SAE's identity).
    pub(crate) fn gpu_sae(&self, sae: &Sae) -> Result<Arc<GpuSae>> {
        if let Some(g) = lock(&self.saes).get(&sae.id()) {
            return Ok(Arc::clone(g));
        }
        let g = Arc::new(self.scoped(|| self.upload(sae))?);
        lock(&self.saes).insert(sae.id(), Arc::clone(&g));
        Ok(g)
    }

    /// Forget the uploaded weights of `sae` (they are also freed with the backend).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, WgpuBackend, WgpuOptions};
    /// let gpu = match WgpuBackend::new(WgpuOptions::default()) {
    ///     Ok(gpu) => gpu,
    ///     Err(e) => {
    ///         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
    ///         return Ok(());
    ///     }
    /// };
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
    /// gpu.encode_sparse(&sae, &vec![0.5; 16])?; // uploads sae
    /// gpu.evict(&sae); // frees the device copy; the next call uploads again
    /// gpu.encode_sparse(&sae, &vec![0.5; 16])?;
    /// # Ok(()) }
    /// ```
    pub fn evict(&self, sae: &Sae) {
        lock(&self.saes).remove(&sae.id());
    }

    /// Free the device memory kept between calls (storage, staging and uniform
    /// buffers and bind groups, and the training tensors kept resident); uploaded
    /// SAE weights stay. The next call creates what it needs again.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, WgpuBackend, WgpuOptions};
    /// let gpu = match WgpuBackend::new(WgpuOptions::default()) {
    ///     Ok(gpu) => gpu,
    ///     Err(e) => {
    ///         eprintln!("no GPU adapter here: {e}"); // e.g. no Vulkan driver installed
    ///         return Ok(());
    ///     }
    /// };
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
    /// let big = vec![0.5; 4096 * 16];
    /// gpu.encode_sparse(&sae, &big)?; // grows the workspace for 4096 rows
    /// gpu.release_workspaces(); // a long-lived host gives that memory back
    /// assert_eq!(gpu.encode_sparse(&sae, &big[..16])?.n_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub fn release_workspaces(&self) {
        lock(&self.pool).clear();
        lock(&self.resident).clear();
    }

    /// Width (columns) of `[d, ds]` column chunks under the binding limit.
    pub(crate) fn chunk_width(&self, d: usize, ds: usize) -> Result<usize> {
        let width =
            ((self.max_chunk / (4 * d as u64)) as usize / 64 * 64).min(ds.next_multiple_of(64));
        if width == 0 {
            return Err(Error::Unsupported(format!(
                "d_in = {d} is too large for this adapter's storage buffers ({} bytes)",
                self.max_chunk
            )));
        }
        Ok(width)
    }

    /// Upload a `[d, ds]` matrix (stored `[ds, d]` when `transposed`) as dense
    /// column chunks `(first column, width, buffer [d, width])`, in f16 when `half`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a matrix view, its layout and the upload format"
    )]
    pub(crate) fn column_chunks(
        &self,
        m: &[f32],
        d: usize,
        ds: usize,
        transposed: bool,
        width: usize,
        half: bool,
        label: &str,
    ) -> Vec<(usize, usize, wgpu::Buffer)> {
        let mut out = Vec::new();
        for c0 in (0..ds).step_by(width) {
            let cw = width.min(ds - c0);
            let mut chunk = Vec::with_capacity(d * cw);
            for j in 0..d {
                if transposed {
                    chunk.extend((c0..c0 + cw).map(|i| m[i * d + j]));
                } else {
                    chunk.extend_from_slice(&m[j * ds + c0..j * ds + c0 + cw]);
                }
            }
            let buf = if half {
                let mut h: Vec<u16> = chunk
                    .iter()
                    .map(|v| half::f16::from_f32(*v).to_bits())
                    .collect();
                if h.len() % 2 == 1 {
                    h.push(0); // storage buffers are sized in 4-byte words
                }
                self.storage(&h, label)
            } else {
                self.storage(&chunk, label)
            };
            out.push((c0, cw, buf));
        }
        out
    }

    fn upload(&self, sae: &Sae) -> Result<GpuSae> {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let row_bytes = 4 * d as u64;
        let width = self.chunk_width(d, ds)?;
        let w = sae.weights();
        let transposed = sae.enc_layout == EncLayout::SaeByIn;
        // f16 chunks hold twice the columns under the same byte limit.
        let width = if self.f16 {
            (2 * width).min(ds.next_multiple_of(64))
        } else {
            width
        };
        let enc = self.column_chunks(
            w.w_enc.as_slice(),
            d,
            ds,
            transposed,
            width,
            self.f16,
            "W_enc chunk",
        );
        let rows = (self.max_chunk / row_bytes) as usize;
        let wd = w.w_dec.as_slice();
        let dec = (0..ds)
            .step_by(rows)
            .map(|r0| {
                let n = rows.min(ds - r0);
                (
                    r0,
                    n,
                    self.storage(&wd[r0 * d..(r0 + n) * d], "W_dec chunk"),
                )
            })
            .collect();
        let ones = vec![1.0f32; ds];
        let norms = sae.decoder_norms();
        let (aux, aux2): (Vec<f32>, Vec<f32>) = match sae.config().architecture {
            Architecture::JumpRelu => (
                w.threshold
                    .as_ref()
                    .map_or_else(Vec::new, |t| t.as_slice().to_vec()),
                ones.clone(),
            ),
            Architecture::Gated => (
                sae.exp_r_mag().to_vec(),
                w.b_mag
                    .as_ref()
                    .map_or_else(Vec::new, |t| t.as_slice().to_vec()),
            ),
            _ => (norms.to_vec(), ones.clone()),
        };
        let inv: Vec<f32> = norms.iter().map(|n| 1.0 / n).collect();
        Ok(GpuSae {
            enc,
            dec,
            b_enc: self.storage(w.b_enc.as_slice(), "b_enc"),
            aux: self.storage(&aux, "aux"),
            aux2: self.storage(&aux2, "aux2"),
            b_dec: self.storage(w.b_dec.as_slice(), "b_dec"),
            inv_norm: self.storage(&inv, "inv_norm"),
            dec_t: std::sync::OnceLock::new(),
        })
    }

    /// Run `f` inside validation and out-of-memory error scopes; any wgpu error
    /// (scoped or uncaptured) becomes `Error::Backend`.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let e1 = block_on(val.pop());
        let e2 = block_on(oom.pop());
        if let Some(e) = e1.or(e2) {
            return Err(Error::Backend(format!("wgpu: {e}")));
        }
        if let Some(msg) = lock(&self.uncaptured).take() {
            return Err(Error::Backend(format!("wgpu (uncaptured): {msg}")));
        }
        r
    }

    /// Whether the steering kernels can compute these edits' activations: top-k
    /// SAEs need the row's k-th value for clamp/ablate/scale, so those rows are
    /// encoded whole instead.
    fn kernels_steer(sae: &Sae, edits: &[Edit]) -> bool {
        !matches!(sae.config().architecture, Architecture::TopK { .. })
            || edits
                .iter()
                .all(|e| matches!(e, Edit::AddVector { .. } | Edit::AddFeature { .. }))
    }
}

fn topk_mode(order: TopKOrder) -> u32 {
    match order {
        TopKOrder::TopKThenRelu => 0,
        TopKOrder::ReluThenTopK => 1,
        TopKOrder::Signed => 2,
        TopKOrder::GroupMax => 3,
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn encode(&self, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<Vec<Denorm>> {
        let n = rows_of(sae, x)?;
        check_len("encode output", out.len(), n * sae.d_sae())?;
        let (xc, denorm) = preprocess(sae, x, n)?;
        if n == 0 {
            return Ok(denorm);
        }
        let g = self.gpu_sae(sae)?;
        let done = self.call(|c| self.encode_rows(c, sae, &g, &xc))?;
        check_finite_output("encoded features", done.host(), sae.d_sae())?;
        out.copy_from_slice(done.host());
        Ok(denorm)
    }

    fn encode_sparse(&self, sae: &Sae, x: &[f32]) -> Result<SparseCodes> {
        let n = rows_of(sae, x)?;
        let ds = sae.d_sae();
        let (xc, denorm) = preprocess(sae, x, n)?;
        if n == 0 {
            return Ok(SparseCodes::from_dense(&[], ds, denorm));
        }
        let g = self.gpu_sae(sae)?;
        let done = self.call(|c| self.encode_rows(c, sae, &g, &xc))?;
        check_finite_output("encoded features", done.host(), ds)?;
        Ok(SparseCodes::from_dense(done.host(), ds, denorm))
    }

    fn decode(&self, sae: &Sae, f: &[f32], denorm: &[Denorm], out: &mut [f32]) -> Result<()> {
        let d = sae.d_in();
        let n = crate::backend::check_decode(sae, f, denorm, out)?;
        if n == 0 {
            return Ok(());
        }
        let g = self.gpu_sae(sae)?;
        let done = self.call(|c| {
            self.decode_rows(c, sae, &g, f)?;
            crate::backend::apply_denorm(c.host(), d, denorm);
            Ok(())
        })?;
        check_finite_output("decoded activations", done.host(), d)?;
        out.copy_from_slice(done.host());
        Ok(())
    }

    fn decode_sparse(&self, sae: &Sae, codes: &SparseCodes, out: &mut [f32]) -> Result<()> {
        codes.validate(sae)?;
        let n = codes.n_rows();
        check_len("decode output", out.len(), n * sae.d_in())?;
        check_denorm(sae, &codes.denorm, n)?;
        if n == 0 {
            return Ok(());
        }
        let g = self.gpu_sae(sae)?;
        let done = self.call(|c| {
            self.decode_sparse_rows(c, sae, &g, codes)?;
            crate::backend::apply_denorm(c.host(), sae.d_in(), &codes.denorm);
            Ok(())
        })?;
        check_finite_output("decoded activations", done.host(), sae.d_in())?;
        out.copy_from_slice(done.host());
        Ok(())
    }

    fn steer(
        &self,
        sae: &Sae,
        x: &mut [f32],
        edits: &[Edit],
        rows: Option<&[usize]>,
        source: &FeatureSource,
    ) -> Result<()> {
        let Some(mut sel) = Selection::take(sae, x, edits, rows)? else {
            return Ok(());
        };
        let rows = sel.rows();
        match source {
            FeatureSource::Encoder if Self::kernels_steer(sae, edits) => {
                let g = self.gpu_sae(sae)?;
                let done = self.call(|c| self.steer_rows(c, sae, &g, rows, edits, None))?;
                rows.copy_from_slice(done.host());
            }
            FeatureSource::Encoder => {
                let ds = sae.d_sae();
                let mut f = vec![0.0f32; rows.len() / sae.d_in() * ds];
                self.encode(sae, rows, &mut f)?;
                apply_with(sae, rows, edits, &activations_from_dense(&f, ds, edits));
            }
            FeatureSource::Solver(p) => {
                let (codes, _) = self.solve_rows(sae, rows, p)?;
                apply_with(sae, rows, edits, &activations_from_codes(&codes, edits));
            }
        }
        sel.commit(x)
    }

    fn solve(&self, sae: &Sae, x: &[f32], p: &SolverParams) -> Result<(SparseCodes, SolveInfo)> {
        self.solve_rows(sae, x, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Rng, random_sae};

    /// The backend, or `None` (loudly) without an adapter when
    /// `SAEPLUG_ALLOW_NO_GPU=1`; otherwise a missing adapter fails the test.
    fn gpu(opts: WgpuOptions) -> Option<WgpuBackend> {
        match WgpuBackend::new(opts) {
            Ok(g) => Some(g),
            Err(e) if std::env::var("SAEPLUG_ALLOW_NO_GPU").as_deref() == Ok("1") => {
                eprintln!(
                    "NO GPU ADAPTER ({e}); SAEPLUG_ALLOW_NO_GPU=1 set, this test checks nothing"
                );
                None
            }
            Err(e) => panic!("no GPU adapter: {e} (or set SAEPLUG_ALLOW_NO_GPU=1)"),
        }
    }

    /// One of each call the backend makes: encode, sparse encode, both decodes,
    /// steering and GP/MP solves, on `rows` rows.
    fn every_call(g: &WgpuBackend, sae: &Sae, rows: usize) {
        let (d, ds) = (sae.d_in(), sae.d_sae());
        let x = Rng::new(rows as u64).normal_vec(rows * d, 1.0);
        let mut f = vec![0.0; rows * ds];
        let dn = g.encode(sae, &x, &mut f).unwrap();
        let codes = g.encode_sparse(sae, &x).unwrap();
        let mut r = vec![0.0; rows * d];
        g.decode(sae, &f, &dn, &mut r).unwrap();
        g.decode_sparse(sae, &codes, &mut r).unwrap();
        let edits = [
            Edit::Clamp {
                feature: 3,
                value: 2.0,
            },
            Edit::AddFeature {
                feature: 5,
                coef: 1.0,
            },
        ];
        let mut y = x.clone();
        g.steer(sae, &mut y, &edits, None, &FeatureSource::Encoder)
            .unwrap();
        for solver in [
            crate::params::Solver::GradientPursuit,
            crate::params::Solver::MatchingPursuit,
            crate::params::Solver::OrthogonalMatchingPursuit,
        ] {
            g.solve(sae, &x, &crate::params::SolverParams::new(solver, 3))
                .unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn repeated_calls_create_no_buffers_or_bind_groups() {
        // A 4 KiB chunk cap: several weight chunks, so several dispatches per pass.
        let Some(g) = gpu(WgpuOptions {
            max_chunk_bytes: Some(4096),
            ..Default::default()
        }) else {
            return;
        };
        let sae = random_sae(16, 200, Architecture::Standard, 1).unwrap();
        every_call(&g, &sae, 1);
        let warm = g.workspace_creations();
        assert!(warm > 0, "the first calls create the workspace");
        for _ in 0..3 {
            every_call(&g, &sae, 1);
        }
        assert_eq!(
            g.workspace_creations(),
            warm,
            "a repeated batch-1 call created device objects"
        );
        // A larger batch grows the workspace once; the batch-1 calls stay free after it.
        every_call(&g, &sae, 7);
        let grown = g.workspace_creations();
        assert!(grown > warm);
        every_call(&g, &sae, 7);
        every_call(&g, &sae, 1);
        every_call(&g, &sae, 1);
        let settled = g.workspace_creations();
        every_call(&g, &sae, 1);
        every_call(&g, &sae, 7);
        assert_eq!(g.workspace_creations(), settled);
        // Released workspaces are created again on demand.
        g.release_workspaces();
        assert_eq!(g.workspace_creations(), 0);
        every_call(&g, &sae, 1);
        assert!(g.workspace_creations() > 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn concurrent_calls_each_get_a_workspace() {
        let Some(g) = gpu(WgpuOptions::default()) else {
            return;
        };
        let sae = random_sae(24, 96, Architecture::JumpRelu, 2).unwrap();
        let x = Rng::new(3).normal_vec(3 * 24, 1.0);
        let mut want = vec![0.0; 3 * 96];
        crate::CpuBackend::new(1)
            .encode(&sae, &x, &mut want)
            .unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let mut f = vec![0.0; 3 * 96];
                        g.encode(&sae, &x, &mut f).unwrap();
                        let e = f
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0.0, f32::max);
                        assert!(e <= 1e-4, "concurrent encode differs by {e}");
                    }
                });
            }
        });
    }

    /// A wgpu error reported while a call runs (here injected into the
    /// uncaptured-error slot, as the device's callback would) fails the call, and
    /// the caller's outputs keep what they held. The calls take several row passes
    /// (a 4 KiB binding cap), so a backend writing pass by pass would be caught.
    #[test]
    #[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
    fn failed_calls_leave_outputs_untouched() {
        let Some(g) = gpu(WgpuOptions {
            max_chunk_bytes: Some(4096),
            ..Default::default()
        }) else {
            return;
        };
        let sae = random_sae(8, 512, Architecture::Standard, 4).unwrap();
        let (d, ds, rows) = (8, 512, 5); // 2 rows per pass: 3 passes
        let x = Rng::new(5).normal_vec(rows * d, 1.0);
        let codes = g.encode_sparse(&sae, &x).unwrap(); // uploads the weights
        let dense = codes.to_dense();
        let inject = || *lock(&g.uncaptured) = Some("injected device error".into());
        let sentinel = 7.25f32;
        let untouched = |v: &[f32]| v.iter().all(|a| *a == sentinel);

        let mut f = vec![sentinel; rows * ds];
        inject();
        let e = g.encode(&sae, &x, &mut f).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Backend, "{e}");
        assert!(untouched(&f), "a failed encode wrote its output");
        g.encode(&sae, &x, &mut f).unwrap();
        assert!(!untouched(&f), "encode without the fault writes the output");

        let mut r = vec![sentinel; rows * d];
        inject();
        assert!(g.decode(&sae, &dense, &[], &mut r).is_err());
        assert!(untouched(&r), "a failed decode wrote its output");
        inject();
        assert!(g.decode_sparse(&sae, &codes, &mut r).is_err());
        assert!(untouched(&r), "a failed sparse decode wrote its output");
        g.decode_sparse(&sae, &codes, &mut r).unwrap();
        assert!(!untouched(&r));

        let mut y = vec![sentinel; rows * d];
        let edits = [
            Edit::AddFeature {
                feature: 1,
                coef: 3.0,
            },
            Edit::Ablate { feature: 2 },
        ];
        inject();
        assert!(
            g.steer(&sae, &mut y, &edits, None, &FeatureSource::Encoder)
                .is_err()
        );
        assert!(untouched(&y), "a failed steer changed x");
        g.steer(&sae, &mut y, &edits, None, &FeatureSource::Encoder)
            .unwrap();
        assert!(!untouched(&y));
    }
}
