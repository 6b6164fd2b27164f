//! Memory-mapped weight files and tensor views.
//!
//! This module holds the crate's only `unsafe` block outside the GEMM call:
//! mapping a file. Tensors borrow the map when their bytes are f32, little-endian
//! and 4-byte aligned; otherwise they are converted once into an owned `Vec<f32>`
//! and the copy is recorded (see [`Tensor::is_mapped`]).
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::weights::{SafeTensors, write_safetensors};
//! # let path = std::env::temp_dir().join(format!("saeplug-doc-weights-{}.safetensors", std::process::id()));
//! write_safetensors(&path, &[("W", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])], &Default::default())?;
//! let st = SafeTensors::open(&path)?;
//! let w = st.tensor("W")?;
//! assert!(w.is_mapped()); // a view into the mapped file, no copy
//! assert_eq!((w.shape(), w.as_slice()[5]), (&[2, 3][..], 6.0));
//! # std::fs::remove_file(&path).ok();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use memmap2::Mmap;
use serde_json::Value;

use crate::error::{Error, Result};

/// Element type of a tensor as stored in a file.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::{DType, SafeTensors, write_safetensors};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-dtype-{}.safetensors", std::process::id()));
/// write_safetensors(&path, &[("b", &[4], &[0.0; 4])], &Default::default())?;
/// assert_eq!(SafeTensors::open(&path)?.tensors["b"].dtype, DType::F32);
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary64.
    F64,
}

impl DType {
    /// Size of one element in bytes.
    ///
    /// ```
    /// use saeplug::weights::DType;
    /// assert_eq!(DType::BF16.size(), 2);
    /// assert_eq!(DType::F64.size(), 8);
    /// ```
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F64 => 8,
        }
    }

    fn from_safetensors(s: &str) -> Option<Self> {
        match s {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            "F64" => Some(DType::F64),
            _ => None,
        }
    }

    fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
        }
    }
}

/// A read-only memory map of one file, with the size and modification time seen
/// at open so later changes can be detected.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::MappedFile;
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-map-{}.bin", std::process::id()));
/// std::fs::write(&path, b"saeplug").unwrap();
/// let map = MappedFile::open(&path)?;
/// assert_eq!(map.bytes(), b"saeplug");
/// map.check_unchanged()?;
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    map: Mmap,
    len: u64,
    mtime: Option<SystemTime>,
}

impl MappedFile {
    /// Map `path` read-only.
    ///
    /// The file must not be modified or truncated while mapped (see
    /// [`MappedFile::check_unchanged`], which detects it where the OS allows).
    ///
    /// ```
    /// use saeplug::{ErrorKind, weights::MappedFile};
    /// assert_eq!(MappedFile::open("/nonexistent".as_ref()).unwrap_err().kind(), ErrorKind::Io);
    /// ```
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::format(path, "not a regular file"));
        }
        let map = if meta.len() == 0 {
            // Mapping an empty file fails on some systems; an empty map is fine.
            memmap2::MmapOptions::new()
                .len(0)
                .map_anon()
                .map_err(|e| Error::io(path, e))?
                .make_read_only()
                .map_err(|e| Error::io(path, e))?
        } else {
            // SAFETY: the map is read-only and private to this process. The caller-facing
            // contract (documented on `Sae::open` and in the C header) is that the file is
            // not modified while mapped; `check_unchanged` detects size/mtime changes.
            unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?
        };
        Ok(Arc::new(MappedFile {
            path: path.to_path_buf(),
            len: meta.len(),
            mtime: meta.modified().ok(),
            map,
        }))
    }

    /// The mapped bytes.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-bytes-{}.bin", std::process::id()));
    /// std::fs::write(&path, [1u8, 2, 3]).unwrap();
    /// assert_eq!(saeplug::weights::MappedFile::open(&path)?.bytes(), [1, 2, 3]);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Path the file was opened from.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-path-{}.bin", std::process::id()));
    /// std::fs::write(&path, [0u8]).unwrap();
    /// assert_eq!(saeplug::weights::MappedFile::open(&path)?.path(), path);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Error unless the file on disk still has the size and mtime seen at open.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{ErrorKind, weights::MappedFile};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-chg-{}.bin", std::process::id()));
    /// std::fs::write(&path, [0u8; 64]).unwrap();
    /// let map = MappedFile::open(&path)?;
    /// map.check_unchanged()?;
    /// // Something truncates the file behind our back: detected before any read.
    /// std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(16).unwrap();
    /// assert_eq!(map.check_unchanged().unwrap_err().kind(), ErrorKind::FileChanged);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn check_unchanged(&self) -> Result<()> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io(&self.path, e))?;
        if meta.len() != self.len {
            return Err(Error::FileChanged {
                path: self.path.clone(),
                what: format!("size {} -> {}", self.len, meta.len()),
            });
        }
        if meta.modified().ok() != self.mtime {
            return Err(Error::FileChanged {
                path: self.path.clone(),
                what: "modification time".into(),
            });
        }
        Ok(())
    }
}

