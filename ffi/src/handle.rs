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

/// A handle out-parameter, checked for NULL before any work is done; the handle
/// is stored by [`HandleOut::set`] only once the call has succeeded.
pub(crate) struct HandleOut<T>(*mut *mut T);

impl<T> HandleOut<T> {
    /// Refuse a NULL `out`.
    pub(crate) fn new(out: *mut *mut T, name: &str) -> Result<Self, FfiError> {
        if out.is_null() {
            return Err(FfiError::null(name));
        }
        Ok(HandleOut(out))
    }

    /// Move `value` into a new handle and store it: the only place a handle is made.
    ///
    /// # Safety
    /// The pointer given to [`HandleOut::new`] must be writable.
    pub(crate) unsafe fn set(self, value: T) {
        let h = Box::into_raw(Box::new(value));
        // SAFETY: non-null (checked in `new`) and writable per the caller contract.
        unsafe { *self.0 = h };
    }
}

/// Free a handle made by [`HandleOut::set`]; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or a handle made by `HandleOut::set` for `T`, not yet freed.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: from Box::into_raw in HandleOut::set, freed once per the caller contract.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// A caller buffer as an address range, for the overlap check (taken before any
/// slice is made, since aliasing slices would already be undefined behaviour).
#[derive(Clone, Copy)]
pub(crate) struct Region {
    start: usize,
    len: usize,
    name: &'static str,
    output: bool,
}

/// The `n` elements of type `T` at `p`, read by the call.
pub(crate) fn input<T>(p: *const T, n: usize, name: &'static str) -> Region {
    Region {
        start: p as usize,
        len: n.saturating_mul(size_of::<T>()),
        name,
        output: false,
    }
}

/// The `n` elements of type `T` at `p`, written by the call.
pub(crate) fn output<T>(p: *mut T, n: usize, name: &'static str) -> Region {
    Region {
        output: true,
        ..input(p.cast_const(), n, name)
    }
}

/// Refuse any output buffer that shares memory with another buffer of the call
/// (input or output), naming both: results are computed before anything is
/// written, so an in-place call would have to mean something; none is defined.
pub(crate) fn check_disjoint(regions: &[Region]) -> Result<(), FfiError> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if !(a.output || b.output) || a.len == 0 || b.len == 0 || a.start == 0 || b.start == 0 {
                continue;
            }
            let (a_end, b_end) = (a.start.saturating_add(a.len), b.start.saturating_add(b.len));
            if a.start < b_end && b.start < a_end {
                return Err(FfiError::invalid(format!(
                    "'{}' and '{}' overlap: output buffers may not share memory with any \
                     other buffer of the call (use a separate output buffer)",
                    a.name, b.name
                )));
            }
        }
    }
    Ok(())
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
