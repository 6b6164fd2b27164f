//! Activation-store writing through the C ABI (the llama.cpp adapter's capture).

use std::ffi::c_char;
use std::path::PathBuf;

use saeplug::store::{Split, StoreDType, StoreSpec, StoreWriter};

use crate::enums::code;
use crate::error::{FfiError, saeplug_status};
use crate::handle::{HandleOut, borrow_mut, c_str, check_disjoint, free_handle, output, slice_in};

u32_enum! {
    /// Element type of the activations in a store (`saeplug_store_create`).
    pub enum saeplug_store_dtype {
        /// 32-bit floats: exact.
        F32 = 0,
        /// 16-bit IEEE halves: half the disk; rows beyond its range are skipped.
        F16 = 1,
    }
}

u32_enum! {
    /// The split rows go to (`saeplug_store_append`).
    pub enum saeplug_store_split {
        /// Rows to train on.
        Train = 0,
        /// Rows kept aside for evaluation.
        Heldout = 1,
    }
}

impl From<saeplug_store_split> for Split {
    fn from(s: saeplug_store_split) -> Self {
        match s {
            saeplug_store_split::Train => Split::Train,
            saeplug_store_split::Heldout => Split::Heldout,
        }
    }
}

/// Writer of an activation store folder (safetensors shards + manifest.json; see
/// the saeplug `store` module). Owned by the caller of `saeplug_store_create`;
/// free with `saeplug_store_free`. Use from one thread at a time.
pub struct saeplug_store_writer {
    /// `None` once finished.
    w: Option<StoreWriter>,
}

impl saeplug_store_writer {
    fn live(&mut self) -> Result<&mut StoreWriter, FfiError> {
        self.w
            .as_mut()
            .ok_or_else(|| FfiError::invalid("the store writer was already finished"))
    }
}

/// No layer: pass as `layer` to `saeplug_store_create` for a hook without one.
pub const SAEPLUG_STORE_NO_LAYER: u32 = 0xFFFF_FFFF;

/// Create a new activation store in folder `dir` (created with its parents; it
/// must not already hold a `manifest.json`): rows of `d_in` floats stored as
/// `dtype` (a `saeplug_store_dtype`), `shard_rows` rows per shard (0: about 256
/// MiB per shard), read at hook `hook_name` (e.g. "l_out-6") of block `layer`
/// (`SAEPLUG_STORE_NO_LAYER` if none), sequences of `context_length` tokens,
/// `bos_excluded` non-zero when the caller leaves out each sequence's BOS
/// position. `model_path` (may be NULL) names the model file: its name, size and
/// SHA-256 go into the manifest (the file is read once, here).
/// Returns: OK; NULL_POINTER; INVALID_UTF8; INVALID_ARGUMENT (d_in 0, unknown
/// dtype, a folder that already holds a store); IO (folder not creatable, model
/// unreadable). Memory: on success `*out` owns a new writer (free with
/// `saeplug_store_free`); it buffers up to `shard_rows` rows per split.
/// Thread safety: any thread; distinct folders.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// char dir[4096];
/// snprintf(dir, sizeof dir, "%s/acts-create", tmp_dir);
/// CHECK(saeplug_store_create(dir, 64, SAEPLUG_STORE_DTYPE_F32, 0, "l_out-6", 6, 128, 1, NULL, &w));
/// CHECK(saeplug_store_finish(w)); // an empty, complete store
/// saeplug_store_free(w);
/// // The folder now holds a store: a second one there is refused.
/// assert(saeplug_store_create(dir, 64, SAEPLUG_STORE_DTYPE_F32, 0, "l_out-6", 6, 128, 1, NULL, &w)
///        == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// Strings NULL or NUL-terminated (`model_path` may be NULL); `out` NULL or writable.
#[unsafe(no_mangle)]
#[allow(
    clippy::too_many_arguments,
    reason = "flat C parameters, no option struct"
)]
pub unsafe extern "C" fn saeplug_store_create(
    dir: *const c_char,
    d_in: usize,
    dtype: u32,
    shard_rows: usize,
    hook_name: *const c_char,
    layer: u32,
    context_length: usize,
    bos_excluded: u32,
    model_path: *const c_char,
    out: *mut *mut saeplug_store_writer,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (dir, hook) = unsafe { (c_str(dir, "dir")?, c_str(hook_name, "hook_name")?) };
        let model = if model_path.is_null() {
            None
        } else {
            // SAFETY: non-NULL, NUL-terminated per the caller contract.
            Some(PathBuf::from(unsafe { c_str(model_path, "model_path") }?))
        };
        let out = HandleOut::new(out, "out")?;
        let dtype = match code::<saeplug_store_dtype>("dtype", dtype)? {
            saeplug_store_dtype::F32 => StoreDType::F32,
            saeplug_store_dtype::F16 => StoreDType::F16,
        };
        let mut spec = StoreSpec::new(d_in, hook);
        spec.dtype = dtype;
        if shard_rows > 0 {
            spec.shard_rows = shard_rows;
        }
        spec.layer = (layer != SAEPLUG_STORE_NO_LAYER).then_some(layer);
        spec.context_length = context_length;
        spec.bos_excluded = bos_excluded != 0;
        spec.model_path = model;
        let w = StoreWriter::create(std::path::Path::new(dir), spec)?;
        // SAFETY: writable per the caller contract.
        unsafe { out.set(saeplug_store_writer { w: Some(w) }) };
        Ok(())
    }
}