/// Where a tensor's data lives inside a mapped file.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::{DType, SafeTensors, write_safetensors};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-info-{}.safetensors", std::process::id()));
/// write_safetensors(&path, &[("W", &[3, 2], &[0.0; 6])], &Default::default())?;
/// let info = &SafeTensors::open(&path)?.tensors["W"];
/// assert_eq!((info.dtype, info.shape.as_slice(), info.numel()), (DType::F32, &[3, 2][..], 6));
/// assert_eq!(info.offset % 4, 0); // aligned, so mapped in place
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Element type in the file.
    pub dtype: DType,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Byte offset of the first element in the file.
    pub offset: usize,
}

impl TensorInfo {
    /// Number of elements.
    ///
    /// ```
    /// use saeplug::weights::{DType, TensorInfo};
    /// let info = TensorInfo { dtype: DType::F16, shape: vec![4, 5], offset: 0 };
    /// assert_eq!(info.numel(), 20);
    /// ```
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug)]
enum Data {
    Mapped {
        file: Arc<MappedFile>,
        offset: usize,
    },
    Owned(Vec<f32>),
}

/// An f32 tensor: a zero-copy view into a mapped file, or an owned buffer when
/// the stored bytes needed conversion (f16, bf16, f64, misaligned).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::Tensor;
/// let t = Tensor::owned("b_dec", vec![3], vec![0.5, 1.5, 2.5])?;
/// assert_eq!((t.name(), t.shape(), t.as_slice()), ("b_dec", &[3][..], &[0.5, 1.5, 2.5][..]));
/// assert!(!t.is_mapped());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Tensor {
    name: String,
    shape: Vec<usize>,
    numel: usize,
    data: Data,
}

