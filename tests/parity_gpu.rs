//! wgpu backend against the CPU backend and the f64 reference: every kernel, odd
//! shapes (not multiples of the 64 tile or 256 workgroup), forced weight chunking,
//! empty batches, the SAELens fixtures, and steering.

mod common;

use common::*;
use saeplug::steer::Edit;
use saeplug::synthetic::{Rng, random_sae, sparse_data};
use saeplug::{Architecture, Backend, CpuBackend, ErrorKind, Sae, TopKOrder, WgpuOptions};

fn archs() -> Vec<Architecture> {
    let topk = |k, order, rescale| Architecture::TopK {
        k,
        order,
        rescale_by_decoder_norm: rescale,
    };
    vec![
        Architecture::Standard,
        Architecture::JumpRelu,
        Architecture::Gated,
        topk(9, TopKOrder::TopKThenRelu, true),
        topk(9, TopKOrder::ReluThenTopK, false),
        topk(9, TopKOrder::Signed, false),
        topk(333, TopKOrder::TopKThenRelu, false), // k == d_sae
        topk(9, TopKOrder::GroupMax, false),
    ]
}

fn inputs(sae: &Sae, rows: usize, seed: u64) -> Vec<f32> {
    let mut x = sparse_data(sae, rows, 5, 0.05, seed);
    let noise = Rng::new(seed + 100).normal_vec(x.len(), 0.3);
    x.iter_mut().zip(noise).for_each(|(a, b)| *a += b);
    x
}

#[test]
fn gpu_matches_cpu_and_reference_all_kernels() {
    // 16 KiB chunks: W_enc in 64-column chunks, W_dec in 110-row chunks.
    let Some(gpu) = gpu_or_fail(WgpuOptions {
        max_chunk_bytes: Some(16384),
        ..Default::default()
    }) else {
        return;
    };
    let cpu = CpuBackend::new(2);
    let (d, n_feat) = (37, 333);
    for arch in archs() {
        // 333 = 37 x 9: groupmax with k = 9 has groups of 37.
        let sae = random_sae(d, n_feat, arch, 21).unwrap();
        for rows in [1, 5, 70] {
            let x = inputs(&sae, rows, rows as u64);
            let mut fc = vec![0.0; rows * n_feat];
            let mut fg = vec![0.0; rows * n_feat];
            let dc = cpu.encode(&sae, &x, &mut fc).unwrap();
            let dg = gpu.encode(&sae, &x, &mut fg).unwrap();
            assert_eq!(dc, dg);
            let e = max_abs_diff(&fg, &fc);
            assert!(e <= 1e-4, "{arch:?} rows {rows}: gpu vs cpu encode {e}");
            let e = max_abs_diff64(&fg, &saeplug::reference::encode(&sae, &x));
            assert!(e <= 1e-4, "{arch:?} rows {rows}: gpu vs f64 encode {e}");
            let l0 = |f: &[f32]| f.iter().filter(|v| **v != 0.0).count();
            assert_eq!(l0(&fg), l0(&fc), "{arch:?}: support differs");
            assert!(l0(&fg) > 0, "{arch:?}: nothing fired");
            // Dense decode.
            let mut rc = vec![0.0; rows * d];
            let mut rg = vec![0.0; rows * d];
            cpu.decode(&sae, &fc, &dc, &mut rc).unwrap();
            gpu.decode(&sae, &fc, &dc, &mut rg).unwrap();
            let e = max_abs_diff(&rg, &rc);
            assert!(e <= 1e-4, "{arch:?}: dense decode {e}");
            let e = max_abs_diff64(&rg, &saeplug::reference::reconstruct(&sae, &x));
            assert!(e <= 1e-3, "{arch:?}: gpu decode vs f64 {e}");
            // Sparse encode + decode.
            let codes = gpu.encode_sparse(&sae, &x).unwrap();
            assert_eq!(
                codes.indices,
                cpu.encode_sparse(&sae, &x).unwrap().indices,
                "{arch:?}"
            );
            let mut rs = vec![0.0; rows * d];
            gpu.decode_sparse(&sae, &codes, &mut rs).unwrap();
            let e = max_abs_diff(&rs, &rc);
            assert!(e <= 1e-4, "{arch:?}: sparse decode {e}");
        }
    }
}

