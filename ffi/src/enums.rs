//! The C enums of the ABI. Each comes from one `u32_enum!` list: the Rust enum,
//! its `TryFrom<u32>` and its C declaration in include/saeplug.h (cbindgen does
//! not expand macros, so ffi/tests/header.rs hands it `header_enums()` to place
//! after the includes). Functions that *receive* a code take `uint32_t` and
//! convert it with [`code`], which names the parameter and the value it refused.

use saeplug::hook::{Positions, Replace};
use saeplug::solve::Solver;
use saeplug::{Architecture, Normalization, TopKOrder};

use crate::error::FfiError;

/// One variant of a C enum.
#[doc(hidden)]
pub struct Variant {
    /// Rust name (UpperCamelCase); the C name is `C_NAME` + `_` + it in SCREAMING_SNAKE_CASE.
    pub name: &'static str,
    /// Value.
    pub value: u32,
    /// Doc comment lines.
    pub doc: &'static [&'static str],
}

/// What `u32_enum!` records about an enum, for the header and for error messages.
#[doc(hidden)]
pub trait CEnum: TryFrom<u32, Error = u32> + Copy {
    /// C type name.
    const C_NAME: &'static str;
    /// Doc comment lines.
    const DOC: &'static [&'static str];
    /// Variants in declaration order.
    const VARIANTS: &'static [Variant];
}

