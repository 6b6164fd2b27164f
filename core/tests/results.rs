//! Results that cannot be trusted are errors, and failing calls change nothing:
//! overflow from finite inputs gives `ErrorKind::NonFinite`; a steering call or a
//! hook that fails leaves its buffer as it was; position arithmetic never wraps.
#![allow(
    clippy::single_range_in_vec_init,
    clippy::reversed_empty_ranges,
    reason = "position ranges are the data under test, empty ones included"
)]

use std::sync::Arc;

use saeplug::hook::{Hook, Positions, Replace};
use saeplug::steer::{Edit, FeatureSource};
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, CpuBackend, ErrorKind};

fn sae() -> saeplug::Sae {
    random_sae(16, 64, Architecture::Standard, 5).expect("synthetic SAE")
}

#[test]
fn encode_overflow_is_non_finite() {
    let sae = sae();
    // Every input is finite, but x . W_enc overflows f32 for some feature.
    let x = vec![3.0e38f32; 16];
    let mut f = vec![0.0; 64];
    let err = CpuBackend::new(1).encode(&sae, &x, &mut f).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonFinite, "{err}");
    assert!(err.to_string().contains("overflow"), "{err}");
    // A finite result from the same SAE is fine.
    assert!(CpuBackend::new(1).encode(&sae, &[1.0; 16], &mut f).is_ok());
}

#[test]
fn decode_overflow_is_non_finite() {
    let sae = sae();
    let f = vec![3.0e38f32; 64];
    let mut out = vec![0.0; 16];
    let err = CpuBackend::new(1)
        .decode(&sae, &f, &[], &mut out)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonFinite, "{err}");
    let codes = saeplug::SparseCodes::from_dense(&f, 64, Vec::new());
    let err = CpuBackend::new(1)
        .decode_sparse(&sae, &codes, &mut out)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonFinite, "{err}");
}

#[test]
fn steer_overflow_fails_and_leaves_x() {
    let sae = sae();
    let mut x = Rng::new(1).normal_vec(3 * 16, 1.0);
    x[16..32].fill(3.0e38); // row 1 is huge but finite
    let before = x.clone();
    let edits = [
        Edit::AddFeature {
            feature: 2,
            coef: 1.0,
        },
        Edit::AddVector {
            vector: vec![3.0e38; 16],
            coef: 1.0,
        },
    ];
    let err = CpuBackend::new(1)
        .steer(&sae, &mut x, &edits, None, &FeatureSource::Encoder)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonFinite, "{err}");
    assert_eq!(x, before, "a failing steer call modified x");
}

#[test]
fn failing_hooks_leave_x_as_it_was() {
    let sae = Arc::new(sae());
    let cpu = CpuBackend::new(1);
    let x = Rng::new(2).normal_vec(4 * 16, 1.0);
    for replace in [
        Replace::None,
        Replace::WithError,
        Replace::ReconstructionOnly,
    ] {
        let mut hook = Hook::new(Arc::clone(&sae), 3);
        hook.replace = replace;
        // The first edit is fine; the second names a feature past d_sae.
        hook.edits = vec![
            Edit::AddFeature {
                feature: 1,
                coef: 2.0,
            },
            Edit::Ablate { feature: 64 },
        ];
        let mut y = x.clone();
        assert!(hook.apply(&cpu, &mut y, 0).is_err(), "{replace:?}");
        assert_eq!(y, x, "{replace:?}: a failing hook modified x");
        // The same hook without the bad edit does change x.
        hook.edits.pop();
        hook.apply(&cpu, &mut y, 0).expect("valid hook");
        assert_ne!(y, x, "{replace:?}");
    }
}

