//! llama.cpp control-vector GGUF files (FORMATS.md section G): tensors
//! `direction.N` (N >= 1, the output of block N), F32 `[n_embd]`, with
//! `general.architecture = "controlvector"`, `controlvector.model_hint` and
//! `controlvector.layer_count` (i32, as cvector-generator writes it).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! // Export "4 times feature 10 of this SAE" as a control vector for block 6,
//! // to be loaded with `llama-cli --control-vector steer.gguf`.
//! let sae = saeplug::synthetic::random_sae(16, 64, saeplug::Architecture::Standard, 3)?;
//! let dir = saeplug::decompose::recompose(&sae, &[(10, 4.0)]);
//! let path = std::env::temp_dir().join(format!("saeplug-doc-cvec-{}.gguf", std::process::id()));
//! saeplug::cvec::write_control_vector(&path, "llama", &[(6, dir)])?;
//! # std::fs::remove_file(&path).ok();
//! # Ok(()) }
//! ```

use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::write_atomic;

const ALIGN: usize = 32;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Write a control vector: one `(layer, direction)` per steered block; every
/// direction has the same length (n_embd). Written atomically.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::cvec::write_control_vector;
/// let path = std::env::temp_dir().join(format!("saeplug-doc-cvec2-{}.gguf", std::process::id()));
/// write_control_vector(&path, "llama", &[(1, vec![0.5; 8]), (3, vec![-0.5; 8])])?;
/// assert_eq!(&std::fs::read(&path).unwrap()[..4], b"GGUF");
/// // llama.cpp has no direction.0, and every direction has the same length.
/// assert!(write_control_vector(&path, "llama", &[(0, vec![1.0; 8])]).is_err());
/// assert!(write_control_vector(&path, "llama", &[(1, vec![1.0; 8]), (2, vec![1.0; 4])]).is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn write_control_vector(
    path: &Path,
    model_hint: &str,
    layers: &[(u32, Vec<f32>)],
) -> Result<()> {
    let n_embd = layers.first().map(|l| l.1.len()).unwrap_or(0);
    if layers.is_empty() || n_embd == 0 {
        return Err(Error::invalid(
            "a control vector needs at least one non-empty direction",
        ));
    }
    for (layer, v) in layers {
        if *layer == 0 {
            return Err(Error::invalid(
                "direction.0 is invalid in llama.cpp: layers start at 1 (the output of block 1)",
            ));
        }
        if v.len() != n_embd {
            return Err(Error::invalid(format!(
                "direction for layer {layer} has {} values, the first has {n_embd}",
                v.len()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "direction for layer {layer} is not finite"
            )));
        }
    }
    let mut sorted: Vec<&(u32, Vec<f32>)> = layers.iter().collect();
    sorted.sort_by_key(|l| l.0);
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Error::invalid("a layer appears twice"));
    }
    let layer_count = sorted.last().map_or(0, |l| l.0) as i32;
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&3u64.to_le_bytes());
    put_str(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes()); // GGUF_TYPE_STRING
    put_str(&mut out, "controlvector");
    put_str(&mut out, "controlvector.model_hint");
    out.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut out, model_hint);
    put_str(&mut out, "controlvector.layer_count");
    out.extend_from_slice(&5u32.to_le_bytes()); // GGUF_TYPE_INT32
    out.extend_from_slice(&layer_count.to_le_bytes());
    let nbytes = (4 * n_embd).next_multiple_of(ALIGN);
    for (i, (layer, _)) in sorted.iter().enumerate() {
        put_str(&mut out, &format!("direction.{layer}"));
        out.extend_from_slice(&1u32.to_le_bytes()); // n_dims
        out.extend_from_slice(&(n_embd as u64).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // GGML_TYPE_F32
        out.extend_from_slice(&((i * nbytes) as u64).to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(ALIGN), 0);
    for (_, v) in &sorted {
        let start = out.len();
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        out.resize(start + nbytes, 0);
    }
    write_atomic(path, &out)
}
