//! Every backend against the f64 reference, one body per test: `backend_test!`
//! emits a `_cpu` variant (1, 2 and 3 threads) and a `_wgpu` variant of each (weights
//! bound in 64 KiB chunks, so several chunks per matrix). The shapes exercise
//! every code path: the CPU's column-blocked multi-threaded GEMM (d_sae > 2 blocks,
//! not a multiple of the block, nor of the GPU's 64 tile or 256 workgroup), the
//! small-batch kernels, several GPU row passes, the transposed encoder layout,
//! every architecture and top-k order, sparse vs dense agreement, empty batches,
//! refused inputs, the SAELens fixtures, steering and the ITO solvers.

mod common;

use common::*;
use saeplug::reference::{RefSolver, ito_trace};
use saeplug::solve::{Solver, SolverParams};
use saeplug::steer::Edit;
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, ErrorKind, Sae, TopKOrder, WgpuOptions};

/// 64 KiB weight chunks: W_enc in 6 column chunks, W_dec in 5 row chunks below.
fn chunked() -> WgpuOptions {
    WgpuOptions {
        max_chunk_bytes: Some(64 << 10),
        ..Default::default()
    }
}

fn matches_f64_reference(b: &dyn Backend) {
    let name = b.name();
    let (d, n_feat) = (37, 2133); // 2133 = 9 x 237
    for arch in archs(n_feat) {
        let base = random_sae(d, n_feat, arch, 11).unwrap();
        for sae in [&base, &transposed(&base)] {
            // 1 row: the small-batch paths; 6: blocked GEMM; 33: several GPU passes.
            for rows in [1, 6, 33] {
                let x = inputs(sae, rows, rows as u64);
                let mut f = vec![0.0; rows * n_feat];
                let dn = b.encode(sae, &x, &mut f).unwrap();
                let e = max_abs_diff64(&f, &saeplug::reference::encode(sae, &x));
                assert!(e <= 1e-4, "{name} {arch:?} rows {rows}: encode err {e}");
                assert!(
                    f.iter().any(|v| *v != 0.0),
                    "{name} {arch:?}: nothing fired"
                );
                // Decode of these very codes, against f64.
                let mut r = vec![0.0; rows * d];
                b.decode(sae, &f, &dn, &mut r).unwrap();
                let want: Vec<f64> = f
                    .chunks_exact(n_feat)
                    .flat_map(|row| {
                        let row: Vec<f64> = row.iter().map(|v| *v as f64).collect();
                        saeplug::reference::decode_row(sae, &row, (1.0, 0.0))
                    })
                    .collect();
                let e = max_abs_diff64(&r, &want);
                assert!(e <= 1e-4, "{name} {arch:?} rows {rows}: decode err {e}");
                let e = max_abs_diff64(&r, &saeplug::reference::reconstruct(sae, &x));
                assert!(e <= 1e-3, "{name} {arch:?}: reconstruction err {e}");
                // Sparse encode equals the dense one; sparse decode the dense decode.
                let codes = b.encode_sparse(sae, &x).unwrap();
                assert_eq!(codes.to_dense(), f, "{name} {arch:?}: sparse != dense");
                let mut r2 = vec![0.0; rows * d];
                b.decode_sparse(sae, &codes, &mut r2).unwrap();
                let e = max_abs_diff(&r2, &r);
                assert!(e <= 1e-4, "{name} {arch:?}: sparse decode {e}");
            }
        }
    }
}
backend_test!(
    matches_f64_reference,
    matches_f64_reference_cpu,
    matches_f64_reference_wgpu,
    chunked()
);

