//! `saeplug_ctx`: a compute context (backend choice) and the encode/decode calls.

use std::ffi::{CStr, c_char};

use saeplug::{Backend, CpuBackend, Sae, SparseCodes};

use crate::enums::{code, saeplug_backend};
use crate::error::{FfiError, saeplug_status};
use crate::handle::{
    HandleOut, borrow, borrow_mut, check_disjoint, check_shape, free_handle, input, output,
    slice_in, slice_out, write_csr,
};
use crate::sae::saeplug_sae;

/// A CPU backend with `threads` workers (0 = all cores), refusing counts above
/// `saeplug::backend::cpu::MAX_THREADS` before any thread is spawned.
fn cpu_backend(threads: u32) -> Result<CpuBackend, FfiError> {
    CpuBackend::try_new(threads as usize).map_err(|e| {
        let mut e = FfiError::from(e);
        e.message = format!("'threads' = {threads}: {}", e.message);
        e
    })
}

/// What computes for a context.
enum Engine {
    Cpu(CpuBackend),
    /// Boxed: the GPU backend is large and a context is made once.
    #[cfg(feature = "gpu")]
    Gpu(Box<saeplug::WgpuBackend>),
}

/// A compute context: a backend and its workspaces. Owned by the caller of
/// `saeplug_ctx_new`; free with `saeplug_ctx_free`. Use from one thread at a
/// time (create one context per thread); SAE handles may be shared.
pub struct saeplug_ctx {
    engine: Engine,
}

impl saeplug_ctx {
    fn new(kind: saeplug_backend, threads: u32) -> Result<Self, FfiError> {
        let cpu = cpu_backend(threads)?;
        let engine = match kind {
            saeplug_backend::Cpu => Engine::Cpu(cpu),
            #[cfg(feature = "gpu")]
            saeplug_backend::Auto => {
                match saeplug::WgpuBackend::new(saeplug::WgpuOptions::default()) {
                    Ok(gpu)
                        if gpu.adapter_info().device_type
                            != saeplug::wgpu_types::DeviceType::Cpu =>
                    {
                        Engine::Gpu(Box::new(gpu))
                    }
                    _ => Engine::Cpu(cpu),
                }
            }
            #[cfg(feature = "gpu")]
            saeplug_backend::Gpu => Engine::Gpu(Box::new(saeplug::WgpuBackend::new(
                saeplug::WgpuOptions::default(),
            )?)),
            #[cfg(not(feature = "gpu"))]
            saeplug_backend::Auto => Engine::Cpu(cpu),
            #[cfg(not(feature = "gpu"))]
            saeplug_backend::Gpu => {
                return Err(FfiError::new(
                    saeplug_status::Unsupported,
                    "'backend' = SAEPLUG_BACKEND_GPU: this library was built without GPU \
                     support (saeplug-ffi's `gpu` cargo feature is off); use \
                     SAEPLUG_BACKEND_CPU or SAEPLUG_BACKEND_AUTO",
                ));
            }
        };
        Ok(saeplug_ctx { engine })
    }

    /// The backend every compute call of this context runs on (encode, decode,
    /// solve, hooks, recording).
    pub(crate) fn backend(&self) -> &dyn Backend {
        match &self.engine {
            Engine::Cpu(cpu) => cpu,
            #[cfg(feature = "gpu")]
            Engine::Gpu(gpu) => &**gpu,
        }
    }

    fn name(&self) -> &'static CStr {
        match &self.engine {
            Engine::Cpu(_) => c"cpu",
            #[cfg(feature = "gpu")]
            Engine::Gpu(_) => c"wgpu",
        }
    }
}

