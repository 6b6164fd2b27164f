//! File-format loaders. [`open`] detects the format from the path.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Format, format};
//! # let dir = std::env::temp_dir().join(format!("saeplug-doc-format-{}", std::process::id()));
//! # saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?.save_saelens(&dir)?;
//! let (fmt, _) = format::detect(&dir)?;
//! assert_eq!(fmt, Format::SaeLens);
//! let sae = format::open(&dir)?; // what Sae::open calls
//! assert_eq!(sae.d_sae(), 32);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

pub mod npz;
mod saelens;
mod sparsify;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::sae::{Format, Sae};

/// Which format a path holds, and the folder or file to load.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Format, format::detect};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-detect-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("params.npz"), b"").unwrap();
/// let (fmt, file) = detect(&dir)?;
/// assert_eq!((fmt, file), (Format::GemmaScope1, dir.join("params.npz")));
/// assert!(detect(&dir.join("params.npz").with_extension("bin")).is_err());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub fn detect(path: &Path) -> Result<(Format, PathBuf)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return match name {
            "sae_weights.safetensors" => Ok((Format::SaeLens, parent)),
            "sae.safetensors" => Ok((Format::Sparsify, parent)),
            "params.safetensors" => Ok((Format::GemmaScope2, parent)),
            "cfg.json" | "config.json" => detect(&parent),
            _ if name.ends_with(".npz") => Ok((Format::GemmaScope1, path.to_path_buf())),
            _ => Err(Error::format(
                path,
                "unrecognised SAE file (expected a SAELens, Gemma Scope or sparsify folder, or params.npz)",
            )),
        };
    }
    let has = |n: &str| path.join(n).is_file();
    if has("sae_weights.safetensors") {
        Ok((Format::SaeLens, path.to_path_buf()))
    } else if has("sae.safetensors") {
        Ok((Format::Sparsify, path.to_path_buf()))
    } else if has("params.safetensors") {
        Ok((Format::GemmaScope2, path.to_path_buf()))
    } else if has("params.npz") {
        Ok((Format::GemmaScope1, path.join("params.npz")))
    } else {
        Err(Error::format(
            path,
            "no SAE found in this folder: expected cfg.json + sae_weights.safetensors (SAELens), \
             config.json + params.safetensors (Gemma Scope 2), params.npz (Gemma Scope 1) or \
             cfg.json + sae.safetensors (sparsify)",
        ))
    }
}

/// Open an SAE of any supported format.
///
/// ```
/// use saeplug::{ErrorKind, format};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-fopen-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// // An empty folder holds no SAE: the message lists what was expected.
/// let err = format::open(&dir).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Format);
/// assert!(err.to_string().contains("sae_weights.safetensors"));
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
pub fn open(path: &Path) -> Result<Sae> {
    let (format, p) = detect(path)?;
    match format {
        Format::SaeLens => saelens::open_saelens(&p),
        Format::GemmaScope2 => saelens::open_gemma_scope_2(&p),
        Format::GemmaScope1 => saelens::open_gemma_scope_1(&p),
        Format::Sparsify => sparsify::open(&p),
        Format::InMemory => Err(Error::invalid("in-memory SAEs have no path")),
    }
}

/// Read a small JSON config file (at most 16 MiB).
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > 16 << 20 {
        return Err(Error::format(path, "config file is larger than 16 MiB"));
    }
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::format(path, "config is not a JSON object"));
    }
    Ok(v)
}

/// A required non-negative integer field.
pub(crate) fn get_usize(cfg: &Value, key: &str, path: &Path) -> Result<usize> {
    cfg.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| {
            Error::format(
                path,
                format!("'{key}' is missing or not a non-negative integer"),
            )
        })
}