fn edge_cases(b: &dyn Backend) {
    let name = b.name();
    let sae = random_sae(8, 16, Architecture::Standard, 1).unwrap();
    // Empty batches.
    assert!(b.encode(&sae, &[], &mut []).unwrap().is_empty());
    let c = b.encode_sparse(&sae, &[]).unwrap();
    assert_eq!(c.n_rows(), 0);
    b.decode_sparse(&sae, &c, &mut []).unwrap();
    b.decode(&sae, &[], &[], &mut []).unwrap();
    // NaN and bad lengths are refused before any work, and the output is untouched.
    let mut x = vec![0.1f32; 8];
    x[2] = f32::NAN;
    let mut out = [3.0f32; 16];
    let e = b.encode(&sae, &x, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{name}: {e}");
    assert_eq!(out, [3.0; 16], "{name}: a refused encode wrote its output");
    let e = b.encode(&sae, &[0.0; 9], &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name}: {e}");
    let e = b.encode(&sae, &[0.0; 8], &mut out[..15]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name}: {e}");
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
    let mut f = vec![0.0; 900];
    b.encode(&tk, &x, &mut f).unwrap();
    let e = max_abs_diff64(&f, &saeplug::reference::encode(&tk, &x));
    assert!(e <= 1e-4, "{name}: top-k with ties at 0: {e}");
    // Top-k keeps at most k, and exactly k when enough are positive.
    let tk = random_sae(
        16,
        64,
        Architecture::TopK {
            k: 4,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: false,
        },
        5,
    )
    .unwrap();
    let x = saeplug::synthetic::sparse_data(&tk, 20, 8, 0.0, 3);
    let codes = b.encode_sparse(&tk, &x).unwrap();
    for r in 0..20 {
        let (idx, _) = codes.row(r);
        let positive = saeplug::reference::encode(&tk, &x[r * 16..(r + 1) * 16])
            .iter()
            .filter(|v| **v > 0.0)
            .count();
        assert_eq!(idx.len(), positive.min(4), "{name}: row {r}");
    }
}
backend_test!(edge_cases, edge_cases_cpu, edge_cases_wgpu);

fn saelens_fixtures(b: &dyn Backend) {
    let name = b.name();
    for (case, dir) in fixture_cases() {
        let sae = Sae::open(&dir).unwrap();
        let io = fixture_io(&dir);
        let mut f = vec![0.0; io.n * sae.d_sae()];
        let dn = b.encode(&sae, &io.x, &mut f).unwrap();
        let e = max_abs_diff(&f, &io.feature_acts);
        assert!(e <= 1e-4, "{name} {case}: feature_acts err {e}");
        let mut r = vec![0.0; io.x.len()];
        b.decode(&sae, &f, &dn, &mut r).unwrap();
        let e = max_abs_diff(&r, &io.recon);
        assert!(e <= 1e-4, "{name} {case}: recon err {e}");
        let codes = b.encode_sparse(&sae, &io.x).unwrap();
        b.decode_sparse(&sae, &codes, &mut r).unwrap();
        let e = max_abs_diff(&r, &io.recon);
        assert!(e <= 1e-4, "{name} {case}: sparse recon err {e}");
    }
}
backend_test!(
    saelens_fixtures,
    saelens_fixtures_cpu,
    saelens_fixtures_wgpu
);

/// The documented edit semantics in f64, from the reference encoder: every edit
/// reads the unedited row's activations; `x += delta_i d_i` (`delta_i / ||d_i||`
/// for clamp/ablate/scale on top-k SAEs that rescale by decoder norm).
fn steer_reference(sae: &Sae, x: &[f32], edits: &[Edit], rows: &[usize]) -> Vec<f64> {
    let d = sae.d_in();
    let wd = sae.weights().w_dec.as_slice();
    let rescale = matches!(
        sae.config().architecture,
        Architecture::TopK {
            rescale_by_decoder_norm: true,
            ..
        }
    );
    let mut y: Vec<f64> = x.iter().map(|v| *v as f64).collect();
    for &r in rows {
        let (f, _) = saeplug::reference::encode_row(sae, &x[r * d..(r + 1) * d]);
        let row = &mut y[r * d..(r + 1) * d];
        for e in edits {
            let (i, delta, scaled) = match e {
                Edit::AddVector { vector, coef } => {
                    row.iter_mut()
                        .zip(vector)
                        .for_each(|(o, v)| *o += (coef * v) as f64);
                    continue;
                }
                Edit::AddFeature { feature, coef } => (*feature, *coef as f64, false),
                Edit::Clamp { feature, value } => (*feature, *value as f64 - f[*feature], true),
                Edit::Ablate { feature } => (*feature, -f[*feature], true),
                Edit::Scale { feature, factor } => {
                    (*feature, (*factor as f64 - 1.0) * f[*feature], true)
                }
            };
            let di = &wd[i * d..(i + 1) * d];
            let norm = di.iter().map(|w| (*w as f64).powi(2)).sum::<f64>().sqrt();
            let delta = if scaled && rescale {
                delta / norm
            } else {
                delta
            };
            row.iter_mut()
                .zip(di)
                .for_each(|(o, w)| *o += delta * *w as f64);
        }
    }
    y
}

fn steering_matches_reference(b: &dyn Backend) {
    let name = b.name();
    let (d, n_feat, n) = (45, 135, 11);
    for arch in archs(n_feat) {
        let sae = random_sae(d, n_feat, arch, 8).unwrap();
        let x = inputs(&sae, n, 3);
        // A feature active on row 0, so the clamp moves it.
        let (f0, _) = saeplug::reference::encode_row(&sae, &x[..d]);
        let active = f0.iter().position(|v| *v > 0.0).unwrap_or(0);
        let v = Rng::new(1).normal_vec(d, 1.0);
        let edits = vec![
            Edit::Clamp {
                feature: active,
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
                vector: v.clone(),
                coef: 0.5,
            },
        ];
        let additive = vec![
            Edit::AddFeature {
                feature: 100,
                coef: -1.25,
            },
            Edit::AddVector {
                vector: v,
                coef: 0.5,
            },
        ];
        for edits in [&edits, &additive] {
            for rows in [None, Some(&[0usize, 3, 10][..])] {
                let mut y = x.clone();
                b.steer(&sae, &mut y, edits, rows, &Default::default())
                    .unwrap();
                let all: Vec<usize> = (0..n).collect();
                let want = steer_reference(&sae, &x, edits, rows.unwrap_or(&all));
                let e = max_abs_diff64(&y, &want);
                assert!(e <= 1e-4, "{name} {arch:?} {rows:?}: steer err {e}");
                assert!(max_abs_diff(&y, &x) > 0.1, "{name}: edits changed nothing");
                if rows.is_some() {
                    assert_eq!(&y[d..2 * d], &x[d..2 * d], "{name}: unselected row edited");
                }
            }
        }
        // Clamping a feature to its current value changes nothing.
        {
            let mut y = x[..d].to_vec();
            let cur = f0[active] as f32;
            let clamp = [Edit::Clamp {
                feature: active,
                value: cur,
            }];
            b.steer(&sae, &mut y, &clamp, None, &Default::default())
                .unwrap();
            let e = max_abs_diff(&y, &x[..d]);
            assert!(
                e <= 1e-5,
                "{name} {arch:?}: clamp to current value moved x by {e}"
            );
        }
    }
}
backend_test!(
    steering_matches_reference,
    steering_matches_reference_cpu,
    steering_matches_reference_wgpu
);

/// MP, GP and OMP (signed; its nonnegative variant is an active-set heuristic)
/// against the f64 step-by-step reference, batched over rows, for 1, 3 and 8 steps.
fn ito_matches_f64_reference(b: &dyn Backend) {
    let name = b.name();
    let (d, n_feat, n) = (48, 300, 5);
    let sae = random_sae(d, n_feat, Architecture::Standard, 13).unwrap();
    // Planted sparse signals (well-separated correlations: no near-ties in argmax).
    let x = saeplug::synthetic::sparse_data(&sae, n, 4, 0.01, 5);
    for (solver, rs) in [
        (Solver::MatchingPursuit, RefSolver::Mp),
        (Solver::GradientPursuit, RefSolver::Gp),
        (Solver::OrthogonalMatchingPursuit, RefSolver::Omp),
    ] {
        for nonneg in [true, false] {
            if rs == RefSolver::Omp && nonneg {
                continue;
            }
            for k in [1, 3, 8] {
                let mut p = SolverParams::new(solver, k);
                p.nonnegative = nonneg;
                let (codes, info) = b.solve(&sae, &x, &p).unwrap();
                let got = codes.to_dense();
                for r in 0..n {
                    let trace = ito_trace(&sae, &x[r * d..(r + 1) * d], rs, k, nonneg);
                    let want = trace.last().expect("at least one step");
                    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    let e = max_abs_diff64(&got[r * n_feat..(r + 1) * n_feat], want);
                    assert!(
                        e <= 1e-4 * scale,
                        "{name} {solver:?} nonneg {nonneg} k {k} row {r}: err {e}"
                    );
                }
                assert_eq!(info.iters.len(), n, "{name}: one iteration count per row");
            }
        }
    }
    // A row equal to b_dec needs no atom; k > d_sae is refused.
    let z = sae.weights().b_dec.as_slice().to_vec();
    let (c, i) = b
        .solve(&sae, &z, &SolverParams::new(Solver::GradientPursuit, 4))
        .unwrap();
    assert!(
        c.indices.is_empty() && i.iters == vec![0],
        "{name}: zero row"
    );
    let e = b
        .solve(&sae, &x, &SolverParams::new(Solver::GradientPursuit, 301))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name}: {e}");
}
// 16 KiB binding cap on the GPU: W_dec in 4 row chunks, W_dec^T in 5 column chunks.
backend_test!(
    ito_matches_f64_reference,
    ito_matches_f64_reference_cpu,
    ito_matches_f64_reference_wgpu,
    WgpuOptions {
        max_chunk_bytes: Some(16 * 1024),
        ..Default::default()
    }
);