impl Tensor {
    /// An owned tensor (used for SAEs built in memory).
    ///
    /// ```
    /// use saeplug::weights::Tensor;
    /// assert!(Tensor::owned("W", vec![2, 2], vec![1.0; 4]).is_ok());
    /// assert!(Tensor::owned("W", vec![2, 2], vec![1.0; 3]).is_err()); // shape and data disagree
    /// ```
    pub fn owned(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let name = name.into();
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::invalid(format!(
                "tensor '{name}': shape {shape:?} needs {numel} elements, got {}",
                data.len()
            )));
        }
        Ok(Tensor {
            name,
            shape,
            numel,
            data: Data::Owned(data),
        })
    }

    /// Read tensor `name` described by `info` from `file`: borrowed when possible.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::weights::{DType, MappedFile, Tensor, TensorInfo};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-raw-{}.bin", std::process::id()));
    /// // Raw little-endian f32 data at offset 8 of a file.
    /// let mut bytes = vec![0u8; 8];
    /// for v in [1.0f32, 2.0, 3.0] { bytes.extend_from_slice(&v.to_le_bytes()); }
    /// std::fs::write(&path, &bytes).unwrap();
    /// let file = MappedFile::open(&path)?;
    /// let t = Tensor::from_file(&file, "v", &TensorInfo { dtype: DType::F32, shape: vec![3], offset: 8 })?;
    /// assert_eq!(t.as_slice(), [1.0, 2.0, 3.0]);
    /// assert!(t.is_mapped());
    /// // A shape that runs past the end of the file is an error, not a crash.
    /// assert!(Tensor::from_file(&file, "v", &TensorInfo { dtype: DType::F32, shape: vec![4], offset: 8 }).is_err());
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn from_file(file: &Arc<MappedFile>, name: &str, info: &TensorInfo) -> Result<Self> {
        let numel = info.numel();
        let nbytes = numel
            .checked_mul(info.dtype.size())
            .ok_or_else(|| Error::format(file.path(), format!("tensor '{name}' is too large")))?;
        let end = info
            .offset
            .checked_add(nbytes)
            .filter(|&e| e <= file.bytes().len())
            .ok_or_else(|| {
                Error::format(
                    file.path(),
                    format!(
                        "tensor '{name}' ({} bytes at offset {}) runs past the end of the file ({} bytes): truncated?",
                        nbytes,
                        info.offset,
                        file.bytes().len()
                    ),
                )
            })?;
        let bytes = &file.bytes()[info.offset..end];
        let shape = info.shape.clone();
        let owned = |v: Vec<f32>| Tensor {
            name: name.to_string(),
            shape: shape.clone(),
            numel,
            data: Data::Owned(v),
        };
        Ok(match info.dtype {
            DType::F32 => {
                if cfg!(target_endian = "little")
                    && bytemuck::try_cast_slice::<u8, f32>(bytes).is_ok()
                {
                    Tensor {
                        name: name.to_string(),
                        shape: shape.clone(),
                        numel,
                        data: Data::Mapped {
                            file: Arc::clone(file),
                            offset: info.offset,
                        },
                    }
                } else {
                    owned(
                        bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    )
                }
            }
            DType::F16 => owned(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            DType::BF16 => owned(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            DType::F64 => owned(
                bytes
                    .chunks_exact(8)
                    .map(|c| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(c);
                        f64::from_le_bytes(a) as f32
                    })
                    .collect(),
            ),
        })
    }

    /// The elements, row-major.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// let t = saeplug::weights::Tensor::owned("W", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])?;
    /// assert_eq!(t.as_slice()[1 * 2 + 0], 3.0); // row-major: W[1][0]
    /// # Ok(()) }
    /// ```
    pub fn as_slice(&self) -> &[f32] {
        match &self.data {
            Data::Owned(v) => v,
            // Alignment and bounds were checked in `from_file`; the map never changes size.
            Data::Mapped { file, offset } => {
                bytemuck::cast_slice(&file.bytes()[*offset..*offset + self.numel * 4])
            }
        }
    }

    /// Tensor name as in the file.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// assert_eq!(saeplug::weights::Tensor::owned("W_dec", vec![1], vec![0.0])?.name(), "W_dec");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shape, outermost first.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// assert_eq!(saeplug::weights::Tensor::owned("W", vec![2, 3], vec![0.0; 6])?.shape(), [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// True when the data is borrowed from the map (zero-copy).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::weights::{SafeTensors, Tensor, write_safetensors};
    /// assert!(!Tensor::owned("W", vec![1], vec![0.0])?.is_mapped());
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-mapped-{}.safetensors", std::process::id()));
    /// write_safetensors(&path, &[("W", &[1], &[0.0])], &Default::default())?;
    /// assert!(SafeTensors::open(&path)?.tensor("W")?.is_mapped());
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Data::Mapped { .. })
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

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
        let (tensors, metadata, unsupported) = parse_safetensors_header(path, file.bytes())?;
        Ok(SafeTensors {
            file,
            tensors,
            metadata,
            unsupported,
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
);

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
    let n = le_u64(bytes);
    let avail = (bytes.len() - 8) as u64;
    if n > avail {
        return Err(Error::format(
            path,
            format!(
                "safetensors header claims {n} bytes but only {avail} follow: truncated or corrupt"
            ),
        ));
    }
    let n = n as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n])
        .map_err(|e| Error::format(path, format!("safetensors header is not valid JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| Error::format(path, "safetensors header is not a JSON object"))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    let mut unsupported = BTreeMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            if let Some(m) = v.as_object() {
                for (k, v) in m {
                    if let Some(s) = v.as_str() {
                        metadata.insert(k.clone(), s.to_string());
                    }
                }
            }
            continue;
        }
        let bad = |what: &str| Error::format(path, format!("tensor '{name}': {what}"));
        let dtype_s = v
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing dtype"))?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape entries must be non-negative integers"))?;
        let offs = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad("data_offsets must be [begin, end]"))?;
        let (b, e) = match (offs[0].as_u64(), offs[1].as_u64()) {
            (Some(b), Some(e)) if b <= e => (b as usize, e as usize),
            _ => return Err(bad("data_offsets must be integers with begin <= end")),
        };
        if e > data_len {
            return Err(bad(&format!(
                "data ends at byte {e} of a {data_len}-byte data section: truncated or header lies"
            )));
        }
        let Some(dtype) = DType::from_safetensors(dtype_s) else {
            // Tensors saeplug never reads may have other dtypes (I64 counters, ...);
            // asking for one of them is an error (see `SafeTensors::tensor`).
            unsupported.insert(name.clone(), dtype_s.to_string());
            continue;
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("shape overflows"))?;
        if numel.checked_mul(dtype.size()) != Some(e - b) {
            return Err(bad(&format!(
                "shape {shape:?} of {dtype_s} needs {} bytes but data_offsets span {}",
                numel.saturating_mul(dtype.size()),
                e - b
            )));
        }
        tensors.insert(
            name.clone(),
            TensorInfo {
                dtype,
                shape,
                offset: data_start + b,
            },
        );
    }
    Ok((tensors, metadata, unsupported))
}

