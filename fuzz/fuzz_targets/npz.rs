#![no_main]
//! Arbitrary bytes as a Gemma Scope params.npz (zip directory + npy headers).
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch().join("npz");
    std::fs::create_dir_all(&d).ok();
    let p = d.join("params.npz");
    std::fs::write(&p, data).ok();
    if let Ok(sae) = saeplug::Sae::open(&p) {
        common::exercise(&sae);
    }
});
