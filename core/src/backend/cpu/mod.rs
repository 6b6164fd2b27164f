//! Multi-threaded CPU backend: a packed GEMM with a micro-kernel per vector ISA
//! ([`Isa`], picked at run time), activations fused into the GEMM's output pass,
//! all on one pool of worker threads per backend (started once, shared by its
//! clones, sized by the backend's bounded thread count).
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
pub(crate) mod kernel;
mod solve;
mod steer;
pub(crate) mod train;

use std::sync::Arc;

use crate::backend::{Backend, Denorm, SparseCodes};
use crate::error::{Error, Result};
use crate::params::{Edit, FeatureSource, SolveInfo, SolverParams};
use crate::sae::Sae;

pub use kernel::{ISA_ENV, Isa, WeightStorage, roofline};

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
    /// The micro-kernels' vector ISA.
    isa: Isa,
    /// How the encoder's weights are read.
    storage: WeightStorage,
    /// The workers every call of this backend (and its clones) runs on: one pool
    /// of `threads` threads, started once; `None` for one thread.
    pool: Option<Arc<rayon::ThreadPool>>,
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
        // Workers that cannot be started leave the work on the calling thread;
        // `try_new` reports it instead.
        Self::start(threads.min(MAX_THREADS)).unwrap_or_else(|_| Self::single_thread())
    }

    /// Start the worker pool for `threads` threads (0 = all cores).
    fn start(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        }
        .min(MAX_THREADS);
        if threads <= 1 {
            return Ok(Self::single_thread());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("saeplug-cpu-{i}"))
            .build()
            .map_err(|e| {
                Error::Backend(format!("cannot start {threads} CPU worker threads: {e}"))
            })?;
        Ok(CpuBackend {
            threads,
            isa: default_isa(),
            storage: WeightStorage::default(),
            pool: Some(Arc::new(pool)),
        })
    }

    fn single_thread() -> Self {
        CpuBackend {
            threads: 1,
            isa: default_isa(),
            storage: WeightStorage::default(),
            pool: None,
        }
    }

    /// Like [`CpuBackend::new`], but a count above [`MAX_THREADS`], workers that
    /// cannot be started, or a `SAEPLUG_CPU_ISA` this CPU cannot run, are an error
    /// instead of being clamped or ignored.
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
        Isa::from_env()?;
        Self::start(threads)
    }

    /// The same backend running the kernels of `isa` (an error when this CPU
    /// cannot run it).
    ///
    /// ```
    /// use saeplug::backend::cpu::Isa;
    /// let cpu = saeplug::CpuBackend::new(1).with_isa(Isa::Portable).unwrap();
    /// assert_eq!(cpu.isa(), Isa::Portable);
    /// ```
    pub fn with_isa(mut self, isa: Isa) -> Result<Self> {
        isa.check()?;
        self.isa = isa;
        Ok(self)
    }

    /// The same backend storing the encoder's weights as `storage`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{Backend, CpuBackend, backend::cpu::WeightStorage};
    /// let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 1)?;
    /// let zero_copy = CpuBackend::new(1).with_weight_storage(WeightStorage::ZeroCopy);
    /// zero_copy.encode(&sae, &vec![0.5; 16], &mut vec![0.0; 64])?;
    /// assert_eq!(sae.derived_bytes(), 0); // nothing copied
    /// # Ok(()) }
    /// ```
    pub fn with_weight_storage(mut self, storage: WeightStorage) -> Self {
        self.storage = storage;
        self
    }

    /// The ISA the kernels run.
    ///
    /// ```
    /// # unsafe { std::env::remove_var("SAEPLUG_CPU_ISA") };
    /// let cpu = saeplug::CpuBackend::new(1);
    /// assert_eq!(cpu.isa(), saeplug::backend::cpu::Isa::detected());
    /// ```
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// How the encoder's weights are stored.
    ///
    /// ```
    /// use saeplug::backend::cpu::WeightStorage;
    /// assert_eq!(saeplug::CpuBackend::new(1).weight_storage(), WeightStorage::PackedF32);
    /// ```
    pub fn weight_storage(&self) -> WeightStorage {
        self.storage
    }

    /// A one-thread backend for work too small to split.
    fn single(&self) -> Self {
        CpuBackend {
            threads: 1,
            pool: None,
            ..self.clone()
        }
    }

    /// Run `f` with this backend's pool as the current rayon pool (so a library
    /// that parallelises with rayon, such as the GEMM driver, uses these workers).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Run `jobs` on the workers and wait for all of them (inline without a pool).
    pub(crate) fn run_all<J: FnOnce() + Send>(&self, jobs: Vec<J>) {
        match &self.pool {
            Some(p) => p.scope(|s| {
                for j in jobs {
                    s.spawn(move |_| j());
                }
            }),
            None => jobs.into_iter().for_each(|j| j()),
        }
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

/// The ISA `SAEPLUG_CPU_ISA` forces, else the fastest present (an unusable value
/// is ignored here; [`CpuBackend::try_new`] reports it).
fn default_isa() -> Isa {
    Isa::from_env().ok().flatten().unwrap_or_else(Isa::detected)
}

/// Run `f(first_row, rows)` over `data` split into blocks of whole rows, on the
/// backend's workers (inline when the work is small).
pub(crate) fn par_rows<T: Send>(
    cpu: &CpuBackend,
    data: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let n_rows = data.len().checked_div(row_len).unwrap_or(0);
    if cpu.threads <= 1 || n_rows <= 1 || data.len() < 1 << 15 {
        f(0, data);
        return;
    }
    let per = n_rows.div_ceil(cpu.threads.min(n_rows));
    let f = &f;
    let jobs = data
        .chunks_mut(per * row_len)
        .enumerate()
        .map(|(i, chunk)| move || f(i * per, chunk))
        .collect();
    cpu.run_all(jobs);
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

#[cfg(test)]
mod tests {
    use super::CpuBackend;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    #[test]
    fn every_call_runs_on_the_backends_own_bounded_pool() {
        let cpu = CpuBackend::new(2);
        let clone = cpu.clone();
        let names = Mutex::new(BTreeSet::new());
        for backend in [&cpu, &clone] {
            let jobs: Vec<_> = (0..64)
                .map(|_| {
                    || {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        let name = std::thread::current().name().map(str::to_string);
                        names.lock().expect("lock").insert(name);
                    }
                })
                .collect();
            backend.run_all(jobs);
        }
        // Clones share one pool of exactly two named workers.
        let names = names.into_inner().expect("lock");
        let want: BTreeSet<_> = ["saeplug-cpu-0", "saeplug-cpu-1"]
            .into_iter()
            .map(|n| Some(n.to_string()))
            .collect();
        assert_eq!(names, want);
        // rayon users (the GEMM driver) see the backend's pool, not the global one.
        assert_eq!(cpu.install(rayon::current_num_threads), 2);
        assert_eq!(CpuBackend::new(1).install(|| 7), 7);
        assert!(CpuBackend::new(1).pool.is_none());
    }
}
