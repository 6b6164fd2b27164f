//! `saeplug_ctx`: a compute context (backend choice) and the encode/decode calls.

use std::ffi::c_char;

use saeplug::{Backend, CpuBackend, Sae, SparseCodes, WgpuBackend, WgpuOptions};

use crate::error::{FfiError, saeplug_status};
use crate::handle::{borrow, borrow_mut, check_shape, slice_in, slice_out, write_csr};
use crate::sae::saeplug_sae;

/// Backend choice for `saeplug_ctx_new`.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum saeplug_backend {
    /// A hardware GPU (discrete, integrated or virtual) when one exists, else the CPU.
    Auto = 0,
    /// Multi-threaded CPU.
    Cpu = 1,
    /// GPU through wgpu/Vulkan (any adapter, including Mesa's software lavapipe);
    /// `$SAEPLUG_ADAPTER` selects an adapter by name.
    Gpu = 2,
}

/// A compute context: a backend and its workspaces. Owned by the caller of
/// `saeplug_ctx_new`; free with `saeplug_ctx_free`. Use from one thread at a
/// time (create one context per thread); SAE handles may be shared.
pub struct saeplug_ctx {
    backend: Box<dyn Backend>,
    name: &'static std::ffi::CStr,
}

/// Create a context.
///
/// Parameters: `backend` a `saeplug_backend` value; `threads` worker threads for
/// the CPU backend (0 = all cores); `out` receives the handle.
/// Returns: OK; INVALID_ARGUMENT for an unknown backend; BACKEND when the GPU
/// backend was asked for and no adapter could be opened. Memory: on success `*out` owns a new handle, freed with
/// `saeplug_ctx_free`. Thread safety: any thread.
///
/// Example:
///
/// ```c
/// saeplug_ctx *cpu = NULL;
/// CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 2, &cpu)); // 2 worker threads
/// assert(strcmp(saeplug_ctx_backend_name(cpu), "cpu") == 0);
/// saeplug_ctx_free(cpu);
/// assert(saeplug_ctx_new(7, 0, &cpu) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_new(
    backend: u32,
    threads: u32,
    out: *mut *mut saeplug_ctx,
) -> saeplug_status {
    ffi_boundary! {
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let cpu = || -> (Box<dyn Backend>, &'static std::ffi::CStr) {
            (Box::new(CpuBackend::new(threads as usize)), c"cpu")
        };
        let (backend, name) = match backend {
            0 => match WgpuBackend::new(WgpuOptions::default()) {
                Ok(g) if g.adapter_info().device_type != wgpu_cpu_type() => {
                    (Box::new(g) as Box<dyn Backend>, c"wgpu")
                }
                _ => cpu(),
            },
            1 => cpu(),
            2 => (Box::new(WgpuBackend::new(WgpuOptions::default())?) as Box<dyn Backend>, c"wgpu"),
            b => return Err(FfiError::invalid(format!("unknown backend {b}"))),
        };
        let h = Box::into_raw(Box::new(saeplug_ctx { backend, name }));
        // SAFETY: `out` is non-null and writable per the caller contract.
        unsafe { *out = h };
        Ok(())
    }
}

impl saeplug_ctx {
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }
}

/// Name of the context's backend ("cpu" or "wgpu"): a static string, never NULL
/// (NULL `ctx` gives "").
/// Returns: a static string; do not free.
/// Memory: nothing allocated. Thread safety: any thread (reads an immutable field).
///
/// Example:
///
/// ```c
/// printf("encoding on %s\n", saeplug_ctx_backend_name(ctx));
/// assert(strcmp(saeplug_ctx_backend_name(NULL), "") == 0);
/// ```
///
/// # Safety
/// `ctx` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_backend_name(ctx: *const saeplug_ctx) -> *const c_char {
    // SAFETY: caller contract above; `as_ref` handles NULL.
    match unsafe { ctx.as_ref() } {
        Some(c) => c.name.as_ptr(),
        None => c"".as_ptr(),
    }
}

