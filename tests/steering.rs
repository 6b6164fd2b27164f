//! The steering toolkit: hook positions and reconstruction modes, recording,
//! steering-vector decomposition, filtering and recomposition. Hook and recorder
//! tests run on every backend from one body (`backend_test!`).

mod common;

use std::sync::Arc;

use common::*;
use saeplug::decompose::{decompose_actadd, decompose_vector, filter, recompose};
use saeplug::hook::{Hook, Positions, Replace};
use saeplug::record::Recorder;
use saeplug::solve::{Solver, SolverParams};
use saeplug::steer::Edit;
use saeplug::synthetic::{random_sae, sparse_data};
use saeplug::{Architecture, Backend, CpuBackend};

#[test]
fn positions_select_rows() {
    assert_eq!(Positions::All.rows(3, 10), vec![0, 1, 2]);
    assert_eq!(Positions::First(4).rows(6, 0), vec![0, 1, 2, 3]);
    assert_eq!(Positions::First(4).rows(3, 2), vec![0, 1]); // positions 2, 3
    assert!(Positions::First(4).rows(1, 9).is_empty());
    assert_eq!(Positions::Last.rows(5, 0), vec![4]);
    assert!(Positions::Last.rows(0, 0).is_empty());
    assert_eq!(Positions::Ranges(vec![1..3, 7..8]).rows(5, 3), vec![4]); // position 7
}

fn hooks_edit_only_their_positions_and_keep_the_error_term(b: &dyn Backend) {
    use saeplug::reference::{decode_row, encode_row, reconstruct};
    let name = b.name();
    let d = 40;
    let sae = Arc::new(random_sae(d, 160, Architecture::JumpRelu, 2).unwrap());
    let x = inputs(&sae, 6, 1);
    // The error term is large here: dropping it would be seen.
    let recon = reconstruct(&sae, &x);
    assert!(
        max_abs_diff64(&x, &recon) > 0.1,
        "the SAE reconstructs x too well"
    );
    // Reconstruction with the error term and a clamp on every row:
    // x + decode(f') - decode(f), computed independently in f64.
    let (f0, _) = encode_row(&sae, &x[..d]);
    let i = f0
        .iter()
        .position(|v| *v > 0.0)
        .expect("a feature fires on row 0");
    let mut h = Hook::new(Arc::clone(&sae), 4);
    h.replace = Replace::WithError;
    h.edits = vec![Edit::Clamp {
        feature: i,
        value: 4.0,
    }];
    let mut y = x.clone();
    h.apply(b, &mut y, 0).unwrap();
    let want: Vec<f64> = x
        .chunks_exact(d)
        .flat_map(|row| {
            let (f, dn) = encode_row(&sae, row);
            let mut edited = f.clone();
            edited[i] = 4.0;
            assert_ne!(edited, f, "the edit must change the codes");
            let (a, c) = (decode_row(&sae, &edited, dn), decode_row(&sae, &f, dn));
            row.iter()
                .zip(a.iter().zip(c))
                .map(|(x, (a, c))| *x as f64 + a - c)
                .collect::<Vec<_>>()
        })
        .collect();
    let e = max_abs_diff64(&y, &want);
    assert!(
        e <= 1e-4,
        "{name}: WithError + clamp differs from x + decode(f') - decode(f) by {e}"
    );
    // Reconstruction only: the SAE's reconstruction.
    h.replace = Replace::ReconstructionOnly;
    h.edits.clear();
    let mut y = x.clone();
    h.apply(b, &mut y, 0).unwrap();
    let e = max_abs_diff64(&y, &recon);
    assert!(e <= 1e-4, "{name}: ReconstructionOnly err {e}");
    // A clamp on the first 2 positions of a batch starting at position 1: row 0 only.
    let mut h = Hook::new(Arc::clone(&sae), 4);
    h.positions = Positions::First(2);
    h.edits = vec![Edit::Clamp {
        feature: i,
        value: 4.0,
    }];
    let mut y = x.clone();
    h.apply(b, &mut y, 1).unwrap();
    let got = encode_row(&sae, &y[..d]).0[i];
    assert!((got - 4.0).abs() < 1e-4, "{name}: clamped activation {got}");
    assert_eq!(
        &y[d..],
        &x[d..],
        "{name}: positions outside the hook edited"
    );
}
backend_test!(
    hooks_edit_only_their_positions_and_keep_the_error_term,
    hooks_keep_the_error_term_cpu,
    hooks_keep_the_error_term_wgpu
);