/// Record a free-form `key` = `value` fact in the store's manifest (its
/// `metadata` object; e.g. the corpus files, the held-out rule); written with the
/// next shard and by `saeplug_store_finish`.
/// Returns: OK; NULL_POINTER; INVALID_UTF8; INVALID_ARGUMENT (writer finished).
/// Memory: the strings are copied. Thread safety: `w` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// char dir[4096];
/// snprintf(dir, sizeof dir, "%s/acts-meta", tmp_dir);
/// CHECK(saeplug_store_create(dir, 64, SAEPLUG_STORE_DTYPE_F16, 0, "resid", SAEPLUG_STORE_NO_LAYER, 0, 0, NULL, &w));
/// CHECK(saeplug_store_set_metadata(w, "corpus", "fortunes"));
/// CHECK(saeplug_store_finish(w));
/// saeplug_store_free(w);
/// ```
///
/// # Safety
/// `w` NULL or live; strings NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_store_set_metadata(
    w: *mut saeplug_store_writer,
    key: *const c_char,
    value: *const c_char,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (w, key, value) = unsafe { (borrow_mut(w, "w")?, c_str(key, "key")?, c_str(value, "value")?) };
        w.live()?.set_metadata(key, value);
        Ok(())
    }
}

/// Append `n_rows` rows to split `split` (a `saeplug_store_split`): `acts`
/// `[n_rows, d_in]` (`acts_len` floats), and per row its token id (`tokens`), its
/// sequence index (`seq`) and position in that sequence (`pos`), each `n_rows`
/// long. Rows holding NaN or infinite values (or beyond F16's range in an F16
/// store) are skipped and counted in the manifest. A shard is written (atomically)
/// whenever `shard_rows` rows of a split are buffered.
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_ARGUMENT (lengths, unknown
/// split, writer finished); IO (writing a shard). Memory: rows are copied into
/// the writer's buffer. Thread safety: `w` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// char dir[4096];
/// float acts[3 * 64];
/// int32_t tokens[3] = {11, 12, 13};
/// uint32_t seq[3] = {0, 0, 0}, pos[3] = {1, 2, 3};
/// uint64_t train, heldout, skipped;
/// for (int i = 0; i < 3 * 64; i++) acts[i] = 0.01f * (float)i;
/// acts[64] = NAN; // row 1 is skipped, never stored
/// snprintf(dir, sizeof dir, "%s/acts-append", tmp_dir);
/// CHECK(saeplug_store_create(dir, 64, SAEPLUG_STORE_DTYPE_F32, 2, "l_out-6", 6, 128, 1, NULL, &w));
/// CHECK(saeplug_store_append(w, SAEPLUG_STORE_SPLIT_TRAIN, acts, 3 * 64, 3, tokens, seq, pos));
/// CHECK(saeplug_store_counts(w, &train, &heldout, &skipped));
/// assert(train == 2 && heldout == 0 && skipped == 1);
/// assert(saeplug_store_append(w, SAEPLUG_STORE_SPLIT_TRAIN, acts, 3 * 64, 2, tokens, seq, pos)
///        == SAEPLUG_STATUS_INVALID_ARGUMENT); // 3 rows of floats, 2 announced
/// CHECK(saeplug_store_finish(w));
/// saeplug_store_free(w);
/// ```
///
/// # Safety
/// `w` NULL or live; `acts` holds `acts_len` floats; `tokens`, `seq`, `pos` hold
/// `n_rows` entries each.
#[unsafe(no_mangle)]
#[allow(
    clippy::too_many_arguments,
    reason = "flat C parameters, one per array"
)]
pub unsafe extern "C" fn saeplug_store_append(
    w: *mut saeplug_store_writer,
    split: u32,
    acts: *const f32,
    acts_len: usize,
    n_rows: usize,
    tokens: *const i32,
    seq: *const u32,
    pos: *const u32,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above (each helper checks NULL and alignment).
        let (w, acts, tokens, seq, pos) = unsafe {
            (
                borrow_mut(w, "w")?,
                slice_in(acts, acts_len, "acts")?,
                slice_in(tokens, n_rows, "tokens")?,
                slice_in(seq, n_rows, "seq")?,
                slice_in(pos, n_rows, "pos")?,
            )
        };
        let split: saeplug_store_split = code("split", split)?;
        w.live()?.append(split.into(), acts, tokens, seq, pos)?;
        Ok(())
    }
}

