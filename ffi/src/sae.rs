//! `saeplug_sae`: open, inspect and free an SAE.

use std::ffi::c_char;
use std::sync::Arc;

use saeplug::{Architecture, Sae};

use crate::enums::{saeplug_architecture, saeplug_normalization, saeplug_topk_order};
use crate::error::{FfiError, saeplug_status};
use crate::handle::{HandleOut, borrow, c_str, check_shape, free_handle, slice_out};

/// An SAE mapped from disk. Immutable after open: any number of threads may use
/// one handle concurrently. Owned by the caller of `saeplug_sae_open`; free with
/// `saeplug_sae_free`. Contexts and codes do not keep it alive: free it last.
pub struct saeplug_sae {
    pub(crate) sae: Arc<Sae>,
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
    /// A `saeplug_topk_order` value (0 for SAEs that are not top-k).
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
/// Every compute call first checks the files' size, mtime and identity (device
/// and inode: a file replaced under the same path or deleted is caught too) and
/// returns FILE_CHANGED if they differ from open (a file truncated in place would
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
        let out = HandleOut::new(out, "out")?;
        let sae = Sae::open(path)?;
        // SAFETY: `out` is writable per the caller contract.
        unsafe { out.set(saeplug_sae { sae: Arc::new(sae) }) };
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
    ffi_boundary_value! { ();
        // SAFETY: NULL or from saeplug_sae_open, freed once (caller contract).
        unsafe { free_handle(sae) }
    }
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
                u32::try_from(k).map_err(|_| FfiError::invalid(format!("k = {k} exceeds uint32_t")))?,
                saeplug_topk_order::from(order) as u32,
            ),
            _ => (0, 0),
        };
        let info = saeplug_sae_info {
            d_in: c.d_in,
            d_sae: c.d_sae,
            architecture: saeplug_architecture::from(&c.architecture) as u32,
            k,
            normalization: saeplug_normalization::from(c.normalization) as u32,
            apply_b_dec_to_input: c.apply_b_dec_to_input as u32,
            zero_copy: sae.copied_tensors().is_empty() as u32,
            topk_order: order,
        };
        // SAFETY: `out` is non-null and writable per the caller contract.
        unsafe { *out = info };
        Ok(())
    }
}

/// Check that the SAE's files are still the ones mapped at open: same size,
/// modification time, device and inode (a file replaced under the same path is
/// reported). Returns OK or FILE_CHANGED (or IO if a file vanished).
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

/// Copy decoder row `feature` (`d_in` floats) into `out`.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (feature >= d_sae,
/// `len != d_in`); FILE_CHANGED. On failure `out` is untouched.
/// Memory: copies; nothing retained. Thread safety: any thread.
///
/// Example:
///
/// ```c
/// float d[64], norm = 0.0f;
/// CHECK(saeplug_sae_decoder_row(sae, 42, d, 64)); // feature 42's direction
/// for (int j = 0; j < 64; j++) norm += d[j] * d[j];
/// assert(norm > 0.0f);
/// assert(saeplug_sae_decoder_row(sae, 256, d, 64) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `sae` NULL or live; `out` holds `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_sae_decoder_row(
    sae: *const saeplug_sae,
    feature: u32,
    out: *mut f32,
    len: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (sae, out) = unsafe { (&borrow(sae, "sae")?.sae, slice_out(out, len, "out")?) };
        sae.check_unchanged()?;
        let (d, i) = (sae.d_in(), feature as usize);
        if i >= sae.d_sae() {
            return Err(FfiError::invalid(format!("'feature' = {i} >= d_sae {}", sae.d_sae())));
        }
        check_shape("out", out.len(), 1, d)?;
        out.copy_from_slice(&sae.weights().w_dec.as_slice()[i * d..(i + 1) * d]);
        Ok(())
    }
}
