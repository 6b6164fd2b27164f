//! Every SAELens-written fixture must match SAELens's own encode and decode.

mod common;

use common::*;
use saeplug::{Backend, CpuBackend, Sae};

const TOL: f32 = 1e-4;

#[test]
fn cpu_dense_matches_saelens() {
    let cpu = CpuBackend::default();
    for (name, dir) in fixture_cases() {
        let sae = Sae::open(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            sae.copied_tensors().is_empty(),
            "{name}: f32 fixture should map zero-copy"
        );
        let io = fixture_io(&dir);
        let mut f = vec![0.0; io.n * sae.d_sae()];
        let dn = cpu.encode(&sae, &io.x, &mut f).unwrap();
        let e = max_abs_diff(&f, &io.feature_acts);
        assert!(e <= TOL, "{name}: feature_acts max abs err {e}");
        let mut recon = vec![0.0; io.x.len()];
        cpu.decode(&sae, &f, &dn, &mut recon).unwrap();
        let e = max_abs_diff(&recon, &io.recon);
        assert!(e <= TOL, "{name}: recon max abs err {e}");
        // Same support as SAELens (a feature firing or not is not a rounding matter).
        let l0_ours = f.iter().filter(|v| **v != 0.0).count();
        let l0_theirs = io.feature_acts.iter().filter(|v| **v != 0.0).count();
        assert_eq!(l0_ours, l0_theirs, "{name}: L0 differs");
    }
}

#[test]
fn cpu_sparse_matches_saelens() {
    let cpu = CpuBackend::new(2);
    for (name, dir) in fixture_cases() {
        let sae = Sae::open(&dir).unwrap();
        let io = fixture_io(&dir);
        let codes = cpu.encode_sparse(&sae, &io.x).unwrap();
        assert_eq!(codes.n_rows(), io.n);
        let e = max_abs_diff(&codes.to_dense(), &io.feature_acts);
        assert!(e <= TOL, "{name}: sparse feature_acts err {e}");
        let mut recon = vec![0.0; io.x.len()];
        cpu.decode_sparse(&sae, &codes, &mut recon).unwrap();
        let e = max_abs_diff(&recon, &io.recon);
        assert!(e <= TOL, "{name}: sparse recon err {e}");
        if name == "topk" {
            for r in 0..io.n {
                assert!(
                    codes.row(r).0.len() <= 16,
                    "topk row {r} has more than k features"
                );
            }
        }
    }
}

#[test]
fn f64_reference_matches_saelens() {
    // The oracle itself is checked against SAELens, so other tests may trust it.
    for (name, dir) in fixture_cases() {
        let sae = Sae::open(&dir).unwrap();
        let io = fixture_io(&dir);
        let f = saeplug::reference::encode(&sae, &io.x);
        let e = max_abs_diff64(&io.feature_acts, &f);
        assert!(e <= 1e-4, "{name}: reference feature_acts err {e}");
        let r = saeplug::reference::reconstruct(&sae, &io.x);
        let e = max_abs_diff64(&io.recon, &r);
        assert!(e <= 1e-4, "{name}: reference recon err {e}");
    }
}
