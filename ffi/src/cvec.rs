//! llama.cpp control-vector export through the C ABI.

use std::ffi::c_char;

use crate::error::saeplug_status;
use crate::handle::{c_str, slice_in};
use crate::hook::check_layer;

/// Write a llama.cpp control-vector GGUF: `n_layers` directions of `n_embd`
/// floats (`data` is `[n_layers, n_embd]`), `layers[k] >= 1` the block whose
/// output direction k steers (llama.cpp `direction.N`).
/// Returns: OK; NULL_POINTER; MISALIGNED; INVALID_UTF8 (paths); INVALID_ARGUMENT
/// (empty, layer 0 or above INT32_MAX, duplicate layers, non-finite values); IO.
/// Memory: inputs are read, not retained; the file is written atomically.
/// Thread safety: any thread (distinct paths).
///
/// Example:
///
/// ```c
/// // "4 x feature 3" as a llama.cpp control vector on block 6's output:
/// //   llama-cli -m model.gguf --control-vector steer.gguf
/// float dir[64];
/// uint32_t layer = 6;
/// char path[4096];
/// snprintf(path, sizeof path, "%s/steer.gguf", tmp_dir);
/// CHECK(saeplug_sae_decoder_row(sae, 3, dir, 64));
/// for (int j = 0; j < 64; j++) dir[j] *= 4.0f;
/// CHECK(saeplug_export_cvec(path, "llama", &layer, 1, dir, 64));
/// layer = 0; // llama.cpp has no direction.0
/// assert(saeplug_export_cvec(path, "llama", &layer, 1, dir, 64) == SAEPLUG_STATUS_INVALID_ARGUMENT);
/// ```
///
/// # Safety
/// `path`, `model_hint` NUL-terminated; `layers` holds `n_layers`, `data`
/// `n_layers * n_embd` values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saeplug_export_cvec(
    path: *const c_char,
    model_hint: *const c_char,
    layers: *const u32,
    n_layers: usize,
    data: *const f32,
    n_embd: usize,
) -> saeplug_status {
    ffi_boundary! {
        // SAFETY: caller contract above.
        let (path, hint, layers, data) = unsafe {
            (
                c_str(path, "path")?,
                c_str(model_hint, "model_hint")?,
                slice_in(layers, n_layers, "layers")?,
                slice_in(data, n_layers.saturating_mul(n_embd), "data")?,
            )
        };
        for &l in layers {
            check_layer("layers", l)?;
        }
        let dirs: Vec<(u32, Vec<f32>)> = layers
            .iter()
            .zip(data.chunks_exact(n_embd.max(1)))
            .map(|(l, v)| (*l, v.to_vec()))
            .collect();
        saeplug::cvec::write_control_vector(std::path::Path::new(path), hint, &dirs)?;
        Ok(())
    }
}
