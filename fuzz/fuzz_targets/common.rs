// Shared by the loader targets: a private scratch folder on tmpfs per process.
#![allow(dead_code, reason = "each target uses a part of this module")]
use std::path::PathBuf;

pub fn scratch() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let d = base.join(format!("saeplug-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).ok();
    d
}

pub const CFG: &str = r#"{"d_in": 4, "d_sae": 8, "architecture": "jumprelu", "apply_b_dec_to_input": true, "metadata": {"sae_lens_version": "6.1.0"}}"#;

/// A valid 4 x 8 jumprelu SAE's safetensors bytes.
pub fn valid_weights() -> Vec<u8> {
    let dir = scratch().join("valid");
    std::fs::create_dir_all(&dir).ok();
    let p = dir.join("w.safetensors");
    let t = |n: usize| vec![0.25f32; n];
    let (we, wd, be, bd, th) = (t(32), t(32), t(8), t(4), t(8));
    saeplug::weights::write_safetensors(
        &p,
        &[("W_enc", &[4, 8], &we), ("W_dec", &[8, 4], &wd), ("b_enc", &[8], &be), ("b_dec", &[4], &bd), ("threshold", &[8], &th)],
        &Default::default(),
    )
    .expect("write valid weights");
    std::fs::read(&p).expect("read back")
}

/// Encode a batch through a loaded SAE so the mapped tensors are read too (the
/// first compute call also runs the non-finite weight scan).
pub fn exercise(sae: &saeplug::Sae) {
    use saeplug::Backend;
    let _ = sae.check_unchanged();
    let _ = sae.check_finite();
    let x = vec![0.5f32; sae.d_in() * 2];
    let cpu = saeplug::CpuBackend::new(1);
    if let Ok(codes) = cpu.encode_sparse(sae, &x) {
        let mut out = vec![0.0; x.len()];
        let _ = cpu.decode_sparse(sae, &codes, &mut out);
    }
}
