#![no_main]
//! Arbitrary bytes as a SAELens sae_weights.safetensors next to a valid cfg.json,
//! and as a bare safetensors file: the header checks of the reference reader
//! (size cap, dtypes, byte counts, tensors tiling the data section, duplicate
//! keys), then every tensor the parser accepted is read in full.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch().join("st");
    std::fs::create_dir_all(&d).ok();
    std::fs::write(d.join("cfg.json"), common::CFG).ok();
    std::fs::write(d.join("sae_weights.safetensors"), data).ok();
    if let Ok(st) = saeplug::weights::SafeTensors::open(&d.join("sae_weights.safetensors")) {
        for (name, info) in &st.tensors {
            // An accepted header never points outside the file.
            let t = st.tensor(name).expect("a parsed tensor loads");
            assert_eq!(t.as_slice().len(), info.numel());
        }
    }
    if let Ok(sae) = saeplug::Sae::open(&d) {
        common::exercise(&sae);
    }
});
