//! ITO solvers against independent f64 references, planted-support recovery,
//! degenerate inputs, and GDM's finding (GP beats the encoder at equal L0).

mod common;

use common::*;
use saeplug::reference::{RefSolver, ito_trace};
use saeplug::solve::{Solver, SolverParams, solve};
use saeplug::synthetic::{Rng, random_sae, sparse_data};
use saeplug::weights::Tensor;
use saeplug::{Architecture, Backend, CpuBackend, ErrorKind, Sae, SaeWeights};

/// A copy of `sae` with decoder rows scaled by random factors in [0.5, 2).
fn non_unit(sae: &Sae, seed: u64) -> Sae {
    let w = sae.weights();
    let d = sae.d_in();
    let mut rng = Rng::new(seed);
    let mut wd = w.w_dec.as_slice().to_vec();
    for row in wd.chunks_exact_mut(d) {
        let s = (0.5 + 1.5 * rng.uniform()) as f32;
        row.iter_mut().for_each(|v| *v *= s);
    }
    let own =
        |t: &Tensor| Tensor::owned(t.name(), t.shape().to_vec(), t.as_slice().to_vec()).unwrap();
    Sae::from_parts(
        sae.config().clone(),
        SaeWeights {
            w_enc: own(&w.w_enc),
            w_enc_transposed: w.w_enc_transposed,
            b_enc: own(&w.b_enc),
            w_dec: Tensor::owned("W_dec", w.w_dec.shape().to_vec(), wd).unwrap(),
            b_dec: own(&w.b_dec),
            threshold: w.threshold.as_ref().map(own),
            r_mag: None,
            b_mag: None,
        },
    )
    .unwrap()
}

fn params(solver: Solver, k: usize, nonneg: bool) -> SolverParams {
    let mut p = SolverParams::new(solver, k);
    p.nonnegative = nonneg;
    p
}

#[test]
fn mp_gp_omp_match_f64_reference_step_by_step() {
    let cpu = CpuBackend::new(2);
    let base = random_sae(24, 2200, Architecture::Standard, 4).unwrap(); // > 2 GEMM column blocks
    for sae in [&base, &non_unit(&base, 9)] {
        let mut x = sparse_data(sae, 3, 4, 0.05, 6);
        x.iter_mut()
            .zip(Rng::new(2).normal_vec(72, 0.2))
            .for_each(|(a, b)| *a += b);
        for (solver, rs) in [
            (Solver::MatchingPursuit, RefSolver::Mp),
            (Solver::GradientPursuit, RefSolver::Gp),
            (Solver::OrthogonalMatchingPursuit, RefSolver::Omp),
        ] {
            for nonneg in [true, false] {
                // OMP's nonnegative variant is an active-set heuristic; the plain
                // least-squares reference covers the signed one.
                if rs == RefSolver::Omp && nonneg {
                    continue;
                }
                for r in 0..3 {
                    let xr = &x[r * 24..(r + 1) * 24];
                    let trace = ito_trace(sae, xr, rs, 8, nonneg);
                    for (t, want) in trace.iter().enumerate() {
                        let (codes, info) =
                            solve(&cpu, sae, xr, &params(solver, t + 1, nonneg)).unwrap();
                        let got = codes.to_dense();
                        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                        let e = max_abs_diff64(&got, want);
                        assert!(
                            e <= 1e-4 * scale,
                            "{solver:?} nonneg={nonneg} row {r} step {}: err {e}",
                            t + 1
                        );
                        assert_eq!(info.iters[0] as usize, t + 1);
                    }
                }
            }
        }
    }
}

#[test]
fn omp_residual_is_orthogonal_to_its_support() {
    let sae = random_sae(32, 300, Architecture::Standard, 5).unwrap();
    let x = Rng::new(3).normal_vec(4 * 32, 1.0);
    let (codes, info) = solve(
        &CpuBackend::default(),
        &sae,
        &x,
        &params(Solver::OrthogonalMatchingPursuit, 10, false),
    )
    .unwrap();
    let mut recon = vec![0.0; x.len()];
    CpuBackend::default()
        .decode_sparse(&sae, &codes, &mut recon)
        .unwrap();
    let wd = sae.weights().w_dec.as_slice();
    for r in 0..4 {
        let res: Vec<f64> = (0..32)
            .map(|j| (x[r * 32 + j] - recon[r * 32 + j]) as f64)
            .collect();
        let norm = res.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            (norm - info.residual[r] as f64).abs() < 1e-3,
            "reported residual"
        );
        for &i in codes.row(r).0 {
            let c: f64 = (0..32)
                .map(|j| res[j] * wd[i as usize * 32 + j] as f64)
                .sum();
            assert!(c.abs() < 1e-4, "row {r}: residual . d_{i} = {c}");
        }
    }
}

