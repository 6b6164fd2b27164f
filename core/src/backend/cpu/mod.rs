//! Multi-threaded CPU backend: GEMM from the `gemm` crate, per-row activations on
//! scoped threads.

mod decode;
pub(crate) mod encode;
pub(crate) mod gemm;

use crate::backend::{Backend, Denorm, SparseCodes};
use crate::error::Result;
use crate::sae::Sae;
use crate::steer::Edit;

/// The CPU backend.
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
    pub fn new(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        CpuBackend { threads }
    }

    /// Threads used.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Run `f(first_row, rows)` over `data` split into blocks of whole rows, on up to
/// `threads` scoped threads (inline when the work is small).
pub(crate) fn par_rows<T: Send>(
    data: &mut [T],
    row_len: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let n_rows = data.len().checked_div(row_len).unwrap_or(0);
    if threads <= 1 || n_rows <= 1 || data.len() < 1 << 15 {
        f(0, data);
        return;
    }
    let per = n_rows.div_ceil(threads.min(n_rows));
    std::thread::scope(|s| {
        for (i, chunk) in data.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            s.spawn(move || f(i * per, chunk));
        }
    });
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
    ) -> Result<()> {
        crate::steer::apply_edits(sae, x, edits, rows)
    }
}