#[test]
fn gpu_edge_cases() {
    let Some(gpu) = gpu_or_fail(WgpuOptions::default()) else {
        return;
    };
    let sae = random_sae(8, 16, Architecture::Standard, 1).unwrap();
    // Empty batches.
    assert!(gpu.encode(&sae, &[], &mut []).unwrap().is_empty());
    let c = gpu.encode_sparse(&sae, &[]).unwrap();
    assert_eq!(c.n_rows(), 0);
    gpu.decode_sparse(&sae, &c, &mut []).unwrap();
    gpu.decode(&sae, &[], &[], &mut []).unwrap();
    // NaN and bad lengths are refused before any dispatch.
    let mut x = vec![0.1f32; 8];
    x[2] = f32::NAN;
    assert_eq!(
        gpu.encode(&sae, &x, &mut [0.0; 16]).unwrap_err().kind(),
        ErrorKind::NonFinite
    );
    assert_eq!(
        gpu.encode(&sae, &[0.0; 9], &mut [0.0; 16])
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    // k > d_sae is refused when the SAE is built, so no GPU call can see it.
    let e = random_sae(
        8,
        16,
        Architecture::TopK {
            k: 17,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: false,
        },
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // A top-k row where fewer than k pre-activations are positive, with ties at 0.
    let tk = random_sae(
        8,
        300,
        Architecture::TopK {
            k: 290,
            order: TopKOrder::ReluThenTopK,
            rescale_by_decoder_norm: false,
        },
        2,
    )
    .unwrap();
    let x = inputs(&tk, 3, 9);
    let mut a = vec![0.0; 900];
    let mut b = vec![0.0; 900];
    CpuBackend::default().encode(&tk, &x, &mut a).unwrap();
    gpu.encode(&tk, &x, &mut b).unwrap();
    assert!(max_abs_diff(&a, &b) <= 1e-4);
}

#[test]
fn saelens_fixtures_through_gpu() {
    let Some(gpu) = gpu_or_fail(WgpuOptions::default()) else {
        return;
    };
    for (name, dir) in fixture_cases() {
        let sae = Sae::open(&dir).unwrap();
        let io = fixture_io(&dir);
        let mut f = vec![0.0; io.n * sae.d_sae()];
        let dn = gpu.encode(&sae, &io.x, &mut f).unwrap();
        let e = max_abs_diff(&f, &io.feature_acts);
        assert!(e <= 1e-4, "{name}: gpu feature_acts err {e}");
        let mut r = vec![0.0; io.x.len()];
        gpu.decode(&sae, &f, &dn, &mut r).unwrap();
        let e = max_abs_diff(&r, &io.recon);
        assert!(e <= 1e-4, "{name}: gpu recon err {e}");
        let codes = gpu.encode_sparse(&sae, &io.x).unwrap();
        gpu.decode_sparse(&sae, &codes, &mut r).unwrap();
        assert!(
            max_abs_diff(&r, &io.recon) <= 1e-4,
            "{name}: gpu sparse recon"
        );
    }
}

#[test]
fn gpu_steering_matches_cpu() {
    let Some(gpu) = gpu_or_fail(WgpuOptions::default()) else {
        return;
    };
    let cpu = CpuBackend::default();
    for arch in [
        Architecture::Standard,
        Architecture::JumpRelu,
        Architecture::Gated,
    ] {
        let sae = random_sae(45, 130, arch, 8).unwrap();
        let x = inputs(&sae, 11, 3);
        let (f_top, _) = {
            let c = cpu.encode_sparse(&sae, &x[..45]).unwrap();
            (c.indices.first().copied().unwrap_or(0) as usize, ())
        };
        let v = Rng::new(1).normal_vec(45, 1.0);
        let edits = vec![
            Edit::Clamp {
                feature: f_top,
                value: 3.5,
            },
            Edit::Ablate { feature: 7 },
            Edit::Scale {
                feature: 12,
                factor: 2.5,
            },
            Edit::AddFeature {
                feature: 100,
                coef: -1.25,
            },
            Edit::AddVector {
                vector: v,
                coef: 0.5,
            },
        ];
        for rows in [None, Some(&[0usize, 3, 10][..])] {
            let mut xc = x.clone();
            let mut xg = x.clone();
            cpu.steer(&sae, &mut xc, &edits, rows, &Default::default())
                .unwrap();
            gpu.steer(&sae, &mut xg, &edits, rows, &Default::default())
                .unwrap();
            let e = max_abs_diff(&xg, &xc);
            assert!(e <= 1e-4, "{arch:?} {rows:?}: steer gpu vs cpu {e}");
            assert!(max_abs_diff(&xc, &x) > 0.1, "edits changed nothing");
            if let Some(r) = rows {
                // Unselected rows are untouched.
                assert_eq!(&xg[45..90], &x[45..90]);
                assert!(r.contains(&0));
            }
        }
        // Clamping the feature to its current value changes nothing.
        let cur = saeplug::steer::feature_activation(&cpu, &sae, &x[..45], f_top).unwrap();
        let mut xg = x[..45].to_vec();
        gpu.steer(
            &sae,
            &mut xg,
            &[Edit::Clamp {
                feature: f_top,
                value: cur,
            }],
            None,
            &Default::default(),
        )
        .unwrap();
        assert!(max_abs_diff(&xg, &x[..45]) <= 1e-5);
    }
}

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
    for arch in archs() {
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
