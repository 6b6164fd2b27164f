//! Element types, tensor locations and f32 tensor views.

use std::sync::Arc;

use super::mapping::MappedFile;
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

    pub(super) fn from_safetensors(s: &str) -> Option<Self> {
        match s {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            "F64" => Some(DType::F64),
            _ => None,
        }
    }

    pub(super) fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
        }
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
    /// Number of elements (`usize::MAX` when the product overflows, which no file
    /// can hold).
    ///
    /// ```
    /// use saeplug::weights::{DType, TensorInfo};
    /// let info = TensorInfo { dtype: DType::F16, shape: vec![4, 5], offset: 0 };
    /// assert_eq!(info.numel(), 20);
    /// let huge = TensorInfo { dtype: DType::F32, shape: vec![usize::MAX, 2], offset: 0 };
    /// assert_eq!(huge.numel(), usize::MAX);
    /// ```
    pub fn numel(&self) -> usize {
        checked_numel(&self.shape).unwrap_or(usize::MAX)
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
        let numel = checked_numel(&shape)
            .ok_or_else(|| Error::invalid(format!("tensor '{name}': shape {shape:?} overflows")))?;
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
        let nbytes = checked_numel(&info.shape)
            .and_then(|n| n.checked_mul(info.dtype.size()))
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
        let numel = nbytes / info.dtype.size();
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

/// The number of elements of `shape`, or `None` when the product overflows.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Index of the first NaN or infinite value of `v`, if any. Scans in blocks with a
/// branch-free test so the common all-finite case runs at memory speed.
pub(crate) fn first_non_finite(v: &[f32]) -> Option<usize> {
    const BLOCK: usize = 1024;
    for (b, chunk) in v.chunks(BLOCK).enumerate() {
        // An f32 is finite iff its exponent bits are not all ones.
        let bad = chunk.iter().fold(false, |acc, x| {
            acc | (x.to_bits() & 0x7f80_0000 == 0x7f80_0000)
        });
        if bad {
            let i = chunk.iter().position(|x| !x.is_finite()).unwrap_or(0);
            return Some(b * BLOCK + i);
        }
    }
    None
}
