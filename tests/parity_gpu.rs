//! What only the wgpu backend has: f16 encoder weights. Encode, decode, steering,
//! ITO, edge cases and fixtures run on every backend from one body each in
//! `parity_cpu.rs` (`backend_test!`).

mod common;

use common::*;
use saeplug::synthetic::random_sae;
use saeplug::{Backend, CpuBackend, WgpuOptions};

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
