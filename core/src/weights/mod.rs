//! Memory-mapped weight files and tensor views, one concern per file:
//! `mapping` (opening regular files, the map, change detection), `tensor`
//! (dtypes and f32 views), `safetensors` and `npy` (parsers and writers),
//! `atomic` (atomic output files).
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

mod atomic;
mod mapping;
mod npy;
mod safetensors;
mod tensor;

pub use atomic::write_atomic;
pub(crate) use atomic::write_atomic_with;
pub use mapping::{MappedFile, open_regular};
pub use npy::{MAX_NPY_HEADER_BYTES, read_npy, write_npy};
pub(crate) use npy::{npy_bytes, parse_npy};
pub(crate) use safetensors::RawTensor;
pub use safetensors::{MAX_HEADER_BYTES, SafeTensors, write_safetensors};
pub(crate) use tensor::first_non_finite;
pub use tensor::{DType, Tensor, TensorInfo};