#[test]
fn planted_supports_are_recovered_exactly() {
    let cpu = CpuBackend::default();
    let base = random_sae(256, 512, Architecture::Standard, 17).unwrap();
    for sae in [&base, &non_unit(&base, 3)] {
        let (d, n) = (256, 512);
        let mut rng = Rng::new(8);
        let wd = sae.weights().w_dec.as_slice();
        let b = sae.weights().b_dec.as_slice();
        let rows = 40;
        let mut x = vec![0.0f32; rows * d];
        let mut truth = Vec::new();
        for r in 0..rows {
            let mut s: Vec<usize> = Vec::new();
            while s.len() < 4 {
                let i = (rng.next_u64() % n as u64) as usize;
                if !s.contains(&i) {
                    s.push(i);
                }
            }
            s.sort();
            x[r * d..(r + 1) * d].copy_from_slice(b);
            for &i in &s {
                let c = (1.0 + rng.uniform()) as f32;
                for j in 0..d {
                    x[r * d + j] += c * wd[i * d + j];
                }
            }
            truth.push(s);
        }
        for solver in [Solver::OrthogonalMatchingPursuit, Solver::GradientPursuit] {
            let (codes, info) = solve(&cpu, sae, &x, &params(solver, 4, true)).unwrap();
            for (r, want) in truth.iter().enumerate() {
                let got: Vec<usize> = codes.row(r).0.iter().map(|&i| i as usize).collect();
                assert_eq!(&got, want, "{solver:?} row {r}");
            }
            if solver == Solver::OrthogonalMatchingPursuit {
                assert!(
                    info.residual.iter().all(|&v| v < 1e-3),
                    "OMP fits planted signals exactly"
                );
            }
        }
    }
}

#[test]
fn degenerate_inputs() {
    let cpu = CpuBackend::default();
    let sae = random_sae(16, 40, Architecture::Standard, 1).unwrap();
    // Zero signal (x == b_dec): no codes, no steps.
    let x = sae.weights().b_dec.as_slice().to_vec();
    for solver in [
        Solver::MatchingPursuit,
        Solver::OrthogonalMatchingPursuit,
        Solver::GradientPursuit,
    ] {
        let (codes, info) = solve(&cpu, &sae, &x, &params(solver, 5, true)).unwrap();
        assert!(codes.indices.is_empty());
        assert_eq!(info.iters, vec![0]);
        assert_eq!(info.residual, vec![0.0]);
    }
    // k > d_sae, k = 0, bad tol, NaN.
    let e = solve(&cpu, &sae, &x, &params(Solver::GradientPursuit, 41, true)).unwrap_err();
    assert!(e.to_string().contains("k_max = 41 > d_sae = 40"), "{e}");
    assert!(solve(&cpu, &sae, &x, &params(Solver::GradientPursuit, 0, true)).is_err());
    let mut p = params(Solver::GradientPursuit, 3, true);
    p.tol = f32::NAN;
    assert!(solve(&cpu, &sae, &x, &p).is_err());
    let mut xn = x.clone();
    xn[0] = f32::NAN;
    assert_eq!(
        solve(&cpu, &sae, &xn, &params(Solver::MatchingPursuit, 3, true))
            .unwrap_err()
            .kind(),
        ErrorKind::NonFinite
    );
    // Empty batch.
    let (c, i) = solve(&cpu, &sae, &[], &params(Solver::GradientPursuit, 3, true)).unwrap();
    assert_eq!((c.n_rows(), i.iters.len()), (0, 0));
    // A tolerance stops rows early.
    let xs = sparse_data(&sae, 6, 2, 0.0, 4);
    let mut p = params(Solver::OrthogonalMatchingPursuit, 10, true);
    p.tol = 1e-3;
    let (_, info) = solve(&cpu, &sae, &xs, &p).unwrap();
    assert!(info.iters.iter().all(|&k| k < 10), "{:?}", info.iters);
    assert!(info.residual.iter().all(|&r| r < 1e-3));
    // An all-zero dictionary: <C, C> = 0 and no atom to select, never a NaN.
    let w = sae.weights();
    let own =
        |t: &Tensor| Tensor::owned(t.name(), t.shape().to_vec(), t.as_slice().to_vec()).unwrap();
    let zero = Sae::from_parts(
        sae.config().clone(),
        SaeWeights {
            w_enc: own(&w.w_enc),
            w_enc_transposed: false,
            b_enc: own(&w.b_enc),
            w_dec: Tensor::owned("W_dec", vec![40, 16], vec![0.0; 640]).unwrap(),
            b_dec: own(&w.b_dec),
            threshold: None,
            r_mag: None,
            b_mag: None,
        },
    )
    .unwrap();
    for solver in [
        Solver::MatchingPursuit,
        Solver::OrthogonalMatchingPursuit,
        Solver::GradientPursuit,
    ] {
        let (codes, info) = solve(&cpu, &zero, &xs, &params(solver, 4, false)).unwrap();
        assert!(codes.indices.is_empty());
        assert!(info.residual.iter().all(|r| r.is_finite()));
    }
}