fn recorder_counts_means_and_top_positions(b: &dyn Backend) {
    let sae = random_sae(32, 96, Architecture::Standard, 3).unwrap();
    let x = sparse_data(&sae, 50, 3, 0.02, 4);
    let mut rec = Recorder::new(96, 3);
    rec.record(&b.encode_sparse(&sae, &x[..20 * 32]).unwrap(), 0)
        .unwrap();
    rec.record(&b.encode_sparse(&sae, &x[20 * 32..]).unwrap(), 20)
        .unwrap();
    let dense = saeplug::reference::encode(&sae, &x);
    assert_eq!(rec.tokens(), 50);
    for i in 0..96 {
        let col: Vec<(f64, u64)> = (0..50).map(|r| (dense[r * 96 + i], r as u64)).collect();
        let fired = col.iter().filter(|c| c.0 != 0.0).count() as u64;
        assert_eq!(rec.firing_counts()[i], fired, "feature {i}");
        let mean = col.iter().map(|c| c.0).sum::<f64>() / 50.0;
        assert!((rec.mean_activation()[i] - mean).abs() < 1e-4);
        let mut top: Vec<(f64, u64)> = col.into_iter().filter(|c| c.0 != 0.0).collect();
        top.sort_by(|a, b| b.0.total_cmp(&a.0));
        let got: Vec<u64> = rec.top(i).iter().map(|t| t.1).collect();
        let want: Vec<u64> = top.iter().take(3).map(|t| t.1).collect();
        assert_eq!(got, want, "{}: top positions of feature {i}", b.name());
    }
    let j: serde_json::Value = serde_json::from_str(&rec.to_json()).unwrap();
    assert_eq!(j["tokens"], 50);
    assert_eq!(j["firing_count"].as_array().unwrap().len(), 96);
}
backend_test!(
    recorder_counts_means_and_top_positions,
    recorder_cpu,
    recorder_wgpu
);

#[test]
fn decomposition_filter_and_recompose() {
    let sae = random_sae(128, 512, Architecture::Standard, 5).unwrap();
    // A vector made of 3 features (signed): ITO recovers them exactly.
    let feats = vec![(7usize, 2.0f32), (300, -1.5), (42, 0.75)];
    let v = recompose(&sae, &feats);
    let mut p = SolverParams::new(Solver::OrthogonalMatchingPursuit, 3);
    p.nonnegative = false;
    let d = decompose_vector(&CpuBackend::new(1), &sae, &v, &p).unwrap();
    assert!(
        d.cosine > 0.9999 && d.rel_error < 1e-3,
        "{} {}",
        d.cosine,
        d.rel_error
    );
    let mut got: Vec<usize> = d.features.iter().map(|f| f.0).collect();
    got.sort();
    assert_eq!(got, vec![7, 42, 300]);
    // Filtering feature 300 out leaves the other two.
    let w = filter(&sae, &v, &d, &[300]);
    let want = recompose(&sae, &[(7, 2.0), (42, 0.75)]);
    assert!(max_abs_diff(&w, &want) < 1e-4);
    // ActAdd: h+ = h- + v at every position; f(h+) - f(h-) recomposes v well.
    let hm = sparse_data(&sae, 4, 2, 0.0, 9);
    let hp: Vec<f32> = hm
        .chunks_exact(128)
        .flat_map(|r| r.iter().zip(&v).map(|(a, b)| a + b).collect::<Vec<_>>())
        .collect();
    let cpu = CpuBackend::default();
    let a = decompose_actadd(&cpu, &sae, &hp, &hm).unwrap();
    assert!(a.cosine > 0.8, "actadd cosine {}", a.cosine);
    assert!(decompose_actadd(&cpu, &sae, &hp, &hm[..128]).is_err());
    let _ = cpu.name();
}