/// Create a context.
///
/// Parameters: `backend` a `saeplug_backend` value; `threads` worker threads for
/// a CPU context (0 = all cores, at most 256; checked for every backend, a GPU
/// context does not use them); `out` receives the handle.
/// Returns: OK; INVALID_ARGUMENT for an unknown backend or more than 256
/// threads; UNSUPPORTED for SAEPLUG_BACKEND_GPU in a library built without GPU
/// support (AUTO then gives a CPU context); BACKEND when the GPU backend was asked
/// for and no adapter could be opened. Memory: on success `*out` owns a new
/// handle, freed with `saeplug_ctx_free`; on failure `*out` is untouched.
/// Thread safety: any thread.
///
/// Example:
///
/// ```c
/// saeplug_ctx *cpu = NULL;
/// CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 2, &cpu)); // 2 worker threads
/// assert(strcmp(saeplug_ctx_backend_name(cpu), "cpu") == 0);
/// saeplug_ctx_free(cpu);
/// cpu = NULL;
/// assert(saeplug_ctx_new(7, 0, &cpu) == SAEPLUG_STATUS_INVALID_ARGUMENT); // no such backend
/// assert(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1u << 30, &cpu) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// assert(cpu == NULL);
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
        let out = HandleOut::new(out, "out")?;
        let ctx = saeplug_ctx::new(code("backend", backend)?, threads)?;
        // SAFETY: `out` is writable per the caller contract.
        unsafe { out.set(ctx) };
        Ok(())
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
    ffi_boundary_value! { c"".as_ptr();
        // SAFETY: caller contract above; `as_ref` handles NULL.
        match unsafe { ctx.as_ref() } {
            Some(c) => c.name().as_ptr(),
            None => c"".as_ptr(),
        }
    }
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
    ffi_boundary_value! { ();
        // SAFETY: NULL or from saeplug_ctx_new, freed once (caller contract).
        unsafe { free_handle(ctx) }
    }
}

/// Borrowed arguments of a dense call: context, SAE, input rows, output rows.
type DenseArgs<'a> = (&'a mut saeplug_ctx, &'a Sae, &'a [f32], &'a mut [f32]);

/// What the dense calls share: borrow the context, the SAE, one input and one
/// output buffer (refusing overlapping ones); check that the SAE's files are
/// unchanged and that both buffers hold `n_rows` rows of the widths `widths`
/// gives (input, output).
///
/// # Safety
/// Handles NULL or live; `input.0` holds `input.1` floats, `out.0` holds `out.1`.
unsafe fn dense_args<'a>(
    ctx: *mut saeplug_ctx,
    sae: *const saeplug_sae,
    x: (*const f32, usize, &'static str),
    n_rows: usize,
    out: (*mut f32, usize),
    widths: impl Fn(&Sae) -> (usize, usize),
) -> Result<DenseArgs<'a>, FfiError> {
    check_disjoint(&[input(x.0, x.1, x.2), output(out.0, out.1, "out")])?;
    // SAFETY: forwarded to the caller (each helper checks NULL and alignment);
    // the two buffers do not overlap.
    let (ctx, sae, xs, outs) = unsafe {
        (
            borrow_mut(ctx, "ctx")?,
            &borrow(sae, "sae")?.sae,
            slice_in(x.0, x.1, x.2)?,
            slice_out(out.0, out.1, "out")?,
        )
    };
    sae.check_unchanged()?;
    let (w_in, w_out) = widths(sae);
    check_shape(x.2, xs.len(), n_rows, w_in)?;
    check_shape("out", outs.len(), n_rows, w_out)?;
    Ok((ctx, sae, xs, outs))
}

/// Run `compute` into scratch memory the size of `out` and copy the result into
/// `out` only when it succeeded: a failing call (on any backend, at any pass)
/// leaves the caller's buffer as it was.
fn write_last(
    out: &mut [f32],
    compute: impl FnOnce(&mut [f32]) -> saeplug::Result<()>,
) -> Result<(), FfiError> {
    let mut scratch = vec![0.0f32; out.len()];
    compute(&mut scratch)?;
    out.copy_from_slice(&scratch);
    Ok(())
}

