//! Pointer and slice helpers: every check that guards the boundary lives here.

use std::ffi::{CStr, c_char};

use crate::error::{FfiError, saeplug_status};

/// Borrow `*p` immutably.
///
/// # Safety
/// `p` must be NULL or point to a live `T` not mutated for `'a`.
pub(crate) unsafe fn borrow<'a, T>(p: *const T, name: &str) -> Result<&'a T, FfiError> {
    // SAFETY: forwarded to the caller; `as_ref` handles NULL.
    unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// Borrow `*p` mutably.
///
/// # Safety
/// `p` must be NULL or point to a live `T` not aliased for `'a`.
pub(crate) unsafe fn borrow_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, FfiError> {
    // SAFETY: forwarded to the caller; `as_mut` handles NULL.
    unsafe { p.as_mut() }.ok_or_else(|| FfiError::null(name))
}

fn check_ptr<T>(p: *const T, n: usize, name: &str) -> Result<bool, FfiError> {
    if n == 0 {
        return Ok(false);
    }
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    if !p.is_aligned() {
        return Err(FfiError::new(
            saeplug_status::Misaligned,
            format!("'{name}' is not aligned for its element type"),
        ));
    }
    if n.checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(FfiError::invalid(format!(
            "'{name}': length {n} is too large"
        )));
    }
    Ok(true)
}

/// `(p, n)` as a slice; `(NULL, 0)` is empty.
///
/// # Safety
/// When `n > 0`, `p` must point to `n` readable `T`s not mutated for `'a`.
pub(crate) unsafe fn slice_in<'a, T>(
    p: *const T,
    n: usize,
    name: &str,
) -> Result<&'a [T], FfiError> {
    if !check_ptr(p, n, name)? {
        return Ok(&[]);
    }
    // SAFETY: non-null, aligned, size fits isize; the caller guarantees n readable elements.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// `(p, n)` as a mutable slice; `(NULL, 0)` is empty.
///
/// # Safety
/// When `n > 0`, `p` must point to `n` writable `T`s not aliased for `'a`.
pub(crate) unsafe fn slice_out<'a, T>(
    p: *mut T,
    n: usize,
    name: &str,
) -> Result<&'a mut [T], FfiError> {
    if !check_ptr(p, n, name)? {
        return Ok(&mut []);
    }
    // SAFETY: non-null, aligned, size fits isize; the caller guarantees n writable, unaliased elements.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-null; the caller guarantees NUL termination and lifetime.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        FfiError::new(
            saeplug_status::InvalidUtf8,
            format!("'{name}' is not valid UTF-8"),
        )
    })
}

/// Check `rows * width == len` for a caller buffer.
pub(crate) fn check_shape(
    name: &str,
    len: usize,
    rows: usize,
    width: usize,
) -> Result<(), FfiError> {
    match rows.checked_mul(width) {
        Some(n) if n == len => Ok(()),
        _ => Err(FfiError::invalid(format!(
            "'{name}' has length {len}, expected n_rows ({rows}) x {width}"
        ))),
    }
}

/// Copy CSR codes into caller buffers, or report the capacity needed
/// (BUFFER_TOO_SMALL, `*nnz_out` = needed, nothing else written).
pub(crate) fn write_csr(
    codes: &saeplug::SparseCodes,
    offs: &mut [usize],
    idx: &mut [u32],
    val: &mut [f32],
    nnz_out: &mut usize,
) -> Result<(), FfiError> {
    let nnz = codes.indices.len();
    if nnz > idx.len() {
        *nnz_out = nnz;
        return Err(FfiError::new(
            saeplug_status::BufferTooSmall,
            format!("sparse codes need capacity {nnz}, got {}", idx.len()),
        ));
    }
    offs.copy_from_slice(&codes.row_offsets);
    idx[..nnz].copy_from_slice(&codes.indices);
    val[..nnz].copy_from_slice(&codes.values);
    *nnz_out = nnz;
    Ok(())
}