/// `UpperCamelCase` as `SCREAMING_SNAKE_CASE` (cbindgen's rule: a word starts at
/// an upper-case letter that follows a lower-case letter or a digit).
fn screaming(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The C name of a variant, e.g. `SAEPLUG_BACKEND_GPU`.
fn c_variant<T: CEnum>(v: &Variant) -> String {
    format!("{}_{}", T::C_NAME.to_ascii_uppercase(), screaming(v.name))
}

fn doc_block(lines: &[&str], indent: &str, out: &mut String) {
    if lines.is_empty() {
        return;
    }
    out.push_str(&format!("{indent}/**\n"));
    for l in lines {
        out.push_str(&format!("{indent} *{}\n", l.trim_end()));
    }
    out.push_str(&format!("{indent} */\n"));
}

/// The C declaration of `T`, laid out as cbindgen lays out a `#[repr(u32)]` enum
/// with `cpp_compat` (a fixed `uint32_t` underlying type in C++ and C23, the
/// type name a `uint32_t` typedef in older C).
fn c_declaration<T: CEnum>() -> String {
    let n = T::C_NAME;
    let mut s = String::new();
    doc_block(T::DOC, "", &mut s);
    s.push_str(&format!(
        "enum {n}\n#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L\n  : uint32_t\n\
         #endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L\n {{\n"
    ));
    for v in T::VARIANTS {
        doc_block(v.doc, "  ", &mut s);
        s.push_str(&format!("  {} = {},\n", c_variant::<T>(v), v.value));
    }
    s.push_str(&format!(
        "}};\n#ifndef __cplusplus\n#if __STDC_VERSION__ >= 202311L\ntypedef enum {n} {n};\n#else\n\
         typedef uint32_t {n};\n#endif // __STDC_VERSION__ >= 202311L\n#endif // __cplusplus\n"
    ));
    s
}

/// The C declarations of every enum of the ABI, in header order.
#[doc(hidden)]
pub fn header_enums() -> String {
    let decls = [
        c_declaration::<crate::error::saeplug_status>(),
        c_declaration::<saeplug_backend>(),
        c_declaration::<saeplug_architecture>(),
        c_declaration::<saeplug_normalization>(),
        c_declaration::<saeplug_topk_order>(),
        c_declaration::<saeplug_solver>(),
        c_declaration::<saeplug_edit_kind>(),
        c_declaration::<saeplug_positions>(),
        c_declaration::<saeplug_replace>(),
        c_declaration::<crate::store::saeplug_store_dtype>(),
        c_declaration::<crate::store::saeplug_store_split>(),
        c_declaration::<crate::train::saeplug_train_arch>(),
    ];
    decls.join("\n")
}

/// Convert a code received as `uint32_t` in parameter `param`; an unknown value
/// is INVALID_ARGUMENT naming the parameter, the value and the accepted codes.
pub(crate) fn code<T: CEnum>(param: &str, v: u32) -> Result<T, FfiError> {
    T::try_from(v).map_err(|v| {
        let known: Vec<String> = T::VARIANTS
            .iter()
            .map(|k| format!("{} = {}", c_variant::<T>(k), k.value))
            .collect();
        FfiError::invalid(format!(
            "'{param}' = {v} is not a {} ({})",
            T::C_NAME,
            known.join(", ")
        ))
    })
}

u32_enum! {
    /// Backend choice for `saeplug_ctx_new`.
    pub enum saeplug_backend {
        /// A hardware GPU (discrete, integrated or virtual) when one exists and the
        /// library was built with GPU support, else the CPU.
        Auto = 0,
        /// Multi-threaded CPU.
        Cpu = 1,
        /// GPU through wgpu/Vulkan (any adapter, including Mesa's software lavapipe);
        /// `$SAEPLUG_ADAPTER` selects an adapter by name. A library built without
        /// its `gpu` feature returns SAEPLUG_STATUS_UNSUPPORTED for it.
        Gpu = 2,
    }
}

u32_enum! {
    /// Architecture codes reported by `saeplug_sae_get_info`.
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
}

impl From<&Architecture> for saeplug_architecture {
    fn from(a: &Architecture) -> Self {
        match a {
            Architecture::Standard => Self::Standard,
            Architecture::JumpRelu => Self::Jumprelu,
            Architecture::Gated => Self::Gated,
            Architecture::TopK { .. } => Self::Topk,
        }
    }
}

u32_enum! {
    /// Normalisation codes reported by `saeplug_sae_get_info`.
    pub enum saeplug_normalization {
        /// No normalisation.
        None = 0,
        /// x * sqrt(d_in) / ||x||.
        ConstantNormRescale = 1,
        /// (x - mean) / (std + 1e-5).
        LayerNorm = 2,
    }
}

impl From<Normalization> for saeplug_normalization {
    fn from(n: Normalization) -> Self {
        match n {
            Normalization::None => Self::None,
            Normalization::ConstantNormRescale => Self::ConstantNormRescale,
            Normalization::LayerNorm => Self::LayerNorm,
        }
    }
}

u32_enum! {
    /// Top-k order codes reported by `saeplug_sae_get_info` (`topk_order`; 0 for
    /// SAEs that are not top-k).
    pub enum saeplug_topk_order {
        /// Top-k, then ReLU (SAELens).
        TopkThenRelu = 0,
        /// ReLU, then top-k (sparsify).
        ReluThenTopk = 1,
        /// Top-k by absolute value, signs kept.
        Signed = 2,
        /// The maximum of each of k groups.
        Groupmax = 3,
    }
}

impl From<TopKOrder> for saeplug_topk_order {
    fn from(o: TopKOrder) -> Self {
        match o {
            TopKOrder::TopKThenRelu => Self::TopkThenRelu,
            TopKOrder::ReluThenTopK => Self::ReluThenTopk,
            TopKOrder::Signed => Self::Signed,
            TopKOrder::GroupMax => Self::Groupmax,
        }
    }
}

u32_enum! {
    /// Solver codes for `saeplug_ctx_solve` and `saeplug_hook_set_solver`.
    pub enum saeplug_solver {
        /// Matching pursuit.
        Mp = 0,
        /// Orthogonal matching pursuit (its per-row Cholesky refits run on the CPU,
        /// also on a GPU context).
        Omp = 1,
        /// Gradient pursuit with the exact line-search step.
        Gp = 2,
    }
}

impl From<saeplug_solver> for Solver {
    fn from(s: saeplug_solver) -> Self {
        match s {
            saeplug_solver::Mp => Solver::MatchingPursuit,
            saeplug_solver::Omp => Solver::OrthogonalMatchingPursuit,
            saeplug_solver::Gp => Solver::GradientPursuit,
        }
    }
}

u32_enum! {
    /// Edit kinds for `saeplug_hook_add_edit`.
    pub enum saeplug_edit_kind {
        /// Add `value * d_feature` (the feature's decoder row).
        Add = 0,
        /// Clamp the feature's activation to `value`.
        Clamp = 1,
        /// Set the feature's activation to 0 (`value` ignored).
        Ablate = 2,
        /// Multiply the feature's activation by `value`.
        Scale = 3,
    }
}

u32_enum! {
    /// Position modes for `saeplug_hook_set_positions`.
    pub enum saeplug_positions {
        /// Every position (`a`, `b` ignored).
        All = 0,
        /// Positions `0 .. a` (`b` ignored).
        First = 1,
        /// The last row of each batch (`a`, `b` ignored).
        Last = 2,
        /// Add the range `[a, b)`; ranges accumulate.
        Range = 3,
    }
}

u32_enum! {
    /// Reconstruction modes for `saeplug_hook_set_replace`.
    pub enum saeplug_replace {
        /// Edits only: `x + (f' - f) W_dec`.
        None = 0,
        /// The SAE's reconstruction with the error term kept, then the edits.
        WithError = 1,
        /// The reconstruction of the edited row only (the error term dropped).
        ReconstructionOnly = 2,
    }
}

impl From<saeplug_replace> for Replace {
    fn from(r: saeplug_replace) -> Self {
        match r {
            saeplug_replace::None => Replace::None,
            saeplug_replace::WithError => Replace::WithError,
            saeplug_replace::ReconstructionOnly => Replace::ReconstructionOnly,
        }
    }
}

/// `Positions` for `kind` with the arguments `a`, `b`; `current` is extended for
/// ranges.
pub(crate) fn positions(
    kind: saeplug_positions,
    a: usize,
    b: usize,
    current: &mut Positions,
) -> Result<Positions, FfiError> {
    Ok(match kind {
        saeplug_positions::All => Positions::All,
        saeplug_positions::First => Positions::First(a),
        saeplug_positions::Last => Positions::Last,
        saeplug_positions::Range => {
            if a >= b {
                return Err(FfiError::invalid(format!("empty range [{a}, {b})")));
            }
            let mut rs = match current {
                Positions::Ranges(rs) => std::mem::take(rs),
                _ => Vec::new(),
            };
            rs.push(a..b);
            Positions::Ranges(rs)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cbindgen() {
        assert_eq!(screaming("InvalidUtf8"), "INVALID_UTF8");
        assert_eq!(screaming("ConstantNormRescale"), "CONSTANT_NORM_RESCALE");
        assert_eq!(screaming("Ok"), "OK");
        assert_eq!(
            c_variant::<saeplug_replace>(&saeplug_replace::VARIANTS[1]),
            "SAEPLUG_REPLACE_WITH_ERROR"
        );
    }

    #[test]
    fn try_from_round_trips_and_refuses_the_rest() {
        for v in saeplug_edit_kind::VARIANTS {
            assert_eq!(
                saeplug_edit_kind::try_from(v.value).map(|k| k as u32),
                Ok(v.value)
            );
        }
        assert_eq!(saeplug_edit_kind::try_from(4), Err(4));
        let e = code::<saeplug_solver>("solver", 7).unwrap_err();
        assert!(e.message.contains("'solver' = 7") && e.message.contains("SAEPLUG_SOLVER_GP = 2"));
    }
}