/// Write `bytes` to `path` atomically: a temporary file beside it, then a rename.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-atomic-{}.txt", std::process::id()));
/// saeplug::weights::write_atomic(&path, b"whole or nothing")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"whole or nothing");
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
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
        let numel: usize = shape.iter().product();
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

/// Parse a `.npy` header found at `offset` of `file`, `avail` bytes long.
pub(crate) fn parse_npy(
    file: &MappedFile,
    name: &str,
    offset: usize,
    avail: usize,
) -> Result<TensorInfo> {
    let path = file.path();
    let bad = |what: String| Error::format(path, format!("array '{name}': {what}"));
    let b = file
        .bytes()
        .get(offset..offset.saturating_add(avail))
        .ok_or_else(|| bad("member runs past the end of the file: truncated?".into()))?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array (bad magic)".into()));
    }
    let (hlen, hstart) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => {
            if b.len() < 12 {
                return Err(bad("truncated .npy header".into()));
            }
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = b
        .get(hstart..hstart + hlen)
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = header[i + key.len() + 2..].trim_start();
        Some(rest.strip_prefix(':')?.trim_start())
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("header has no 'descr'".into()))?;
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f2" => DType::F16,
        "<f8" => DType::F64,
        other => {
            return Err(Error::DType {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: other.to_string(),
            });
        }
    };
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(Error::Unsupported(format!(
            "{}: array '{name}' is stored in Fortran order; re-save it C-contiguous",
            path.display()
        )));
    }
    let shape_s = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("header has no 'shape'".into()))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(format!("bad shape '({shape_s})'")))?;
    let data_off = hstart + hlen;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape overflows".into()))?;
    let need = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| bad("shape overflows".into()))?;
    if data_off + need > b.len() {
        return Err(bad(format!(
            "shape {shape:?} needs {need} bytes of data but the member holds {}: truncated or header lies",
            b.len().saturating_sub(data_off)
        )));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        offset: offset + data_off,
    })
}

/// Read a standalone `.npy` file (f32, f16 or f64; C order) as an f32 tensor.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::{read_npy, write_npy};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-read-{}.npy", std::process::id()));
/// write_npy(&path, &[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
/// let t = read_npy(&path)?;
/// assert_eq!((t.shape(), t.as_slice()), (&[2, 2][..], &[1.0, 2.0, 3.0, 4.0][..]));
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let file = MappedFile::open(path)?;
    let info = parse_npy(&file, "array", 0, file.bytes().len())?;
    Tensor::from_file(&file, "array", &info)
}

/// Write an f32 array as a `.npy` file (version 1.0, C order), atomically.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::write_npy;
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-write-{}.npy", std::process::id()));
/// write_npy(&path, &[3], &[1.0, 2.0, 3.0])?; // np.load(path) -> array([1., 2., 3.], dtype=float32)
/// assert_eq!(&std::fs::read(&path).unwrap()[..6], b"\x93NUMPY");
/// assert!(write_npy(&path, &[4], &[1.0]).is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &npy_bytes(shape, data)?)
}

/// The bytes of a `.npy` file holding `data`; the header is padded so the data
/// starts at a multiple of 64 bytes into the file.
pub(crate) fn npy_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows")))?;
    if numel != data.len() {
        return Err(Error::invalid(format!(
            "shape {shape:?} needs {numel} elements, got {}",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let hlen = u16::try_from(h.len())
        .map_err(|_| Error::invalid(format!("shape {shape:?} makes a .npy header too long")))?;
    let mut out = Vec::with_capacity(10 + h.len() + 4 * numel);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}
