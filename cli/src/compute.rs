//! `--backend` and `--threads`: the backend a command computes on, built once
//! after every argument has been checked.

use clap::{Args, ValueEnum};
use saeplug::{Backend, CpuBackend, Result, WgpuBackend};

/// The largest `--threads` accepted (the core's bound).
pub(crate) const MAX_THREADS: usize = saeplug::backend::cpu::MAX_THREADS;

/// Where computation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendKind {
    /// The CPU backend.
    Cpu,
    /// The wgpu backend (Vulkan; lavapipe counts); an error when no adapter exists.
    /// OMP keeps its per-row Cholesky refits on the CPU.
    Gpu,
    /// The wgpu backend when an adapter exists, else the CPU.
    Auto,
}

/// Options of every command that computes.
#[derive(Args, Debug, Clone)]
pub(crate) struct ComputeArgs {
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub(crate) backend: BackendKind,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_parser = crate::check::threads)]
    pub(crate) threads: usize,
}

/// The backend chosen, built once after every argument has been checked.
pub(crate) struct Engine {
    backend: Box<dyn Backend>,
    describe: String,
}

impl Engine {
    pub(crate) fn new(a: &ComputeArgs) -> Result<Self> {
        let cpu = || -> Result<Engine> {
            let cpu = CpuBackend::try_new(a.threads)?;
            Ok(Engine {
                describe: format!("cpu, {} threads", cpu.threads()),
                backend: Box::new(cpu),
            })
        };
        let gpu = |g: WgpuBackend| Engine {
            describe: format!("wgpu, {}", g.adapter_info().name),
            backend: Box::new(g),
        };
        match a.backend {
            BackendKind::Cpu => cpu(),
            BackendKind::Gpu => Ok(gpu(WgpuBackend::new(Default::default())?)),
            BackendKind::Auto => match WgpuBackend::new(Default::default()) {
                Ok(g) => Ok(gpu(g)),
                Err(e) => {
                    eprintln!("saeplug: no GPU adapter ({e}); computing on the CPU");
                    cpu()
                }
            },
        }
    }

    /// The backend everything runs on.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// A short description: "cpu, 2 threads" or the adapter's name.
    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }
}
