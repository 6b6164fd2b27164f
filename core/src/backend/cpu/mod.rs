//! Multi-threaded CPU backend: GEMM from the `gemm` crate, per-row activations on
//! scoped threads.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Backend, CpuBackend};
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let x = vec![0.25; 4 * 16];
//! // The same result with one thread or several.
//! let (mut a, mut b) = (vec![0.0; 4 * 64], vec![0.0; 4 * 64]);
//! CpuBackend::new(1).encode(&sae, &x, &mut a)?;
//! CpuBackend::new(4).encode(&sae, &x, &mut b)?;
//! assert_eq!(a, b);
//! # Ok(()) }
//! ```

mod decode;
pub(crate) mod encode;
pub(crate) mod gemm;
mod solve;
mod steer;

use crate::backend::{Backend, Denorm, SparseCodes};
use crate::error::{Error, Result};
use crate::params::{Edit, FeatureSource, SolveInfo, SolverParams};
use crate::sae::Sae;

/// The most worker threads a CPU backend uses. Larger requests are refused by
/// [`CpuBackend::try_new`] and clamped by [`CpuBackend::new`].
///
/// ```
/// assert!(saeplug::backend::cpu::MAX_THREADS >= 64);
/// assert_eq!(saeplug::CpuBackend::new(1 << 30).threads(), saeplug::backend::cpu::MAX_THREADS);
/// ```
pub const MAX_THREADS: usize = 256;

/// The CPU backend.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend};
/// let cpu = CpuBackend::default(); // all cores
/// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::TopK {
///     k: 4, order: saeplug::TopKOrder::TopKThenRelu, rescale_by_decoder_norm: false }, 3)?;
/// let codes = cpu.encode_sparse(&sae, &vec![1.0; 16])?;
/// assert!(codes.indices.len() <= 4);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CpuBackend {
    threads: usize,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new(0)
    }
}

impl CpuBackend {
    /// A backend using `threads` threads (0 = all available cores).
    ///
    /// ```
    /// assert_eq!(saeplug::CpuBackend::new(3).threads(), 3);
    /// assert!(saeplug::CpuBackend::new(0).threads() >= 1); // 0 = all cores
    /// ```
    pub fn new(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        CpuBackend {
            threads: threads.min(MAX_THREADS),
        }
    }

    /// Like [`CpuBackend::new`], but a count above [`MAX_THREADS`] is an error
    /// instead of being clamped.
    ///
    /// ```
    /// assert_eq!(saeplug::CpuBackend::try_new(2).unwrap().threads(), 2);
    /// assert!(saeplug::CpuBackend::try_new(1 << 20).is_err());
    /// ```
    pub fn try_new(threads: usize) -> Result<Self> {
        if threads > MAX_THREADS {
            return Err(Error::invalid(format!(
                "{threads} threads requested; the CPU backend uses at most {MAX_THREADS}"
            )));
        }
        Ok(Self::new(threads))
    }

    /// A one-thread backend for work too small to split.
    fn single(&self) -> Self {
        CpuBackend { threads: 1 }
    }

    /// Threads used.
    ///
    /// ```
    /// let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// assert_eq!(saeplug::CpuBackend::default().threads(), n);
    /// ```
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Run `f(first_row, rows)` over `data` split into blocks of whole rows, on up to
/// `threads` scoped threads (inline when the work is small). A thread that cannot
/// be spawned is an error, not a panic.
pub(crate) fn par_rows<T: Send>(
    data: &mut [T],
    row_len: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Result<()> {
    let n_rows = data.len().checked_div(row_len).unwrap_or(0);
    if threads <= 1 || n_rows <= 1 || data.len() < 1 << 15 {
        f(0, data);
        return Ok(());
    }
    let per = n_rows.div_ceil(threads.min(n_rows));
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, chunk) in data.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            let h = std::thread::Builder::new()
                .spawn_scoped(s, move || f(i * per, chunk))
                .map_err(|e| Error::Backend(format!("cannot spawn a CPU worker thread: {e}")))?;
            handles.push(h);
        }
        for h in handles {
            h.join()
                .map_err(|_| Error::Backend("CPU worker thread panicked".into()))?;
        }
        Ok(())
    })
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn encode(&self, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<Vec<Denorm>> {
        encode::encode_dense(self, sae, x, out)
    }

    fn encode_sparse(&self, sae: &Sae, x: &[f32]) -> Result<SparseCodes> {
        encode::encode_sparse(self, sae, x)
    }

    fn decode(&self, sae: &Sae, f: &[f32], denorm: &[Denorm], out: &mut [f32]) -> Result<()> {
        decode::decode_dense(self, sae, f, denorm, out)
    }

    fn decode_sparse(&self, sae: &Sae, codes: &SparseCodes, out: &mut [f32]) -> Result<()> {
        decode::decode_sparse(self, sae, codes, out)
    }

    fn steer(
        &self,
        sae: &Sae,
        x: &mut [f32],
        edits: &[Edit],
        rows: Option<&[usize]>,
        source: &FeatureSource,
    ) -> Result<()> {
        steer::steer(self, sae, x, edits, rows, source)
    }

    fn solve(&self, sae: &Sae, x: &[f32], p: &SolverParams) -> Result<(SparseCodes, SolveInfo)> {
        solve::solve(self, sae, x, p)
    }

    fn feature_activation(&self, sae: &Sae, x: &[f32], i: usize) -> Result<f32> {
        steer::feature_activation(self, sae, x, i)
    }
}