#[test]
fn positions_never_overflow() {
    let sae = Arc::new(sae());
    let cpu = CpuBackend::new(1);
    let x = Rng::new(3).normal_vec(2 * 16, 1.0);
    let mut hook = Hook::new(Arc::clone(&sae), 0);
    hook.edits = vec![Edit::AddFeature {
        feature: 1,
        coef: 1.0,
    }];
    // A batch whose positions would run past usize::MAX is refused, x untouched.
    let mut y = x.clone();
    let err = hook.apply(&cpu, &mut y, usize::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(y, x);
    // Selecting rows near the top of the range does not wrap.
    assert_eq!(
        Positions::First(5).rows(2, usize::MAX - 1),
        Vec::<usize>::new()
    );
    assert_eq!(
        Positions::Ranges(vec![usize::MAX - 1..usize::MAX]).rows(2, usize::MAX - 2),
        [1]
    );
    hook.positions = Positions::Ranges(vec![4..2]);
    assert!(hook.apply(&cpu, &mut y, 0).is_err());
    assert_eq!(y, x);
}

#[test]
fn thread_counts_are_bounded() {
    let max = saeplug::backend::cpu::MAX_THREADS;
    assert!(CpuBackend::try_new(max).is_ok());
    let err = CpuBackend::try_new(max + 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(CpuBackend::new(usize::MAX).threads(), max);
}

#[test]
fn decompositions_are_decoder_coefficients_for_every_architecture() {
    use saeplug::decompose::{decompose_actadd, decompose_vector, recompose};
    use saeplug::solve::{Solver, SolverParams};
    // A top-k SAE whose codes are rescaled by decoder norms (SAELens): its codes are
    // a_i * ||d_i||, but a decomposition names the coefficients of d_i, the unit
    // that `recompose` and `Edit::AddFeature` use.
    let topk = with_scaled_decoder(&sae_with(Architecture::TopK {
        k: 6,
        order: saeplug::TopKOrder::TopKThenRelu,
        rescale_by_decoder_norm: true,
    }));
    let norms: Vec<f32> = topk
        .weights()
        .w_dec
        .as_slice()
        .chunks_exact(24)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    assert!(
        (norms[7] - 1.0).abs() > 0.5,
        "the test needs non-unit decoder rows"
    );
    let cpu = CpuBackend::new(1);
    for sae in [
        &topk,
        &with_scaled_decoder(&sae_with(Architecture::Standard)),
    ] {
        let v = recompose(sae, &[(7, 1.5), (40, -0.5)]);
        let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 4);
        p.nonnegative = false;
        let dec = decompose_vector(&cpu, sae, &v, &p).expect("decompose");
        let c7 = dec
            .features
            .iter()
            .find(|(i, _)| *i == 7)
            .expect("feature 7")
            .1;
        assert!((c7 - 1.5).abs() < 1e-3, "coefficient of d_7: {c7}");
        assert!(dec.cosine > 0.9999 && dec.rel_error < 1e-3, "{dec:?}");
    }
    // ActAdd: f(h+) - f(h-) converted to decoder coefficients, so the recomposition
    // of a difference of two reconstructions is that difference.
    let mut rng = Rng::new(4);
    let (hp, hm) = (rng.normal_vec(24, 1.0), rng.normal_vec(24, 1.0));
    let dec = decompose_actadd(&cpu, &topk, &hp, &hm).expect("actadd");
    let (mut fp, mut fm) = (vec![0.0; 96], vec![0.0; 96]);
    cpu.encode(&topk, &hp, &mut fp).expect("encode");
    cpu.encode(&topk, &hm, &mut fm).expect("encode");
    let (mut rp, mut rm) = (vec![0.0; 24], vec![0.0; 24]);
    cpu.decode(&topk, &fp, &[], &mut rp).expect("decode");
    cpu.decode(&topk, &fm, &[], &mut rm).expect("decode");
    for j in 0..24 {
        let want = rp[j] - rm[j];
        assert!(
            (dec.recomposed[j] - want).abs() < 1e-3,
            "dim {j}: {} vs {want}",
            dec.recomposed[j]
        );
    }
}

fn sae_with(arch: Architecture) -> saeplug::Sae {
    random_sae(24, 96, arch, 8).expect("synthetic SAE")
}

/// The same SAE with decoder row i scaled by 0.5 + (i mod 4): non-unit rows.
fn with_scaled_decoder(sae: &saeplug::Sae) -> saeplug::Sae {
    use saeplug::SaeWeights;
    use saeplug::weights::Tensor;
    let w = sae.weights();
    let d = sae.d_in();
    let copy = |t: &Tensor| Tensor::owned(t.name(), t.shape().to_vec(), t.as_slice().to_vec());
    let w_dec: Vec<f32> = w
        .w_dec
        .as_slice()
        .chunks_exact(d)
        .enumerate()
        .flat_map(|(i, r)| r.iter().map(move |v| v * (0.5 + (i % 4) as f32)))
        .collect();
    let weights = SaeWeights {
        w_enc: copy(&w.w_enc).expect("tensor"),
        w_enc_transposed: w.w_enc_transposed,
        b_enc: copy(&w.b_enc).expect("tensor"),
        w_dec: Tensor::owned("W_dec", w.w_dec.shape().to_vec(), w_dec).expect("tensor"),
        b_dec: copy(&w.b_dec).expect("tensor"),
        threshold: None,
        r_mag: None,
        b_mag: None,
    };
    saeplug::Sae::from_parts(sae.config().clone(), weights).expect("SAE")
}

/// Many host threads encoding with one SAE and one pooled backend while its
/// packed weights are first made: no deadlock (packing runs on the pool with no
/// lock held), every result equal, one packed copy kept.
#[test]
fn concurrent_first_encodes_share_one_packed_copy_without_deadlock() {
    use std::sync::mpsc;
    let sae =
        Arc::new(saeplug::synthetic::random_sae(96, 2000, Architecture::Standard, 4).unwrap());
    let cpu = CpuBackend::new(2);
    let x: Vec<f32> = (0..8 * 96)
        .map(|i| ((i * 37) % 11) as f32 * 0.1 - 0.5)
        .collect();
    let (tx, rx) = mpsc::channel();
    for _ in 0..6 {
        let (sae, cpu, x, tx) = (Arc::clone(&sae), cpu.clone(), x.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut f = vec![0.0; 8 * 2000];
            let r = cpu.encode(&sae, &x, &mut f).map(|_| f);
            tx.send(r).ok();
        });
    }
    drop(tx);
    let mut results = Vec::new();
    for _ in 0..6 {
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("an encode hung (deadlock?)");
        results.push(r.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    // One packed W_enc (f32, 48-column panels: 2000 -> 2016 columns).
    assert_eq!(sae.derived_bytes(), 96 * 2016 * 4);
}
