//! `saeplug_sae`: open, inspect and free an SAE.

use std::ffi::c_char;
use std::sync::Arc;

use saeplug::{Architecture, Sae, TopKOrder};

use crate::error::{FfiError, saeplug_status};
use crate::handle::{borrow, c_str};

/// An SAE mapped from disk. Immutable after open: any number of threads may use
/// one handle concurrently. Owned by the caller of `saeplug_sae_open`; free with
/// `saeplug_sae_free`. Contexts and codes do not keep it alive: free it last.
pub struct saeplug_sae {
    pub(crate) sae: Arc<Sae>,
}

/// Architecture codes reported by `saeplug_sae_get_info`.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum saeplug_architecture {
    /// relu(x W_enc + b_enc).
    Standard = 0,
    /// JumpReLU (also BatchTopK at inference).
    Jumprelu = 1,
    /// Gated SAE.
    Gated = 2,
    /// Top-k SAE.
    Topk = 3,
}

/// Normalisation codes reported by `saeplug_sae_get_info`.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum saeplug_normalization {
    /// No normalisation.
    None = 0,
    /// x * sqrt(d_in) / ||x||.
    ConstantNormRescale = 1,
    /// (x - mean) / (std + 1e-5).
    LayerNorm = 2,
}

/// Plain-data description of an SAE, filled by `saeplug_sae_get_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct saeplug_sae_info {
    /// Input dimension.
    pub d_in: usize,
    /// Number of features.
    pub d_sae: usize,
    /// A `saeplug_architecture` value.
    pub architecture: u32,
    /// Features kept per row for top-k SAEs; 0 otherwise.
    pub k: u32,
    /// A `saeplug_normalization` value.
    pub normalization: u32,
    /// 1 when b_dec is subtracted from the input before encoding.
    pub apply_b_dec_to_input: u32,
    /// 1 when every tensor is borrowed from the file map (no copy was made).
    pub zero_copy: u32,
    /// Top-k order: 0 top-k then ReLU (SAELens), 1 ReLU then top-k (sparsify),
    /// 2 signed, 3 groupmax.
    pub topk_order: u32,
}

/// Open an SAE: a SAELens folder, Gemma Scope 1 `params.npz`, Gemma Scope 2 folder
/// or sparsify folder (the format is detected from the path).
///
/// Parameters: `path` NUL-terminated UTF-8; `out` receives the handle.
/// Returns: `SAEPLUG_STATUS_OK`, or an error status (file errors: IO, FORMAT,
/// MISSING_TENSOR, SHAPE, DTYPE, UNKNOWN_ARCHITECTURE, UNSUPPORTED).
/// Memory and lifetimes: on success `*out` owns a new handle; free it with
/// `saeplug_sae_free`. On failure `*out` is untouched. The weight files are
/// memory-mapped: they must not be modified or truncated while the handle lives.
/// Every compute call first checks the files' size and mtime and returns
/// FILE_CHANGED if they differ from open (a file truncated in place would
/// otherwise fault on access); a truncation *during* a call cannot be caught and
/// may kill the process (SIGBUS), as with any memory map.
/// Thread safety: any thread.
///
/// Example:
///
/// ```c
/// saeplug_sae *s = NULL;
/// saeplug_sae_info info;
/// // A SAELens folder; Gemma Scope params.npz and sparsify folders open the same way.
/// CHECK(saeplug_sae_open(sae_dir, &s));
/// CHECK(saeplug_sae_get_info(s, &info));
/// assert(info.d_in == 64 && info.d_sae == 256 && info.zero_copy);
/// saeplug_sae_free(s);
/// assert(saeplug_sae_open("/nonexistent", &s) == SAEPLUG_STATUS_IO);
/// ```
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_sae_open(
    path: *const c_char,
    out: *mut *mut saeplug_sae,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let path = unsafe { c_str(path, "path") }?;
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let sae = Sae::open(path)?;
        let h = Box::into_raw(Box::new(saeplug_sae { sae: Arc::new(sae) }));
        // SAFETY: `out` is non-null and writable per the caller contract.
        unsafe { *out = h };
        Ok(())
    }
}

/// Free an SAE handle. `saeplug_sae_free(NULL)` is a no-op; freeing twice is
/// undefined behaviour. Thread safety: no call using the handle may be running on
/// another thread.
/// Returns: nothing. Memory: drops the caller's reference; the mapping is unmapped
/// when hooks and recorders made from it are freed too.
///
/// Example:
///
/// ```c
/// saeplug_sae *s = NULL;
/// CHECK(saeplug_sae_open(sae_dir, &s));
/// saeplug_sae_free(s);
/// saeplug_sae_free(NULL); // no-op
/// ```
///
/// # Safety
/// `sae` must be NULL or a handle from `saeplug_sae_open` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_sae_free(sae: *mut saeplug_sae) {
    if sae.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `sae` came from Box::into_raw in saeplug_sae_open and is freed once.
        drop(unsafe { Box::from_raw(sae) });
    });
}

/// Describe an SAE.
///
/// Parameters: `sae` a live handle; `out` receives the description.
/// Returns: OK or NULL_POINTER. Thread safety: any thread.
/// Memory: `*out` is filled by value; nothing to free.
///
/// Example:
///
/// ```c
/// saeplug_sae_info info;
/// CHECK(saeplug_sae_get_info(sae, &info));
/// printf("d_in %zu, d_sae %zu, architecture %u\n", info.d_in, info.d_sae, info.architecture);
/// assert(info.architecture == SAEPLUG_ARCHITECTURE_STANDARD && info.k == 0);
/// ```
///
/// # Safety
/// `sae` must be NULL or a live handle; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_sae_get_info(
    sae: *const saeplug_sae,
    out: *mut saeplug_sae_info,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let sae = &unsafe { borrow(sae, "sae") }?.sae;
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let c = sae.config();
        let (k, order) = match c.architecture {
            Architecture::TopK { k, order, .. } => (
                k as u32,
                match order {
                    TopKOrder::TopKThenRelu => 0,
                    TopKOrder::ReluThenTopK => 1,
                    TopKOrder::Signed => 2,
                    TopKOrder::GroupMax => 3,
                },
            ),
            _ => (0, 0),
        };
        let info = saeplug_sae_info {
            d_in: c.d_in,
            d_sae: c.d_sae,
            architecture: c.architecture.code(),
            k,
            normalization: c.normalization.code(),
            apply_b_dec_to_input: c.apply_b_dec_to_input as u32,
            zero_copy: sae.copied_tensors().is_empty() as u32,
            topk_order: order,
        };
        // SAFETY: `out` is non-null and writable per the caller contract.
        unsafe { *out = info };
        Ok(())
    }
}

/// Check that the SAE's files still have the size and modification time seen at
/// open. Returns OK or FILE_CHANGED (or IO if a file vanished).
/// Thread safety: any thread.
/// Memory: nothing allocated.
///
/// Example:
///
/// ```c
/// // Before a long run, or after an "SAE file updated" notification:
/// CHECK(saeplug_sae_check_unchanged(sae));
/// assert(saeplug_sae_check_unchanged(NULL) == SAEPLUG_STATUS_NULL_POINTER);
/// ```
///
/// # Safety
/// `sae` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_sae_check_unchanged(sae: *const saeplug_sae) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let sae = &unsafe { borrow(sae, "sae") }?.sae;
        sae.check_unchanged()?;
        Ok(())
    }
}
