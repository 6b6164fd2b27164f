//! C ABI of saeplug. The only `extern "C"` code of the project; `include/saeplug.h`
//! is generated from this crate by cbindgen and checked in.
#![warn(missing_docs)]
#![allow(
    non_camel_case_types,
    reason = "C type names follow the header's snake_case"
)]

#[macro_use]
mod boundary;
mod ctx;
mod error;
mod handle;
mod hook;
mod sae;
mod solve;

pub use ctx::*;
pub use error::*;
pub use hook::*;
pub use sae::*;
pub use solve::*;

/// ABI major version: hosts must refuse a library whose major differs.
pub const SAEPLUG_ABI_VERSION_MAJOR: u32 = 0;
/// ABI minor version: additions only.
pub const SAEPLUG_ABI_VERSION_MINOR: u32 = 1;

/// The library's ABI version as `(major << 16) | minor`.
///
/// Compare `saeplug_abi_version() >> 16` with `SAEPLUG_ABI_VERSION_MAJOR`.
/// Thread safety: any thread.
/// Returns: the version. Memory: nothing allocated.
///
/// Example:
///
/// ```c
/// assert(saeplug_abi_version() >> 16 == SAEPLUG_ABI_VERSION_MAJOR);
/// ```
#[unsafe(no_mangle)]
pub extern "C" fn saeplug_abi_version() -> u32 {
    (SAEPLUG_ABI_VERSION_MAJOR << 16) | SAEPLUG_ABI_VERSION_MINOR
}