/// Rows accepted so far per split (written or buffered) and rows skipped for
/// non-finite values. Any output may be NULL.
/// Returns: OK; NULL_POINTER (`w`); INVALID_ARGUMENT (outputs that overlap;
/// writer finished). Memory: nothing allocated.
/// Thread safety: `w` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// char dir[4096];
/// uint64_t train = 9;
/// snprintf(dir, sizeof dir, "%s/acts-counts", tmp_dir);
/// CHECK(saeplug_store_create(dir, 64, SAEPLUG_STORE_DTYPE_F32, 0, "l_out-6", 6, 128, 1, NULL, &w));
/// CHECK(saeplug_store_counts(w, &train, NULL, NULL));
/// assert(train == 0);
/// saeplug_store_free(w); // never finished: the store stays marked incomplete
/// ```
///
/// # Safety
/// `w` NULL or live; outputs NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_store_counts(
    w: *mut saeplug_store_writer,
    train_rows: *mut u64,
    heldout_rows: *mut u64,
    skipped_rows: *mut u64,
) -> saeplug_status {
    ffi_boundary! {
        let n = |p: *mut u64| if p.is_null() { 0 } else { 1 };
        check_disjoint(&[
            output(train_rows, n(train_rows), "train_rows"),
            output(heldout_rows, n(heldout_rows), "heldout_rows"),
            output(skipped_rows, n(skipped_rows), "skipped_rows"),
        ])?;
        // SAFETY: caller contract above.
        let w = unsafe { borrow_mut(w, "w") }?.live()?;
        let vals = [
            w.rows(Split::Train) as u64,
            w.rows(Split::Heldout) as u64,
            w.manifest().skipped_non_finite,
        ];
        for (p, v) in [train_rows, heldout_rows, skipped_rows].into_iter().zip(vals) {
            if !p.is_null() {
                // SAFETY: non-NULL and writable per the caller contract; distinct (checked).
                unsafe { *p = v };
            }
        }
        Ok(())
    }
}

