//! `--backend` and `--threads`: the backend a command computes on, built once
//! after every argument has been checked.

use clap::{Args, ValueEnum};
use saeplug::solve::{SolveInfo, SolverParams};
use saeplug::{Backend, CpuBackend, Result, Sae, SparseCodes, WgpuBackend};

/// The largest `--threads` accepted (the core's bound).
pub(crate) const MAX_THREADS: usize = 1024;

/// Where computation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendKind {
    /// The CPU backend.
    Cpu,
    /// The wgpu backend (Vulkan; lavapipe counts); an error when no adapter exists.
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

/// The backend chosen.
pub(crate) struct Engine {
    cpu: CpuBackend,
    gpu: Option<WgpuBackend>,
}

impl Engine {
    pub(crate) fn new(a: &ComputeArgs) -> Result<Self> {
        let cpu = CpuBackend::new(a.threads);
        let gpu = match a.backend {
            BackendKind::Cpu => None,
            BackendKind::Gpu => Some(WgpuBackend::new(Default::default())?),
            BackendKind::Auto => match WgpuBackend::new(Default::default()) {
                Ok(g) => Some(g),
                Err(e) => {
                    eprintln!("saeplug: no GPU adapter ({e}); computing on the CPU");
                    None
                }
            },
        };
        Ok(Engine { cpu, gpu })
    }

    /// The backend everything runs on.
    pub(crate) fn backend(&self) -> &dyn Backend {
        match &self.gpu {
            Some(g) => g,
            None => &self.cpu,
        }
    }

    /// A short description: "cpu, 2 threads" or the adapter's name.
    pub(crate) fn describe(&self) -> String {
        match &self.gpu {
            Some(g) => format!("wgpu, {}", g.adapter_info().name),
            None => format!("cpu, {} threads", self.cpu.threads()),
        }
    }

    /// An ITO solve on the chosen backend.
    pub(crate) fn solve(
        &self,
        sae: &Sae,
        x: &[f32],
        p: &SolverParams,
    ) -> Result<(SparseCodes, SolveInfo)> {
        match &self.gpu {
            // OMP's per-row Cholesky refits run on the CPU.
            Some(g) if p.solver != saeplug::solve::Solver::OrthogonalMatchingPursuit => {
                g.solve(sae, x, p)
            }
            _ => saeplug::solve::solve(&self.cpu, sae, x, p),
        }
    }
}