fn wgpu_cpu_type() -> saeplug::wgpu_types::DeviceType {
    saeplug::wgpu_types::DeviceType::Cpu
}

/// Free a context. `saeplug_ctx_free(NULL)` is a no-op; freeing twice is UB.
/// Returns: nothing. Memory: releases the context and its GPU resources, including
/// the weights it uploaded (a GPU context keeps each SAE it used uploaded until then).
/// Thread safety: no call on `ctx` may be running on another thread.
///
/// Example:
///
/// ```c
/// saeplug_ctx *c = NULL;
/// CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1, &c));
/// saeplug_ctx_free(c);
/// saeplug_ctx_free(NULL); // no-op
/// ```
///
/// # Safety
/// `ctx` must be NULL or a handle from `saeplug_ctx_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_free(ctx: *mut saeplug_ctx) {
    if ctx.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `ctx` came from Box::into_raw in saeplug_ctx_new and is freed once.
        drop(unsafe { Box::from_raw(ctx) });
    }));
}

/// Borrowed arguments of a dense call: context, SAE, input rows, output rows.
type DenseArgs<'a> = (&'a mut saeplug_ctx, &'a Sae, &'a [f32], &'a mut [f32]);

/// What the dense calls share: borrow the context, the SAE, one input and one
/// output buffer; check that the SAE's files are unchanged and that both buffers
/// hold `n_rows` rows of the widths `widths` gives (input, output).
///
/// # Safety
/// Handles NULL or live; `input.0` holds `input.1` floats, `out.0` holds `out.1`.
unsafe fn dense_args<'a>(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    input: (*const f32, usize, &str),
    n_rows: usize,
    out: (*mut f32, usize),
    widths: impl Fn(&Sae) -> (usize, usize),
) -> Result<DenseArgs<'a>, FfiError> {
    // SAFETY: forwarded to the caller (each helper checks NULL and alignment).
    let (ctx, sae, x, out) = unsafe {
        (
            borrow_mut(ctx, "ctx")?,
            &borrow(sae, "sae")?.sae,
            slice_in(input.0, input.1, input.2)?,
            slice_out(out.0, out.1, "out")?,
        )
    };
    sae.check_unchanged()?;
    let (w_in, w_out) = widths(sae);
    check_shape(input.2, x.len(), n_rows, w_in)?;
    check_shape("out", out.len(), n_rows, w_out)?;
    Ok((ctx, sae, x, out))
}

/// Dense encode: `out[n_rows, d_sae] = encode(x[n_rows, d_in])`.
///
/// Parameters: `x`/`x_len` input activations row-major (`x_len == n_rows * d_in`);
/// `out`/`out_len` output features (`out_len == n_rows * d_sae`).
/// Returns: OK; NULL_POINTER, INVALID_ARGUMENT (lengths), MISALIGNED, NON_FINITE
/// (NaN/inf in `x`). On failure `out` may have been partly written.
/// Memory: nothing is retained after the call. Thread safety: `ctx` by one thread
/// at a time; `sae` may be shared.
///
/// Example:
///
/// ```c
/// float x[2 * 64], f[2 * 256];
/// for (int i = 0; i < 2 * 64; i++) x[i] = (float)(i % 7) - 3.0f;
/// CHECK(saeplug_ctx_encode(ctx, sae, x, 2 * 64, 2, f, 2 * 256));
/// for (int i = 0; i < 2 * 256; i++) assert(f[i] >= 0.0f); // a ReLU SAE
/// // A wrong output length is refused before anything is computed.
/// assert(saeplug_ctx_encode(ctx, sae, x, 2 * 64, 2, f, 256) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_encode(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
    out: *mut f32,
    out_len: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, sae, x, out) = unsafe {
            dense_args(ctx, sae, (x, x_len, "x"), n_rows, (out, out_len), |s| (s.d_in(), s.d_sae()))
        }?;
        ctx.backend.encode(sae, x, out)?;
        Ok(())
    }
}

