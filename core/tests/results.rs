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
