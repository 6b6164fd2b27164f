//! CPU backend against the f64 reference on shapes that exercise every code path:
//! the column-blocked multi-threaded GEMM (d_sae > 2 blocks, not a multiple of the
//! block), the transposed encoder layout, every architecture and top-k order, and
//! sparse vs dense agreement.

mod common;

use common::*;
use saeplug::synthetic::{Rng, random_sae, sparse_data};
use saeplug::weights::Tensor;
use saeplug::{Architecture, Backend, CpuBackend, Sae, TopKOrder};

fn archs() -> Vec<Architecture> {
    let topk = |order| Architecture::TopK {
        k: 7,
        order,
        rescale_by_decoder_norm: order == TopKOrder::TopKThenRelu,
    };
    vec![
        Architecture::Standard,
        Architecture::JumpRelu,
        Architecture::Gated,
        topk(TopKOrder::TopKThenRelu),
        topk(TopKOrder::ReluThenTopK),
        topk(TopKOrder::Signed),
        Architecture::TopK {
            k: 5,
            order: TopKOrder::GroupMax,
            rescale_by_decoder_norm: false,
        },
    ]
}

/// The same SAE with `W_enc` stored `[d_sae, d_in]` (nn.Linear / sparsify layout).
fn transposed(sae: &Sae) -> Sae {
    let w = sae.weights();
    let (d, n) = (sae.d_in(), sae.d_sae());
    let src = w.w_enc.as_slice();
    let mut t = vec![0.0; d * n];
    for j in 0..d {
        for i in 0..n {
            t[i * d + j] = src[j * n + i];
        }
    }
    with_encoder(
        sae,
        Tensor::owned("encoder.weight", vec![n, d], t).unwrap(),
        true,
    )
}

#[test]
fn cpu_matches_f64_reference_on_odd_shapes() {
    let (d, n_feat) = (37, 2605);
    // 1-4 rows take the streaming small-batch kernel, more take the blocked GEMM.
    for (arch, rows) in archs().into_iter().flat_map(|a| [(a, 2), (a, 6)]) {
        let base = random_sae(d, n_feat, arch, 11).unwrap();
        for sae in [&base, &transposed(&base)] {
            let mut x = sparse_data(sae, rows, 5, 0.05, 2);
            // Add signal that some features fire negatively (Signed top-k).
            x.iter_mut()
                .zip(Rng::new(4).normal_vec(rows * d, 0.3))
                .for_each(|(a, b)| *a += b);
            let want = saeplug::reference::encode(sae, &x);
            let want_r = saeplug::reference::reconstruct(sae, &x);
            for threads in [1, 2, 3] {
                let cpu = CpuBackend::new(threads);
                let mut f = vec![0.0; rows * n_feat];
                let dn = cpu.encode(sae, &x, &mut f).unwrap();
                let e = max_abs_diff64(&f, &want);
                assert!(e <= 1e-4, "{arch:?} threads {threads}: encode err {e}");
                let fired = f.iter().filter(|v| **v != 0.0).count();
                assert!(fired > 0, "{arch:?}: nothing fired");
                let mut r = vec![0.0; rows * d];
                cpu.decode(sae, &f, &dn, &mut r).unwrap();
                assert!(max_abs_diff64(&r, &want_r) <= 1e-4, "{arch:?}: decode");
                let codes = cpu.encode_sparse(sae, &x).unwrap();
                assert_eq!(codes.to_dense(), f, "{arch:?}: sparse != dense");
                let mut r2 = vec![0.0; rows * d];
                cpu.decode_sparse(sae, &codes, &mut r2).unwrap();
                assert!(max_abs_diff(&r, &r2) <= 1e-4, "{arch:?}: sparse decode");
            }
        }
    }
}

#[test]
fn topk_keeps_exactly_k_when_enough_are_positive() {
    let sae = random_sae(
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
    let x = sparse_data(&sae, 20, 8, 0.0, 3);
    let codes = CpuBackend::default().encode_sparse(&sae, &x).unwrap();
    for r in 0..20 {
        assert!(codes.row(r).0.len() <= 4);
    }
}