/// Sparse encode into caller buffers in CSR form: row r's features are
/// `indices[row_offsets[r] .. row_offsets[r+1]]` (ascending) with `values` alongside.
///
/// Parameters: `x`/`x_len` as for `saeplug_ctx_encode`; `row_offsets` has
/// `n_rows + 1` entries; `indices` and `values` have `capacity` entries each;
/// `out_nnz` receives the number of nonzeros.
/// Returns: OK; BUFFER_TOO_SMALL when the nonzeros exceed `capacity` (the needed
/// capacity is written to `*out_nnz`, nothing else); other errors as for encode.
/// Memory: nothing retained. Thread safety: as for `saeplug_ctx_encode`.
///
/// Example:
///
/// ```c
/// float x[64];
/// size_t offs[2], nnz = 0, need = 0;
/// uint32_t idx[256];
/// float val[256];
/// for (int j = 0; j < 64; j++) x[j] = sinf((float)j);
/// CHECK(saeplug_ctx_encode_sparse(ctx, sae, x, 64, 1, offs, idx, val, 256, &nnz));
/// assert(offs[0] == 0 && offs[1] == nnz);
/// // Capacity too small: BUFFER_TOO_SMALL, with the capacity needed in *out_nnz.
/// if (nnz > 0) {
///     assert(saeplug_ctx_encode_sparse(ctx, sae, x, 64, 1, offs, idx, val, nnz - 1, &need)
///            == SAEPLUG_STATUS_BUFFER_TOO_SMALL);
///     assert(need == nnz);
/// }
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_encode_sparse(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
    row_offsets: *mut usize,
    indices: *mut u32,
    values: *mut f32,
    capacity: usize,
    out_nnz: *mut usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above (each helper checks NULL and alignment).
        let (ctx, sae, x, offs, idx, val, nnz_out) = unsafe {
            (
                borrow_mut(ctx, "ctx")?,
                &borrow(sae, "sae")?.sae,
                slice_in(x, x_len, "x")?,
                slice_out(row_offsets, n_rows.saturating_add(1), "row_offsets")?,
                slice_out(indices, capacity, "indices")?,
                slice_out(values, capacity, "values")?,
                borrow_mut(out_nnz, "out_nnz")?,
            )
        };
        sae.check_unchanged()?;
        check_shape("x", x.len(), n_rows, sae.d_in())?;
        let codes = ctx.backend.encode_sparse(sae, x)?;
        write_csr(&codes, offs, idx, val, nnz_out)?;
        Ok(())
    }
}

/// Dense decode: `out[n_rows, d_in] = f[n_rows, d_sae] W_dec + b_dec`.
///
/// SAEs that normalise their input (layer_norm, constant_norm_rescale) need the
/// per-row statistics of the encode: use `saeplug_ctx_reconstruct` for them
/// (this call returns INVALID_ARGUMENT).
/// Returns: OK; NULL_POINTER, INVALID_ARGUMENT (lengths, non-finite codes), MISALIGNED.
/// Memory: nothing retained. Thread safety: as for `saeplug_ctx_encode`.
///
/// Example:
///
/// ```c
/// float f[256] = {0}, zero[256] = {0}, out[64], b_dec[64], d10[64];
/// f[10] = 1.5f;
/// CHECK(saeplug_ctx_decode(ctx, sae, f, 256, 1, out, 64));
/// CHECK(saeplug_ctx_decode(ctx, sae, zero, 256, 1, b_dec, 64)); // no features: b_dec
/// CHECK(saeplug_sae_decoder_row(sae, 10, d10, 64));
/// for (int j = 0; j < 64; j++) assert(fabsf(out[j] - (1.5f * d10[j] + b_dec[j])) < 1e-4f);
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_decode(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    f: *const f32,
    f_len: usize,
    n_rows: usize,
    out: *mut f32,
    out_len: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, sae, f, out) = unsafe {
            dense_args(ctx, sae, (f, f_len, "f"), n_rows, (out, out_len), |s| (s.d_sae(), s.d_in()))
        }?;
        ctx.backend.decode(sae, f, &[], out)?;
        Ok(())
    }
}

