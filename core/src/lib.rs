//! # saeplug
//!
//! Sparse autoencoders (SAEs) as activation plugins for inference engines:
//! memory-map an SAE written by SAELens, Gemma Scope or sparsify, encode
//! residual-stream activations into sparse features, edit them, decode.
//!
//! ```
//! use saeplug::{Backend, CpuBackend, Sae};
//! # fn main() -> saeplug::Result<()> {
//! // A small random SAE saved as a SAELens folder, then mapped back.
//! let dir = std::env::temp_dir().join(format!("saeplug-doc-{}", std::process::id()));
//! saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 7)?.save_saelens(&dir)?;
//! let sae = Sae::open(&dir)?;
//! assert!(sae.copied_tensors().is_empty()); // zero-copy
//!
//! let x = vec![0.5f32; 2 * sae.d_in()];      // two tokens
//! let cpu = CpuBackend::default();
//! let codes = cpu.encode_sparse(&sae, &x)?;  // CSR: indices + values
//! let mut recon = vec![0.0; x.len()];
//! cpu.decode_sparse(&sae, &codes, &mut recon)?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod backend;
mod config;
pub mod cvec;
pub mod decompose;
mod error;
pub mod format;
pub mod hook;
mod json;
pub mod params;
pub mod record;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
mod sae;
pub mod solve;
pub mod steer;
pub mod store;
pub mod sweep;
pub mod synthetic;
pub mod train;
pub mod weights;

pub use backend::cpu::CpuBackend;
#[cfg(feature = "gpu")]
pub use backend::wgpu::{WgpuBackend, WgpuOptions};
/// Adapter description types (re-exported from wgpu).
///
/// ```
/// use saeplug::wgpu_types::{AdapterInfo, DeviceType};
/// fn is_real_gpu(info: &AdapterInfo) -> bool {
///     matches!(info.device_type, DeviceType::DiscreteGpu | DeviceType::IntegratedGpu)
/// }
/// if let Ok(gpu) = saeplug::WgpuBackend::new(Default::default()) {
///     println!("{}: real GPU = {}", gpu.adapter_info().name, is_real_gpu(gpu.adapter_info()));
/// }
/// ```
#[cfg(feature = "gpu")]
pub mod wgpu_types {
    pub use wgpu::{AdapterInfo, DeviceType};
}
pub use backend::{Backend, Denorm, SparseCodes};
pub use config::{Architecture, Format, Normalization, SaeConfig, SaeWeights, TopKOrder};
pub use error::{Error, ErrorKind, Result};
pub use sae::Sae;