/// Dense encode: `out[n_rows, d_sae] = encode(x[n_rows, d_in])`.
///
/// Parameters: `x`/`x_len` input activations row-major (`x_len == n_rows * d_in`);
/// `out`/`out_len` output features (`out_len == n_rows * d_sae`).
/// Returns: OK; NULL_POINTER, INVALID_ARGUMENT (lengths), MISALIGNED, NON_FINITE
/// (NaN/inf in `x`);
/// INVALID_ARGUMENT when `x` and `out` overlap. On failure `out` is untouched (the
/// result is computed into scratch memory first, on every backend).
/// Memory: the result is computed into a scratch buffer the size of `out`
/// (allocated for the call), then copied; nothing is retained after the call.
/// Thread safety: `ctx` by one thread
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
        write_last(out, |o| ctx.backend().encode(sae, x, o).map(drop))
    }
}

/// Sparse encode into caller buffers in CSR form: row r's features are
/// `indices[row_offsets[r] .. row_offsets[r+1]]` (ascending) with `values` alongside.
///
/// Parameters: `x`/`x_len` as for `saeplug_ctx_encode`; `row_offsets` has
/// `n_rows + 1` entries; `indices` and `values` have `capacity` entries each;
/// `out_nnz` receives the number of nonzeros.
/// Returns: OK; BUFFER_TOO_SMALL when the nonzeros exceed `capacity` (the needed
/// capacity is written to `*out_nnz`, nothing else); INVALID_ARGUMENT when an
/// output overlaps `x` or another output; other errors as for encode (no
/// output written).
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
        check_disjoint(&[
            input(x, x_len, "x"),
            output(row_offsets, n_rows.saturating_add(1), "row_offsets"),
            output(indices, capacity, "indices"),
            output(values, capacity, "values"),
            output(out_nnz, 1, "out_nnz"),
        ])?;
        // SAFETY: caller contract above (each helper checks NULL and alignment);
        // no output overlaps another buffer.
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
        let codes = ctx.backend().encode_sparse(sae, x)?;
        write_csr(&codes, offs, idx, val, nnz_out)?;
        Ok(())
    }
}

/// Dense decode: `out[n_rows, d_in] = f[n_rows, d_sae] W_dec + b_dec`.
///
/// SAEs that normalise their input (layer_norm, constant_norm_rescale) need the
/// per-row statistics of the encode: use `saeplug_ctx_reconstruct` for them
/// (this call returns INVALID_ARGUMENT).
/// Returns: OK; NULL_POINTER, INVALID_ARGUMENT (lengths, non-finite codes, `f`
/// and `out` overlapping: no in-place decode), MISALIGNED. On failure `out` is
/// untouched.
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
        write_last(out, |o| ctx.backend().decode(sae, f, &[], o))
    }
}

/// Sparse decode of CSR codes (as written by `saeplug_ctx_encode_sparse`) in
/// O(nnz * d_in). `nnz` is the length of `indices` and `values`;
/// `row_offsets` has `n_rows + 1` entries. Normalising SAEs: see `saeplug_ctx_decode`.
/// Returns: OK; NULL_POINTER, INVALID_ARGUMENT (offsets, indices >= d_sae,
/// lengths, non-finite values, `out` overlapping an input), MISALIGNED. On
/// failure `out` is untouched.
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
        check_disjoint(&[
            input(row_offsets, n_rows.saturating_add(1), "row_offsets"),
            input(indices, nnz, "indices"),
            input(values, nnz, "values"),
            output(out, out_len, "out"),
        ])?;
        // SAFETY: caller contract above (each helper checks NULL and alignment);
        // `out` overlaps no input.
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
        write_last(out, |o| ctx.backend().decode_sparse(sae, &codes, o))
    }
}

/// Reconstruction `out = decode(encode(x))`, with the SAE's normalisation undone
/// per row. Lengths: `x_len == out_len == n_rows * d_in`.
/// Returns: as for `saeplug_ctx_encode` (`x` and `out` may not overlap).
/// Thread safety: as for `saeplug_ctx_encode`.
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
/// // In place (out overlapping x) is refused, naming both buffers.
/// assert(saeplug_ctx_reconstruct(ctx, sae, x, 64, 1, x, 64) == SAEPLUG_STATUS_INVALID_ARGUMENT);
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
        write_last(out, |o| {
            let codes = ctx.backend().encode_sparse(sae, x)?;
            ctx.backend().decode_sparse(sae, &codes, o)
        })
    }
}
