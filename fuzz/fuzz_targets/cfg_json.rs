#![no_main]
//! Arbitrary bytes as cfg.json next to valid weights (SAELens and sparsify layouts).
mod common;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static WEIGHTS: OnceLock<Vec<u8>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let w = WEIGHTS.get_or_init(common::valid_weights);
    let d = common::scratch().join("cfg");
    std::fs::create_dir_all(&d).ok();
    std::fs::write(d.join("cfg.json"), data).ok();
    std::fs::write(d.join("sae_weights.safetensors"), w).ok();
    if let Ok(sae) = saeplug::Sae::open(&d) {
        common::exercise(&sae);
    }
});
