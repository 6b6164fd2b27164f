//! cxx bridge: C++ engines built statically get RAII types over the saeplug core.
//! `rust::Box<Sae>` and friends free themselves; `Result` errors become C++
//! exceptions (`rust::Error`). Every bridge function calls only non-panicking core
//! code (errors are values), as cxx aborts on a panic. Link this crate's staticlib
//! *instead of* saeplug-ffi's, never both.
//!
//! The items are used from C++ (`#include "saeplug-cxx/src/lib.rs.h"`); the
//! compiled and tested version of this example is `tests/cpp/bridge.cc`, built
//! with `-Wall -Wextra -Werror` under ASan/UBSan by `tests/c_abi.rs`:
//!
//! ```cpp
//! auto sae = saeplug::open_sae("path/to/sae");          // rust::Box<Sae>, throws rust::Error
//! auto ctx = saeplug::new_context(0);                   // all cores
//! std::vector<float> x(n * sae->d_in()), f(n * sae->d_sae());
//! ctx->encode(*sae, rust::Slice<const float>(x.data(), x.size()),
//!             rust::Slice<float>(f.data(), f.size()));
//! auto hook = saeplug::new_hook(*sae, 6);               // layer 6
//! hook->last_position_only();
//! hook->clamp(123, 8.0f);                               // throws on feature >= d_sae
//! ctx->apply(*hook, rust::Slice<float>(x.data(), x.size()), pos0);
//! ```
#![warn(missing_docs)]

use std::sync::Arc;

use saeplug::Backend;

/// An SAE (shared, immutable).
pub struct Sae(Arc<saeplug::Sae>);
/// A CPU compute context.
pub struct Context(saeplug::CpuBackend);
/// A steering hook.
pub struct Hook(saeplug::hook::Hook);

#[cxx::bridge(namespace = "saeplug")]
mod ffi {
    extern "Rust" {
        type Sae;
        type Context;
        type Hook;

        /// Open an SAE (SAELens, Gemma Scope, sparsify).
        fn open_sae(path: &str) -> Result<Box<Sae>>;
        fn d_in(self: &Sae) -> usize;
        fn d_sae(self: &Sae) -> usize;

        /// A CPU context with `threads` threads (0 = all cores; more than the
        /// CPU backend's maximum throws).
        fn new_context(threads: usize) -> Result<Box<Context>>;
        /// Dense encode: `out.len() == rows * d_sae`. `x` and `out` may not
        /// overlap (throws); on error `out` is untouched.
        fn encode(self: &Context, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<()>;
        /// Decode + denormalise: `out.len() == rows * d_in`. `x` and `out` may
        /// not overlap (throws); on error `out` is untouched.
        fn reconstruct(self: &Context, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<()>;
        /// Apply a hook in place; the first row is at absolute position `pos0`.
        fn apply(self: &Context, hook: &Hook, x: &mut [f32], pos0: usize) -> Result<()>;

        /// A hook on `layer`, all positions, no edits (a layer above INT32_MAX,
        /// a negative int converted, throws).
        fn new_hook(sae: &Sae, layer: u32) -> Result<Box<Hook>>;
        fn clamp(self: &mut Hook, feature: usize, value: f32) -> Result<()>;
        fn ablate(self: &mut Hook, feature: usize) -> Result<()>;
        fn add_feature(self: &mut Hook, feature: usize, coef: f32) -> Result<()>;
        fn last_position_only(self: &mut Hook);
    }
}

fn open_sae(path: &str) -> Result<Box<Sae>, saeplug::Error> {
    Ok(Box::new(Sae(Arc::new(saeplug::Sae::open(path)?))))
}

impl Sae {
    fn d_in(&self) -> usize {
        self.0.d_in()
    }
    fn d_sae(&self) -> usize {
        self.0.d_sae()
    }
}

fn new_context(threads: usize) -> Result<Box<Context>, saeplug::Error> {
    Ok(Box::new(Context(saeplug::CpuBackend::try_new(threads)?)))
}

/// Refuse an output that overlaps the input (C++ may pass views of one buffer),
/// then compute into scratch memory and copy into `out` only on success.
fn write_last(
    x: &[f32],
    out: &mut [f32],
    compute: impl FnOnce(&mut [f32]) -> Result<(), saeplug::Error>,
) -> Result<(), saeplug::Error> {
    let xs = x.as_ptr_range();
    let os = out.as_ptr_range();
    if !x.is_empty() && !out.is_empty() && xs.start < os.end && os.start < xs.end {
        return Err(saeplug::Error::InvalidArgument(
            "'x' and 'out' overlap: use a separate output buffer".into(),
        ));
    }
    let mut scratch = vec![0.0f32; out.len()];
    compute(&mut scratch)?;
    out.copy_from_slice(&scratch);
    Ok(())
}

impl Context {
    fn encode(&self, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<(), saeplug::Error> {
        write_last(x, out, |o| self.0.encode(&sae.0, x, o).map(|_| ()))
    }
    fn reconstruct(&self, sae: &Sae, x: &[f32], out: &mut [f32]) -> Result<(), saeplug::Error> {
        write_last(x, out, |o| {
            let codes = self.0.encode_sparse(&sae.0, x)?;
            self.0.decode_sparse(&sae.0, &codes, o)
        })
    }
    fn apply(&self, hook: &Hook, x: &mut [f32], pos0: usize) -> Result<(), saeplug::Error> {
        hook.0.apply(&self.0, x, pos0)
    }
}

fn new_hook(sae: &Sae, layer: u32) -> Result<Box<Hook>, saeplug::Error> {
    if layer > i32::MAX as u32 {
        return Err(saeplug::Error::InvalidArgument(format!(
            "'layer' = {layer} is out of range (at most {}; a negative int converted?)",
            i32::MAX
        )));
    }
    Ok(Box::new(Hook(saeplug::hook::Hook::new(
        Arc::clone(&sae.0),
        layer,
    ))))
}

impl Hook {
    fn push(&mut self, feature: usize, e: saeplug::steer::Edit) -> Result<(), saeplug::Error> {
        if feature >= self.0.sae.d_sae() {
            return Err(saeplug::Error::InvalidArgument(format!(
                "feature {feature} >= d_sae {}",
                self.0.sae.d_sae()
            )));
        }
        self.0.edits.push(e);
        Ok(())
    }
    fn clamp(&mut self, feature: usize, value: f32) -> Result<(), saeplug::Error> {
        self.push(feature, saeplug::steer::Edit::Clamp { feature, value })
    }
    fn ablate(&mut self, feature: usize) -> Result<(), saeplug::Error> {
        self.push(feature, saeplug::steer::Edit::Ablate { feature })
    }
    fn add_feature(&mut self, feature: usize, coef: f32) -> Result<(), saeplug::Error> {
        self.push(feature, saeplug::steer::Edit::AddFeature { feature, coef })
    }
    fn last_position_only(&mut self) {
        self.0.positions = saeplug::hook::Positions::Last;
    }
}