/// Write the buffered rows and the final manifest (`"complete": true`). The
/// writer is finished afterwards whatever the result (free it with
/// `saeplug_store_free`); on an error the store stays marked incomplete, its
/// listed shards whole.
/// Returns: OK; NULL_POINTER; INVALID_ARGUMENT (already finished); IO.
/// Memory: releases the row buffers. Thread safety: `w` by one thread at a time.
///
/// Example:
///
/// ```c
/// saeplug_store_writer *w = NULL;
/// char dir[4096];
/// snprintf(dir, sizeof dir, "%s/acts-finish", tmp_dir);
/// CHECK(saeplug_store_create(dir, 64, SAEPLUG_STORE_DTYPE_F32, 0, "l_out-6", 6, 128, 1, NULL, &w));
/// CHECK(saeplug_store_finish(w));
/// assert(saeplug_store_finish(w) == SAEPLUG_STATUS_INVALID_ARGUMENT); // once only
/// saeplug_store_free(w);
/// ```
///
/// # Safety
/// `w` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_store_finish(w: *mut saeplug_store_writer) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let w = unsafe { borrow_mut(w, "w") }?;
        let writer = w.w.take().ok_or_else(|| FfiError::invalid("the store writer was already finished"))?;
        writer.finish()?;
        Ok(())
    }
}

/// Free a writer; NULL is a no-op; twice is UB. A writer freed before
/// `saeplug_store_finish` loses its buffered rows: the store keeps its whole
/// shards and stays marked incomplete.
/// Returns: nothing. Memory: releases the writer.
/// Thread safety: no call using `w` may be running on another thread.
///
/// Example:
///
/// ```c
/// saeplug_store_free(NULL); // no-op
/// ```
///
/// # Safety
/// `w` NULL or from `saeplug_store_create`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_store_free(w: *mut saeplug_store_writer) {
    ffi_boundary_value! { ();
        // SAFETY: NULL or from saeplug_store_create, freed once (caller contract).
        unsafe { free_handle(w) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_written_through_the_abi_reads_back() {
        let dir = std::env::temp_dir().join(format!("saeplug-ffi-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cdir = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let mut w: *mut saeplug_store_writer = std::ptr::null_mut();
        // SAFETY: valid strings and out pointer.
        let st = unsafe {
            saeplug_store_create(
                cdir.as_ptr(),
                2,
                1,
                2,
                c"l_out-3".as_ptr(),
                3,
                16,
                1,
                std::ptr::null(),
                &mut w,
            )
        };
        assert_eq!(st, saeplug_status::Ok);
        let acts = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (t, s, p) = ([7i32, 8, 9], [0u32, 0, 1], [1u32, 2, 1]);
        // SAFETY: buffers of the stated lengths.
        let st = unsafe {
            saeplug_store_append(
                w,
                1,
                acts.as_ptr(),
                6,
                3,
                t.as_ptr(),
                s.as_ptr(),
                p.as_ptr(),
            )
        };
        assert_eq!(st, saeplug_status::Ok);
        // SAFETY: unknown split code: refused, nothing kept.
        let st = unsafe {
            saeplug_store_append(
                w,
                2,
                acts.as_ptr(),
                6,
                3,
                t.as_ptr(),
                s.as_ptr(),
                p.as_ptr(),
            )
        };
        assert_eq!(st, saeplug_status::InvalidArgument);
        // SAFETY: live writer.
        assert_eq!(unsafe { saeplug_store_finish(w) }, saeplug_status::Ok);
        // SAFETY: from saeplug_store_create, freed once.
        unsafe { saeplug_store_free(w) };
        let store = saeplug::store::ActivationStore::open(&dir).unwrap();
        let m = store.manifest();
        assert_eq!(
            (m.layer, m.dtype, m.context_length),
            (Some(3), StoreDType::F16, 16)
        );
        assert_eq!(m.heldout.shards.len(), 2);
        assert_eq!(store.rows(Split::Heldout, 0, 3).unwrap(), acts);
        assert_eq!(store.tokens(Split::Heldout, 0, 3).unwrap(), t);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
