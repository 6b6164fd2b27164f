//! What only the wgpu backend has: ITO on the GPU against the CPU solvers (with
//! W_dec and W_dec^T in several chunks) and f16 encoder weights. Encode, decode,
//! steering, edge cases and fixtures run on every backend from one body each in
//! `parity_cpu.rs` (`backend_test!`).

mod common;

use common::*;
use saeplug::synthetic::{random_sae, sparse_data};
use saeplug::{Architecture, Backend, CpuBackend, ErrorKind, WgpuOptions};

#[test]
fn gpu_ito_matches_cpu() {
    use saeplug::solve::{Solver, SolverParams, solve};
    // 16 KiB binding cap: W_dec in 4 row chunks, W_dec^T in 5 column chunks.
    let Some(gpu) = gpu_or_fail(WgpuOptions {
        max_chunk_bytes: Some(16 * 1024),
        ..Default::default()
    }) else {
        return;
    };
    let cpu = CpuBackend::new(2);
    let sae = random_sae(48, 300, Architecture::Standard, 13).unwrap();
    // Planted sparse signals (well-separated correlations: no near-ties in argmax).
    let x = sparse_data(&sae, 37, 4, 0.01, 5);
    for solver in [Solver::GradientPursuit, Solver::MatchingPursuit] {
        for nonneg in [true, false] {
            for k in [1, 3, 8] {
                let mut p = SolverParams::new(solver, k);
                p.nonnegative = nonneg;
                let (cc, ci) = solve(&cpu, &sae, &x, &p).unwrap();
                let (gc, gi) = gpu.solve(&sae, &x, &p).unwrap();
                assert_eq!(
                    gc.indices, cc.indices,
                    "{solver:?} nonneg {nonneg} k {k}: supports"
                );
                let e = max_abs_diff(&gc.values, &cc.values);
                assert!(
                    e <= 1e-4,
                    "{solver:?} nonneg {nonneg} k {k}: coefficients {e}"
                );
                assert_eq!(gi.iters, ci.iters, "{solver:?} k {k}: iterations");
                let e = max_abs_diff(&gi.residual, &ci.residual);
                assert!(e <= 1e-4, "{solver:?} k {k}: residuals {e}");
            }
        }
    }
    // Zero rows, OMP refusal, k > d_sae.
    let z = sae.weights().b_dec.as_slice().to_vec();
    let (c, i) = gpu
        .solve(&sae, &z, &SolverParams::new(Solver::GradientPursuit, 4))
        .unwrap();
    assert!(c.indices.is_empty() && i.iters == vec![0]);
    let e = gpu
        .solve(
            &sae,
            &x,
            &SolverParams::new(Solver::OrthogonalMatchingPursuit, 4),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let e = gpu
        .solve(&sae, &x, &SolverParams::new(Solver::GradientPursuit, 301))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn gpu_f16_weights_match_cpu_on_f16_representable_weights() {
    use saeplug::weights::Tensor;
    let Some(gpu) = gpu_or_fail(WgpuOptions {
        max_chunk_bytes: Some(16384),
        f16_weights: true,
        ..Default::default()
    }) else {
        return;
    };
    assert!(gpu.f16_weights());
    let cpu = CpuBackend::new(2);
    for arch in archs(333) {
        let base = random_sae(37, 333, arch, 5).unwrap();
        // Round W_enc to f16 so the only GPU/CPU difference is summation order.
        let w = base.weights();
        let rounded: Vec<f32> = w
            .w_enc
            .as_slice()
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect();
        let sae = with_encoder(
            &base,
            Tensor::owned("W_enc", w.w_enc.shape().to_vec(), rounded).unwrap(),
            false,
        );
        let x = inputs(&sae, 9, 4);
        let mut fc = vec![0.0; 9 * 333];
        let mut fg = vec![0.0; 9 * 333];
        cpu.encode(&sae, &x, &mut fc).unwrap();
        gpu.encode(&sae, &x, &mut fg).unwrap();
        let e = max_abs_diff(&fg, &fc);
        assert!(e <= 1e-4, "{arch:?}: f16-weight encode vs cpu {e}");
        assert!(fg.iter().any(|v| *v != 0.0));
    }
}
