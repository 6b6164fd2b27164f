//! File-format loaders and writers. [`load`] detects the format from the path and
//! returns the configuration and tensor views ([`LoadedSae`]); [`crate::Sae::open`]
//! assembles the `Sae` from them (loaders never import `sae.rs`).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Format, format};
//! # let dir = std::env::temp_dir().join(format!("saeplug-doc-format-{}", std::process::id()));
//! # saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?.save_saelens(&dir)?;
//! let (fmt, _) = format::detect(&dir)?;
//! assert_eq!(fmt, Format::SaeLens);
//! let loaded = format::load(&dir)?; // what Sae::open calls
//! assert_eq!((loaded.config.d_sae, loaded.weights.w_dec.shape()), (32, &[32, 8][..]));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

pub mod npz;
mod saelens;
mod sparsify;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{Format, SaeConfig, SaeWeights};
use crate::error::{Error, Result};
use crate::weights::{MappedFile, open_regular};

pub use saelens::write_saelens;

/// What a loader returns: the configuration, the weight tensors (views into the
/// mapped files where possible), the mapped files themselves (kept for change
/// detection) and the path the SAE was loaded from.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Architecture, Sae, format};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-loaded-{}", std::process::id()));
/// # saeplug::synthetic::random_sae(8, 32, Architecture::Gated, 1)?.save_saelens(&dir)?;
/// let loaded = format::load(&dir)?;
/// assert_eq!(loaded.config.architecture, Architecture::Gated);
/// assert_eq!(loaded.files.len(), 1); // sae_weights.safetensors
/// let sae = Sae::from_loaded(loaded)?; // checks every shape
/// assert_eq!(sae.d_in(), 8);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LoadedSae {
    /// Dimensions, architecture, normalisation, source format.
    pub config: SaeConfig,
    /// The tensors.
    pub weights: SaeWeights,
    /// The mapped files the tensors borrow from.
    pub files: Vec<Arc<MappedFile>>,
    /// The folder or file the SAE was loaded from.
    pub path: PathBuf,
}

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
    if !meta.is_file() && !meta.is_dir() {
        return Err(Error::format(
            path,
            "neither a regular file nor a folder (a FIFO, socket or device?)",
        ));
    }
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

/// Load the configuration and tensors of an SAE of any supported format.
///
/// ```
/// use saeplug::{ErrorKind, format};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-fopen-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// // An empty folder holds no SAE: the message lists what was expected.
/// let err = format::load(&dir).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Format);
/// assert!(err.to_string().contains("sae_weights.safetensors"));
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
pub fn load(path: &Path) -> Result<LoadedSae> {
    let (format, p) = detect(path)?;
    match format {
        Format::SaeLens => saelens::open_saelens(&p),
        Format::GemmaScope2 => saelens::open_gemma_scope_2(&p),
        Format::GemmaScope1 => saelens::open_gemma_scope_1(&p),
        Format::Sparsify => sparsify::open(&p),
        Format::InMemory => Err(Error::invalid("in-memory SAEs have no path")),
    }
}

/// Largest config file read, in bytes.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Read a small JSON config file (a regular file of at most 16 MiB; duplicate
/// keys refused).
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let file = open_regular(path)?;
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::format(path, "config file is larger than 16 MiB"));
    }
    let v = crate::json::parse_strict(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::format(path, "config is not a JSON object"));
    }
    Ok(v)
}

/// Typed access to the fields of a config object: a field that is present with
/// the wrong JSON type is an error naming it, never silently a default. `null`
/// counts as absent (SAELens writes `null` for unset options).
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
    /// Name of the enclosing object for messages (`metadata.`), or "".
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    /// The fields of the top-level config object `v`.
    pub(crate) fn of(v: &'a Value, path: &'a Path) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::format(path, "config is not a JSON object"))?;
        Ok(Fields {
            obj,
            path,
            prefix: "",
        })
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> Error {
        let mut shown = got.to_string();
        if shown.len() > 40 {
            shown.truncate(37);
            shown.push_str("...");
        }
        Error::format(
            self.path,
            format!("'{}{key}' must be {want}, found {shown}", self.prefix),
        )
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// A string field.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    /// A boolean field.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    /// A non-negative integer field.
    pub(crate) fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a non-negative integer", v)),
        }
    }

    /// A required non-negative integer field.
    pub(crate) fn req_usize(&self, key: &str) -> Result<usize> {
        self.usize(key)?.ok_or_else(|| {
            Error::format(
                self.path,
                format!("'{}{key}' is missing (a non-negative integer)", self.prefix),
            )
        })
    }

    /// A number field.
    pub(crate) fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    /// A nested object field (`prefix` names it in messages, e.g. `"metadata."`).
    pub(crate) fn obj(&self, key: &str, prefix: &'a str) -> Result<Option<Fields<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(obj)) => Ok(Some(Fields {
                obj,
                path: self.path,
                prefix,
            })),
            Some(v) => Err(self.wrong(key, "an object", v)),
        }
    }

    /// The raw value (for fields of several allowed types).
    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}