/// Sparse decode of CSR codes (as written by `saeplug_ctx_encode_sparse`) in
/// O(nnz * d_in). `nnz` is the length of `indices` and `values`;
/// `row_offsets` has `n_rows + 1` entries. Normalising SAEs: see `saeplug_ctx_decode`.
/// Returns: OK; NULL_POINTER, INVALID_ARGUMENT (offsets, indices >= d_sae,
/// lengths, non-finite values), MISALIGNED.
/// Thread safety: as for `saeplug_ctx_encode`.
/// Memory: nothing retained after the call.
///
/// Example:
///
/// ```c
/// size_t offs[2] = {0, 1};
/// uint32_t idx[1] = {10};
/// float val[1] = {1.5f}, dense[256] = {0}, a[64], b[64];
/// dense[10] = 1.5f;
/// CHECK(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, val, 1, 1, a, 64));
/// CHECK(saeplug_ctx_decode(ctx, sae, dense, 256, 1, b, 64));
/// for (int j = 0; j < 64; j++) assert(fabsf(a[j] - b[j]) < 1e-5f);
/// idx[0] = 256; // >= d_sae
/// assert(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, val, 1, 1, a, 64)
///        == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_decode_sparse(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    row_offsets: *const usize,
    indices: *const u32,
    values: *const f32,
    nnz: usize,
    n_rows: usize,
    out: *mut f32,
    out_len: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above (each helper checks NULL and alignment).
        let (ctx, sae, offs, idx, val, out) = unsafe {
            (
                borrow_mut(ctx, "ctx")?,
                &borrow(sae, "sae")?.sae,
                slice_in(row_offsets, n_rows.saturating_add(1), "row_offsets")?,
                slice_in(indices, nnz, "indices")?,
                slice_in(values, nnz, "values")?,
                slice_out(out, out_len, "out")?,
            )
        };
        sae.check_unchanged()?;
        check_shape("out", out.len(), n_rows, sae.d_in())?;
        let codes = SparseCodes {
            row_offsets: offs.to_vec(),
            indices: idx.to_vec(),
            values: val.to_vec(),
            d_sae: sae.d_sae(),
            denorm: Vec::new(),
        };
        ctx.backend.decode_sparse(sae, &codes, out)?;
        Ok(())
    }
}

/// Reconstruction `out = decode(encode(x))`, with the SAE's normalisation undone
/// per row. Lengths: `x_len == out_len == n_rows * d_in`.
/// Returns: as for `saeplug_ctx_encode`. Thread safety: as for `saeplug_ctx_encode`.
/// Memory: nothing retained after the call.
///
/// Example:
///
/// ```c
/// float x[64], recon[64], err = 0.0f, norm = 0.0f;
/// for (int j = 0; j < 64; j++) x[j] = sinf(0.3f * (float)j);
/// CHECK(saeplug_ctx_reconstruct(ctx, sae, x, 64, 1, recon, 64));
/// for (int j = 0; j < 64; j++) {
///     err += (x[j] - recon[j]) * (x[j] - recon[j]);
///     norm += x[j] * x[j];
/// }
/// printf("relative squared reconstruction error %.3f\n", err / norm);
/// ```
///
/// # Safety
/// Handles must be NULL or live; buffers must hold their stated lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_ctx_reconstruct(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    x: *const f32,
    x_len: usize,
    n_rows: usize,
    out: *mut f32,
    out_len: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (ctx, sae, x, out) = unsafe {
            dense_args(ctx, sae, (x, x_len, "x"), n_rows, (out, out_len), |s| (s.d_in(), s.d_in()))
        }?;
        let codes = ctx.backend.encode_sparse(sae, x)?;
        ctx.backend.decode_sparse(sae, &codes, out)?;
        Ok(())
    }
}
