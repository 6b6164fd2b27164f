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
mod cvec;
mod enums;
mod error;
mod handle;
mod hook;
mod recorder;
mod sae;
mod solve;
mod store;
mod train;

pub use ctx::*;
pub use cvec::*;
#[doc(hidden)]
pub use enums::{CEnum, Variant, header_enums};
pub use enums::{
    saeplug_architecture, saeplug_backend, saeplug_edit_kind, saeplug_normalization,
    saeplug_positions, saeplug_replace, saeplug_solver, saeplug_topk_order,
};
pub use error::*;
pub use hook::*;
pub use recorder::*;
pub use sae::*;
pub use solve::*;
pub use store::*;
pub use train::*;

/// ABI major version: hosts must refuse a library whose major differs. The
/// shared library's SONAME is `libsaeplug.so.<major>`.
///
/// 1: `saeplug_ctx_solve` runs on the context's backend and thread count (was:
/// the CPU with every core); thread counts above 256, layers above INT32_MAX,
/// positions overflowing size_t and overlapping input/output buffers are refused
/// with INVALID_ARGUMENT (were: accepted); a failing call leaves every output
/// untouched on every backend (GPU encode/decode wrote `out` pass by pass).
pub const SAEPLUG_ABI_VERSION_MAJOR: u32 = 1;
/// ABI minor version: additions only (1.0: the typed enums `saeplug_topk_order`,
/// `saeplug_edit_kind`, `saeplug_positions`, `saeplug_replace`; 1.1: the
/// activation-store writer `saeplug_store_*` and its enums; 1.2: training and
/// evaluation, `saeplug_train_*`, `saeplug_trainer_*`, `saeplug_eval_store`, and
/// the status CANCELLED).
pub const SAEPLUG_ABI_VERSION_MINOR: u32 = 2;

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
    ffi_boundary_value! { 0;
        (SAEPLUG_ABI_VERSION_MAJOR << 16) | SAEPLUG_ABI_VERSION_MINOR
    }
}
