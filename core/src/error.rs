//! The one error type of saeplug.

use std::path::PathBuf;

/// Result alias used across the crate.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// fn d_sae_of(dir: &std::path::Path) -> saeplug::Result<usize> {
///     Ok(saeplug::Sae::open(dir)?.d_sae())
/// }
/// assert!(d_sae_of(std::path::Path::new("/nonexistent")).is_err());
/// # Ok(()) }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in saeplug. Every variant carries enough context
/// (path, tensor name, shapes) for the message alone to say what to fix.
///
/// ```
/// use saeplug::{Error, Sae};
/// match Sae::open("/nonexistent/sae") {
///     Err(e @ Error::Io { .. }) => println!("cannot read it: {e}"),
///     Err(e) => println!("not a usable SAE: {e}"),
///     Ok(sae) => println!("d_sae = {}", sae.d_sae()),
/// }
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or mapping a file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// File or folder concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file is truncated, corrupt, or its header contradicts its contents.
    #[error("{path}: {msg}", path = path.display())]
    Format {
        /// File concerned.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor the architecture needs is not in the file.
    #[error("{path}: missing tensor '{name}'", path = path.display())]
    MissingTensor {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor '{name}' has shape {got:?}, expected {expected:?}", path = path.display())]
    Shape {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// What the configuration implies.
        expected: Vec<usize>,
        /// What the file holds.
        got: Vec<usize>,
    },
    /// A tensor's element type is not one saeplug reads.
    #[error("{path}: tensor '{name}' has unsupported dtype '{dtype}' (supported: F32, F16, BF16, F64)", path = path.display())]
    DType {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// The dtype string found.
        dtype: String,
    },
    /// The configuration names an architecture saeplug does not know.
    #[error("unknown architecture '{0}' (known: standard, jumprelu, gated, topk, batchtopk)")]
    UnknownArchitecture(String),
    /// A known feature that is not implemented (yet) for this input.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An argument is out of range, of the wrong length, or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An input activation is NaN or infinite.
    #[error("non-finite input value {value} at row {row}, column {col}")]
    NonFinite {
        /// Row (token) index.
        row: usize,
        /// Column (dimension) index.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// A result computed from finite inputs is NaN or infinite (it overflowed
    /// f32); nothing was written to the caller's buffer where the API promises so.
    #[error("{what}: result overflowed to {value} at row {row}, column {col} (finite inputs)")]
    NonFiniteOutput {
        /// Which result.
        what: &'static str,
        /// Row (token) index.
        row: usize,
        /// Column index.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// The mapped file changed on disk after it was opened.
    #[error("{path}: file changed on disk since it was mapped ({what})", path = path.display())]
    FileChanged {
        /// File concerned.
        path: PathBuf,
        /// What changed: replaced, deleted, size or modification time.
        what: String,
    },
    /// A compute backend failed (device lost, out of memory, driver error).
    #[error("backend error: {0}")]
    Backend(String),
}

impl Error {
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// A coarse, exhaustive classification of [`Error`], stable for bindings.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Backend, CpuBackend, ErrorKind};
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
/// let x = vec![f32::NAN; 8];
/// let mut f = vec![0.0; 32];
/// let err = CpuBackend::new(1).encode(&sae, &x, &mut f).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NonFinite);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// [`Error::Io`].
    Io,
    /// [`Error::Format`].
    Format,
    /// [`Error::MissingTensor`].
    MissingTensor,
    /// [`Error::Shape`].
    Shape,
    /// [`Error::DType`].
    DType,
    /// [`Error::UnknownArchitecture`].
    UnknownArchitecture,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::NonFinite`].
    NonFinite,
    /// [`Error::FileChanged`].
    FileChanged,
    /// [`Error::Backend`].
    Backend,
}

impl Error {
    /// The error's kind.
    ///
    /// ```
    /// use saeplug::{ErrorKind, Sae};
    /// let err = Sae::open("/nonexistent/sae").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Io);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Format { .. } => ErrorKind::Format,
            Error::MissingTensor { .. } => ErrorKind::MissingTensor,
            Error::Shape { .. } => ErrorKind::Shape,
            Error::DType { .. } => ErrorKind::DType,
            Error::UnknownArchitecture(_) => ErrorKind::UnknownArchitecture,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NonFinite { .. } | Error::NonFiniteOutput { .. } => ErrorKind::NonFinite,
            Error::FileChanged { .. } => ErrorKind::FileChanged,
            Error::Backend(_) => ErrorKind::Backend,
        }
    }
}
