//! The backend's entry points to the GEMM in [`super::kernel`]: every dense
//! product of the CPU backend runs on the backend's ISA and worker pool.

use super::CpuBackend;
use super::kernel::{self, BOperand, Epilogue, PackedB};
use crate::error::Result;

pub(crate) use super::kernel::MatRef;

/// `c = (accumulate ? c : 0) + a @ b` on `cpu`'s ISA, threads and pool.
pub(crate) fn sgemm_on(
    cpu: &CpuBackend,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    cpu.install(|| {
        kernel::gemm(
            cpu.isa(),
            a,
            BOperand::Strided(b),
            c,
            accumulate,
            cpu.threads(),
            None,
        )
    })
}

/// `c[m, n] = a[m, k] @ b[k, n]` on `cpu` (the name the encode, decode and solver
/// paths use).
pub(crate) fn sgemm_col_blocks(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    cpu: &CpuBackend,
) -> Result<()> {
    sgemm_on(cpu, a, b, c, false)
}

/// `c = a @ packed` then `epilogue`, on `cpu`.
pub(crate) fn sgemm_packed(
    cpu: &CpuBackend,
    a: MatRef<'_>,
    b: &PackedB,
    c: &mut [f32],
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    cpu.install(|| {
        kernel::gemm(
            cpu.isa(),
            a,
            BOperand::Packed(b),
            c,
            false,
            cpu.threads(),
            epilogue,
        )
    })
}

/// `c = a @ b` then `epilogue`, `b` read in place (zero-copy), on `cpu`.
pub(crate) fn sgemm_epilogue(
    cpu: &CpuBackend,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    cpu.install(|| {
        kernel::gemm(
            cpu.isa(),
            a,
            BOperand::Strided(b),
            c,
            false,
            cpu.threads(),
            epilogue,
        )
    })
}
