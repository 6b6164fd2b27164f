#![no_main]
//! Arbitrary bytes as a SAELens sae_weights.safetensors next to a valid cfg.json.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch().join("st");
    std::fs::create_dir_all(&d).ok();
    std::fs::write(d.join("cfg.json"), common::CFG).ok();
    std::fs::write(d.join("sae_weights.safetensors"), data).ok();
    if let Ok(sae) = saeplug::Sae::open(&d) {
        common::exercise(&sae);
    }
});
