//! The safetensors format: a strict parser (the checks of the reference reader,
//! `safetensors` 0.8, which the Python package uses) and an f32 writer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::atomic::write_atomic;
use super::mapping::MappedFile;
use super::tensor::{DType, Tensor, TensorInfo};
use crate::error::{Error, Result};

/// Largest header accepted, in bytes: the reference reader's limit
/// (`safetensors` refuses larger headers with "header too large").
///
/// ```
/// use saeplug::{ErrorKind, weights::{MAX_HEADER_BYTES, SafeTensors}};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-maxhdr-{}.safetensors", std::process::id()));
/// // A file whose header length field is one byte over the limit is refused
/// // before anything is allocated for the header.
/// let mut f = std::fs::File::create(&path).unwrap();
/// std::io::Write::write_all(&mut f, &(MAX_HEADER_BYTES + 1).to_le_bytes()).unwrap();
/// f.set_len(8 + MAX_HEADER_BYTES + 1).unwrap(); // sparse: no disk used
/// let err = SafeTensors::open(&path).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Format);
/// assert!(err.to_string().contains("limit"));
/// # std::fs::remove_file(&path).ok();
/// ```
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A parsed safetensors file: the map plus its tensor directory.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use std::collections::BTreeMap;
/// use saeplug::weights::{SafeTensors, write_safetensors};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-st-{}.safetensors", std::process::id()));
/// let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
/// write_safetensors(&path, &[("a", &[2], &[1.0, 2.0]), ("b", &[1], &[3.0])], &meta)?;
/// let st = SafeTensors::open(&path)?;
/// assert_eq!(st.tensors.keys().collect::<Vec<_>>(), ["a", "b"]);
/// assert_eq!(st.metadata["format"], "pt");
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SafeTensors {
    /// The mapped file.
    pub file: Arc<MappedFile>,
    /// Tensors by name.
    pub tensors: BTreeMap<String, TensorInfo>,
    /// The `__metadata__` table, if any.
    pub metadata: BTreeMap<String, String>,
    /// Tensors present with a dtype saeplug does not read, name -> dtype.
    pub unsupported: BTreeMap<String, String>,
    /// Every tensor (any dtype) with its dtype string, shape and absolute offset:
    /// for readers of integer tensors (the activation store's token ids).
    pub(crate) raw: BTreeMap<String, RawTensor>,
}

/// Where a tensor of any dtype lives in the mapped file (bounds checked at parse).
#[derive(Clone, Debug)]
pub(crate) struct RawTensor {
    /// The safetensors dtype string ("F32", "I32", ...).
    pub(crate) dtype: String,
    /// Shape, outermost first.
    pub(crate) shape: Vec<usize>,
    /// Absolute byte offset of the first element in the file.
    pub(crate) offset: usize,
}

impl SafeTensors {
    /// Map and parse a safetensors file, checking every offset against the file size.
    ///
    /// ```
    /// use saeplug::{ErrorKind, weights::SafeTensors};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-bad-{}.safetensors", std::process::id()));
    /// // A header length that runs past the end of the file.
    /// std::fs::write(&path, 1000u64.to_le_bytes()).unwrap();
    /// assert_eq!(SafeTensors::open(&path).unwrap_err().kind(), ErrorKind::Format);
    /// # std::fs::remove_file(&path).ok();
    /// ```
    pub fn open(path: &Path) -> Result<Self> {
        let file = MappedFile::open(path)?;
        let (tensors, metadata, unsupported, raw) = parse_safetensors_header(path, file.bytes())?;
        Ok(SafeTensors {
            file,
            tensors,
            metadata,
            unsupported,
            raw,
        })
    }

    /// True when the file holds a tensor called `name` (of any dtype).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::weights::{SafeTensors, write_safetensors};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-contains-{}.safetensors", std::process::id()));
    /// write_safetensors(&path, &[("W_enc", &[1], &[0.0])], &Default::default())?;
    /// let st = SafeTensors::open(&path)?;
    /// assert!(st.contains("W_enc") && !st.contains("W_dec"));
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.unsupported.contains_key(name)
    }

    /// Load one tensor (borrowed when possible).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{ErrorKind, weights::{SafeTensors, write_safetensors}};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-tensor-{}.safetensors", std::process::id()));
    /// write_safetensors(&path, &[("W", &[2], &[1.0, 2.0])], &Default::default())?;
    /// let st = SafeTensors::open(&path)?;
    /// assert_eq!(st.tensor("W")?.as_slice(), [1.0, 2.0]);
    /// assert_eq!(st.tensor("V").unwrap_err().kind(), ErrorKind::MissingTensor);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        if let Some(dtype) = self.unsupported.get(name) {
            return Err(Error::DType {
                path: self.file.path().to_path_buf(),
                name: name.to_string(),
                dtype: dtype.clone(),
            });
        }
        let info = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.file.path().to_path_buf(),
            name: name.to_string(),
        })?;
        Tensor::from_file(&self.file, name, info)
    }
}

type Header = (
    BTreeMap<String, TensorInfo>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    BTreeMap<String, RawTensor>,
);

