//! Status codes and the thread-local last error.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

use saeplug::{Error, ErrorKind};

u32_enum! {
    /// Result of every fallible call. Values are stable: never renumbered.
    pub enum saeplug_status {
        /// Success.
        Ok = 0,
        /// An argument is out of range or inconsistent (see the last error message).
        InvalidArgument = 1,
        /// A required pointer argument is NULL.
        NullPointer = 2,
        /// An output buffer is too small; the needed length was written to `*out_needed`.
        BufferTooSmall = 3,
        /// A buffer pointer is not aligned for its element type.
        Misaligned = 4,
        /// An input value is NaN or infinite.
        NonFinite = 5,
        /// A string argument is not valid UTF-8.
        InvalidUtf8 = 6,
        /// A caller's callback asked the call to stop (training: state checkpointed).
        Cancelled = 7,
        /// Reading or mapping a file failed.
        Io = 100,
        /// A file is truncated or corrupt, or its header lies about its contents.
        Format = 101,
        /// A tensor the architecture needs is missing.
        MissingTensor = 102,
        /// A tensor has the wrong shape.
        Shape = 103,
        /// A tensor has an unsupported element type.
        Dtype = 104,
        /// The configuration names an unknown architecture.
        UnknownArchitecture = 105,
        /// A known feature that is not supported for this input.
        Unsupported = 106,
        /// The mapped file changed on disk after it was opened.
        FileChanged = 107,
        /// The compute backend failed.
        Backend = 200,
        /// A bug: a Rust panic was caught at the boundary.
        Panic = 255,
    }
}

impl saeplug_status {
    fn describe(self) -> &'static std::ffi::CStr {
        use saeplug_status as S;
        match self {
            S::Ok => c"ok",
            S::InvalidArgument => c"invalid argument",
            S::NullPointer => c"null pointer",
            S::BufferTooSmall => c"buffer too small",
            S::Misaligned => c"misaligned buffer",
            S::NonFinite => c"non-finite input",
            S::InvalidUtf8 => c"invalid UTF-8",
            S::Cancelled => c"cancelled by the caller",
            S::Io => c"I/O error",
            S::Format => c"corrupt or truncated file",
            S::MissingTensor => c"missing tensor",
            S::Shape => c"wrong tensor shape",
            S::Dtype => c"unsupported dtype",
            S::UnknownArchitecture => c"unknown architecture",
            S::Unsupported => c"unsupported",
            S::FileChanged => c"file changed on disk",
            S::Backend => c"backend error",
            S::Panic => c"internal error (panic)",
        }
    }
}

/// An error on its way out through the C ABI.
#[derive(Debug)]
pub struct FfiError {
    pub(crate) status: saeplug_status,
    pub(crate) message: String,
}

impl FfiError {
    pub(crate) fn new(status: saeplug_status, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(name: &str) -> Self {
        Self::new(saeplug_status::NullPointer, format!("'{name}' is NULL"))
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::new(saeplug_status::InvalidArgument, msg)
    }

    pub(crate) fn panic(p: Box<dyn std::any::Any + Send>) -> Self {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Self::new(
            saeplug_status::Panic,
            format!("internal error (panic): {what}"),
        )
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        use saeplug_status as S;
        let status = match e.kind() {
            ErrorKind::Io => S::Io,
            ErrorKind::Format => S::Format,
            ErrorKind::MissingTensor => S::MissingTensor,
            ErrorKind::Shape => S::Shape,
            ErrorKind::DType => S::Dtype,
            ErrorKind::UnknownArchitecture => S::UnknownArchitecture,
            ErrorKind::Unsupported => S::Unsupported,
            ErrorKind::InvalidArgument => S::InvalidArgument,
            ErrorKind::NonFinite => S::NonFinite,
            ErrorKind::FileChanged => S::FileChanged,
            ErrorKind::Backend => S::Backend,
        };
        FfiError::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Store `e` as this thread's last error; returns its status.
pub(crate) fn set_last_error(e: FfiError) -> saeplug_status {
    let msg = CString::new(e.message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(msg));
    e.status
}

/// Length in bytes of this thread's last error message, including the
/// terminating NUL; 0 when no call on this thread has failed.
///
/// Thread safety: reads this thread's state only.
/// Returns: the length, or 0. Memory: nothing allocated.
///
/// Example:
///
/// ```c
/// saeplug_sae *none = NULL;
/// char *msg;
/// assert(saeplug_sae_open("/nonexistent/sae", &none) == SAEPLUG_STATUS_IO);
/// msg = malloc(saeplug_last_error_length());
/// assert(msg != NULL);
/// saeplug_last_error_message(msg, saeplug_last_error_length());
/// assert(strstr(msg, "/nonexistent/sae") != NULL); // the message names the path
/// free(msg);
/// ```
#[unsafe(no_mangle)]
pub extern "C" fn saeplug_last_error_length() -> usize {
    ffi_boundary_value! { 0;
        LAST_ERROR.with(|l| l.borrow().as_ref().map_or(0, |m| m.as_bytes().len() + 1))
    }
}

/// Copy this thread's last error message into `buf` (capacity `len` bytes),
/// truncating if needed; always NUL-terminates when `len > 0`.
///
/// Returns the number of bytes written excluding the NUL (0 if none, or if
/// `buf` is NULL or `len` is 0).
/// Memory: nothing allocated; the message stays owned by the library.
/// Thread safety: reads this thread's state only.
///
/// Example:
///
/// ```c
/// char buf[256];
/// float x[64] = {0};
/// size_t n;
/// assert(saeplug_ctx_encode(ctx, NULL, x, 64, 1, NULL, 0) == SAEPLUG_STATUS_NULL_POINTER);
/// n = saeplug_last_error_message(buf, sizeof buf);
/// assert(n > 0 && strlen(buf) == n);
/// fprintf(stderr, "expected error: %s\n", buf);
/// ```
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_last_error_message(buf: *mut c_char, len: usize) -> usize {
    ffi_boundary_value! { 0;
        if buf.is_null() || len == 0 {
            return 0;
        }
        LAST_ERROR.with(|l| {
            let l = l.borrow();
            let bytes = l.as_ref().map_or(&[][..], |m| m.as_bytes());
            let n = bytes.len().min(len - 1);
            // SAFETY: caller guarantees `buf` has `len` writable bytes; we write n + 1 <= len.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n) = 0;
            }
            n
        })
    }
}

/// A static, NUL-terminated description of a status code (unknown codes are
/// described as "invalid argument"). Never NULL; do not free.
/// Returns: the description. Memory: static storage; do not free.
/// Thread safety: any thread.
///
/// Example:
///
/// ```c
/// printf("%s\n", saeplug_status_str(SAEPLUG_STATUS_FILE_CHANGED));
/// assert(saeplug_status_str(12345) != NULL); // unknown codes still get a string
/// ```
#[unsafe(no_mangle)]
pub extern "C" fn saeplug_status_str(status: u32) -> *const c_char {
    ffi_boundary_value! { c"internal error (panic)".as_ptr();
        saeplug_status::try_from(status)
            .unwrap_or(saeplug_status::InvalidArgument)
            .describe()
            .as_ptr()
    }
}