#[test]
fn gradient_pursuit_beats_the_encoder_at_equal_l0() {
    // GDM: ITO on an SAE's decoder beats its own encoder on L0 vs reconstruction.
    let report = saeplug::sweep::sweep_synthetic(&CpuBackend::new(0), &[4, 8, 16], 7).unwrap();
    eprintln!("{}", report.table());
    let enc = report.encoder.clone();
    let k = enc.l0.round().max(1.0) as usize;
    let gp = saeplug::sweep::run_solver(&CpuBackend::new(0), &report, Solver::GradientPursuit, k)
        .unwrap();
    assert!(
        gp.l0 <= enc.l0 + 0.5,
        "GP L0 {} vs encoder {}",
        gp.l0,
        enc.l0
    );
    assert!(
        gp.fvu < enc.fvu,
        "GP FVU {} should beat the encoder's {} at L0 {}",
        gp.fvu,
        enc.fvu,
        enc.l0
    );
}

#[test]
fn ito_as_the_encoder_of_steering_edits() {
    use saeplug::steer::{Edit, FeatureSource, apply_edits_with};
    let cpu = CpuBackend::default();
    let sae = random_sae(64, 256, Architecture::Standard, 3).unwrap();
    let x = sparse_data(&sae, 4, 3, 0.01, 2);
    let p = params(Solver::OrthogonalMatchingPursuit, 6, true);
    let (codes, _) = solve(&cpu, &sae, &x, &p).unwrap();
    // Ablate row 1's largest ITO feature: x' = x - a_i d_i exactly.
    let (idx, val) = codes.row(1);
    let (pos, _) = val
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |b, (i, v)| if *v > b.1 { (i, *v) } else { b });
    let (i, a) = (idx[pos] as usize, val[pos]);
    let mut xs = x.clone();
    apply_edits_with(
        &cpu,
        &sae,
        &mut xs,
        &[Edit::Ablate { feature: i }],
        Some(&[1]),
        &FeatureSource::Solver(p.clone()),
    )
    .unwrap();
    let wd = sae.weights().w_dec.as_slice();
    for j in 0..64 {
        let want = x[64 + j] - a * wd[i * 64 + j];
        assert!((xs[64 + j] - want).abs() < 1e-5);
    }
    assert_eq!(&xs[..64], &x[..64], "other rows untouched");
    // Re-solving the ablated row no longer uses that atom much.
    let (c2, _) = solve(&cpu, &sae, &xs[64..128], &p).unwrap();
    let after = c2
        .row(0)
        .0
        .iter()
        .position(|&j| j as usize == i)
        .map_or(0.0, |q| c2.row(0).1[q]);
    assert!(after < 0.05 * a, "feature {i}: {a} -> {after}");
}
