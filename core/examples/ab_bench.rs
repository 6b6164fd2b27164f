//! A/B benchmark of the hot calls, for comparing two commits in one run: build
//! this example at each commit (with that commit's API) and run the binaries
//! alternately (docs/PERFORMANCE.md, "A/B"). Prints one line per measurement:
//! `name median_ms min_ms`.
//!
//! `cargo run --release -p saeplug --example ab_bench -- [rounds [name-prefix]]`

use std::sync::Arc;
use std::time::Instant;

use saeplug::hook::{Hook, Positions, Replace};
use saeplug::solve::{Solver, SolverParams};
use saeplug::steer::Edit;
use saeplug::synthetic::{Rng, random_sae, sparse_data};
use saeplug::{Architecture, Backend, CpuBackend};

fn time(name: &str, iters: usize, mut f: impl FnMut()) {
    if let Some(only) = std::env::args().nth(2)
        && !name.starts_with(&only)
    {
        return;
    }
    f(); // warm-up
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!("{name} {:.4} {:.4}", t[t.len() / 2], t[0]);
}

fn main() -> saeplug::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let (d, ds) = (2304, 16384);
    let sae = Arc::new(random_sae(d, ds, Architecture::Standard, 1)?);
    let cpu = CpuBackend::default();
    let mut rng = Rng::new(2);
    let x64 = rng.normal_vec(64 * d, 1.0);
    let mut f64_ = vec![0.0f32; 64 * ds];
    time("encode_b64", rounds, || {
        cpu.encode(&sae, &x64, &mut f64_).expect("encode");
    });
    let x1 = rng.normal_vec(d, 1.0);
    let mut f1 = vec![0.0f32; ds];
    time("encode_b1", rounds * 5, || {
        cpu.encode(&sae, &x1, &mut f1).expect("encode");
    });
    let mut recon = vec![0.0f32; 64 * d];
    time("decode_b64", rounds, || {
        cpu.decode(&sae, &f64_, &[], &mut recon).expect("decode");
    });
    let mp = SolverParams::new(Solver::MatchingPursuit, 8);
    time("ito_mp_k8_64rows", rounds.div_ceil(4), || {
        cpu.solve(&sae, &x64, &mp).expect("solve");
    });
    let xs = sparse_data(&sae, 8, 16, 0.01, 3);
    for (name, s) in [
        ("ito_gp_k32_8rows", Solver::GradientPursuit),
        ("ito_omp_k32_8rows", Solver::OrthogonalMatchingPursuit),
    ] {
        let p = SolverParams::new(s, 32);
        time(name, rounds.div_ceil(4), || {
            cpu.solve(&sae, &xs, &p).expect("solve");
        });
    }
    // A hook at batch 1 (one generated token): one clamped feature, and full
    // replacement by the reconstruction.
    let mut clamp = Hook::new(Arc::clone(&sae), 6);
    clamp.positions = Positions::All;
    clamp.edits = vec![Edit::Clamp {
        feature: 123,
        value: 4.0,
    }];
    let mut y = x1.clone();
    time("hook_clamp1_b1", rounds * 50, || {
        y.copy_from_slice(&x1);
        clamp.apply(&cpu, &mut y, 0).expect("hook");
    });
    let mut replace = Hook::new(Arc::clone(&sae), 6);
    replace.replace = Replace::ReconstructionOnly;
    time("hook_replace_b1", rounds * 5, || {
        y.copy_from_slice(&x1);
        replace.apply(&cpu, &mut y, 0).expect("hook");
    });
    Ok(())
}
