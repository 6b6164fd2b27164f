//! The operations every backend runs since the layering change, GPU against CPU:
//! ITO solves (OMP on the GPU: correlations in kernels, Cholesky on the host),
//! steering edits whose activations come from a solver or from a top-k encoder,
//! overflow reported as NonFinite, and failing calls leaving their buffers alone.

mod common;

use common::*;
use saeplug::solve::{Solver, SolverParams};
use saeplug::steer::{Edit, FeatureSource};
use saeplug::synthetic::{Rng, random_sae, sparse_data};
use saeplug::{Architecture, Backend, CpuBackend, ErrorKind, TopKOrder, WgpuOptions};

#[test]
fn gpu_solvers_equal_cpu_solvers() {
    let Some(gpu) = gpu_or_fail(WgpuOptions::default()) else {
        return;
    };
    let cpu = CpuBackend::new(2);
    let sae = random_sae(48, 200, Architecture::Standard, 11).unwrap();
    let x = sparse_data(&sae, 7, 4, 0.01, 3);
    for solver in [
        Solver::MatchingPursuit,
        Solver::OrthogonalMatchingPursuit,
        Solver::GradientPursuit,
    ] {
        for nonneg in [true, false] {
            let mut p = SolverParams::new(solver, 6);
            p.nonnegative = nonneg;
            let (c, ci) = cpu.solve(&sae, &x, &p).unwrap();
            let (g, gi) = gpu.solve(&sae, &x, &p).unwrap();
            assert_eq!(g.indices, c.indices, "{solver:?} nonneg {nonneg}: supports");
            assert_eq!(g.row_offsets, c.row_offsets);
            let e = max_abs_diff(&g.values, &c.values);
            assert!(
                e <= 1e-4,
                "{solver:?} nonneg {nonneg}: coefficients differ by {e}"
            );
            let e = max_abs_diff(&gi.residual, &ci.residual);
            assert!(e <= 1e-4, "{solver:?}: residuals differ by {e}");
        }
    }
}

fn topk_sae() -> saeplug::Sae {
    random_sae(
        40,
        160,
        Architecture::TopK {
            k: 8,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: true,
        },
        5,
    )
    .unwrap()
}

#[test]
fn gpu_steering_from_solver_and_topk_equals_cpu() {
    let Some(gpu) = gpu_or_fail(WgpuOptions::default()) else {
        return;
    };
    let cpu = CpuBackend::new(2);
    for sae in [
        random_sae(40, 160, Architecture::Standard, 4).unwrap(),
        topk_sae(),
    ] {
        let x = Rng::new(9).normal_vec(5 * 40, 1.0);
        // The feature that fires most on row 0, so clamp/ablate/scale move something.
        let mut f = vec![0.0; 5 * 160];
        cpu.encode(&sae, &x, &mut f).unwrap();
        let top = (0..160).max_by(|&a, &b| f[a].total_cmp(&f[b])).unwrap();
        let edits = [
            Edit::Clamp {
                feature: top,
                value: 3.0,
            },
            Edit::Ablate { feature: 7 },
            Edit::Scale {
                feature: 12,
                factor: 2.5,
            },
            Edit::AddFeature {
                feature: 30,
                coef: -1.0,
            },
        ];
        let sources = [
            FeatureSource::Encoder,
            FeatureSource::Solver(SolverParams::new(Solver::GradientPursuit, 8)),
            FeatureSource::Solver(SolverParams::new(Solver::OrthogonalMatchingPursuit, 8)),
        ];
        for source in &sources {
            for rows in [None, Some(&[0usize, 2, 4][..])] {
                let (mut xc, mut xg) = (x.clone(), x.clone());
                cpu.steer(&sae, &mut xc, &edits, rows, source).unwrap();
                gpu.steer(&sae, &mut xg, &edits, rows, source).unwrap();
                let e = max_abs_diff(&xg, &xc);
                let arch = sae.config().architecture;
                assert!(e <= 1e-4, "{arch:?} {source:?} {rows:?}: gpu vs cpu {e}");
                assert!(
                    max_abs_diff(&xc, &x) > 0.05,
                    "{arch:?} {source:?}: no change"
                );
                if rows.is_some() {
                    assert_eq!(&xg[40..80], &x[40..80], "unselected row changed");
                }
            }
        }
        // On the top-k SAE, clamping to the current value is a no-op on the GPU too.
        let cur = cpu.feature_activation(&sae, &x[..40], top).unwrap();
        let mut xg = x[..40].to_vec();
        let clamp = [Edit::Clamp {
            feature: top,
            value: cur,
        }];
        gpu.steer(&sae, &mut xg, &clamp, None, &FeatureSource::Encoder)
            .unwrap();
        assert!(max_abs_diff(&xg, &x[..40]) <= 1e-4);
    }
}

#[test]
fn gpu_overflow_is_non_finite_and_failures_change_nothing() {
    let Some(gpu) = gpu_or_fail(WgpuOptions::default()) else {
        return;
    };
    let sae = random_sae(16, 64, Architecture::Standard, 5).unwrap();
    let mut f = vec![7.0f32; 64];
    let err = gpu.encode(&sae, &[3.0e38; 16], &mut f).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonFinite, "{err}");
    let mut out = vec![0.0; 16];
    let err = gpu.decode(&sae, &[3.0e38; 64], &[], &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonFinite, "{err}");
    // A steer call that fails (overflow, or a bad edit after a good one) leaves x.
    let x = Rng::new(1).normal_vec(2 * 16, 1.0);
    for edits in [
        vec![Edit::AddVector {
            vector: vec![3.0e38; 16],
            coef: 2.0,
        }],
        vec![
            Edit::AddFeature {
                feature: 1,
                coef: 1.0,
            },
            Edit::Ablate { feature: 64 },
        ],
    ] {
        let mut y = x.clone();
        assert!(
            gpu.steer(&sae, &mut y, &edits, None, &FeatureSource::Encoder)
                .is_err()
        );
        assert_eq!(y, x);
    }
}