/// Bits per element of every dtype the safetensors format defines (the reference
/// reader refuses any other dtype string).
fn dtype_bits(s: &str) -> Option<usize> {
    Some(match s {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

fn parse_safetensors_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    if bytes.len() < 8 {
        return Err(Error::format(
            path,
            format!(
                "safetensors file is {} bytes, shorter than its 8-byte header length: truncated?",
                bytes.len()
            ),
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(len8);
    let avail = (bytes.len() - 8) as u64;
    if n > avail {
        return Err(Error::format(
            path,
            format!(
                "safetensors header claims {n} bytes but only {avail} follow: truncated or corrupt"
            ),
        ));
    }
    if n > MAX_HEADER_BYTES {
        return Err(Error::format(
            path,
            format!(
                "safetensors header of {n} bytes is larger than the {MAX_HEADER_BYTES}-byte limit"
            ),
        ));
    }
    // `n <= avail`, which is a usize.
    let n = n as usize;
    let header = crate::json::parse_strict(&bytes[8..8 + n])
        .map_err(|e| Error::format(path, format!("safetensors header is not valid JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| Error::format(path, "safetensors header is not a JSON object"))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    let mut unsupported = BTreeMap::new();
    let mut raw = BTreeMap::new();
    // (begin, end, name) of every tensor, to check the data section is tiled.
    let mut spans: Vec<(usize, usize, &str)> = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            match v {
                Value::Null => {}
                Value::Object(m) => {
                    for (k, v) in m {
                        let s = v.as_str().ok_or_else(|| {
                            Error::format(path, format!("__metadata__ value '{k}' is not a string"))
                        })?;
                        metadata.insert(k.clone(), s.to_string());
                    }
                }
                _ => return Err(Error::format(path, "__metadata__ is not a JSON object")),
            }
            continue;
        }
        let bad = |what: &str| Error::format(path, format!("tensor '{name}': {what}"));
        let dtype_s = v
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing dtype"))?;
        let bits = dtype_bits(dtype_s)
            .ok_or_else(|| bad(&format!("'{dtype_s}' is not a safetensors dtype")))?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape entries must be non-negative integers"))?;
        let offs = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad("data_offsets must be [begin, end]"))?;
        let as_usize = |v: &Value| v.as_u64().and_then(|v| usize::try_from(v).ok());
        let (b, e) = match (as_usize(&offs[0]), as_usize(&offs[1])) {
            (Some(b), Some(e)) if b <= e => (b, e),
            _ => return Err(bad("data_offsets must be integers with begin <= end")),
        };
        if e > data_len {
            return Err(bad(&format!(
                "data ends at byte {e} of a {data_len}-byte data section: truncated or header lies"
            )));
        }
        let nbits = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|numel| numel.checked_mul(bits))
            .ok_or_else(|| bad("shape overflows"))?;
        if nbits % 8 != 0 || nbits / 8 != e - b {
            return Err(bad(&format!(
                "shape {shape:?} of {dtype_s} needs {} bytes but data_offsets span {}",
                nbits.div_ceil(8),
                e - b
            )));
        }
        spans.push((b, e, name.as_str()));
        raw.insert(
            name.clone(),
            RawTensor {
                dtype: dtype_s.to_string(),
                shape: shape.clone(),
                offset: data_start + b,
            },
        );
        let Some(dtype) = DType::from_safetensors(dtype_s) else {
            // Tensors saeplug never reads may have other dtypes (I64 counters, ...);
            // asking for one of them is an error (see `SafeTensors::tensor`).
            unsupported.insert(name.clone(), dtype_s.to_string());
            continue;
        };
        tensors.insert(
            name.clone(),
            TensorInfo {
                dtype,
                shape,
                offset: data_start + b,
            },
        );
    }
    // The tensors must tile the data section exactly, in offset order (as the
    // reference reader demands): no overlap, no hole, nothing after the last one.
    spans.sort_unstable();
    let mut at = 0usize;
    let mut prev = "";
    for &(b, e, name) in &spans {
        if b < at {
            return Err(Error::format(
                path,
                format!("tensor '{name}' (bytes {b}..{e}) overlaps tensor '{prev}'"),
            ));
        }
        if b > at {
            return Err(Error::format(
                path,
                format!(
                    "{} bytes of the data section before tensor '{name}' belong to no tensor",
                    b - at
                ),
            ));
        }
        at = e;
        prev = name;
    }
    if at != data_len {
        return Err(Error::format(
            path,
            format!(
                "{} bytes at the end of the data section belong to no tensor",
                data_len - at
            ),
        ));
    }
    Ok((tensors, metadata, unsupported, raw))
}

/// Serialise f32 tensors as a safetensors file (header padded to 8 bytes so every
/// tensor is 4-byte aligned when mapped). Written atomically.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::{SafeTensors, write_safetensors};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-write-{}.safetensors", std::process::id()));
/// write_safetensors(&path, &[("x", &[2, 2], &[1.0, 2.0, 3.0, 4.0])], &Default::default())?;
/// assert_eq!(SafeTensors::open(&path)?.tensor("x")?.as_slice(), [1.0, 2.0, 3.0, 4.0]);
/// // Shapes must match the data.
/// assert!(write_safetensors(&path, &[("x", &[3], &[1.0])], &Default::default()).is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            Value::Object(
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    let mut off = 0usize;
    for (name, shape, data) in tensors {
        if *name == "__metadata__" || header.contains_key(*name) {
            return Err(Error::invalid(format!(
                "tensor name '{name}' is repeated or reserved"
            )));
        }
        let numel = super::tensor::checked_numel(shape)
            .ok_or_else(|| Error::invalid(format!("tensor '{name}': shape {shape:?} overflows")))?;
        if numel != data.len() {
            return Err(Error::invalid(format!(
                "tensor '{name}': shape {shape:?} needs {numel} elements, got {}",
                data.len()
            )));
        }
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": DType::F32.safetensors_name(),
                "shape": shape,
                "data_offsets": [off, off + 4 * numel],
            }),
        );
        off += 4 * numel;
    }
    let mut h = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::invalid(format!("cannot serialise header: {e}")))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + off);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in tensors {
        for v in data.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    write_atomic(path, &out)
}
