//! WGSL compute kernels of saeplug: one entry point per file, shared code from
//! `wgsl/common/` prepended at compile time. The text validated by naga in
//! `tests/naga.rs` is exactly the text the wgpu backend runs.
//!
//! ```
//! // Every kernel is plain WGSL text: validate one without any GPU.
//! let k = saeplug_shaders::ENCODE_STANDARD;
//! let module = naga::front::wgsl::parse_str(k.source).expect("parses");
//! assert_eq!(module.entry_points.len(), 1);
//! ```
#![warn(missing_docs)]

/// One compute kernel.
///
/// ```
/// // How the wgpu backend turns a kernel into a pipeline (here only parsed):
/// let k = saeplug_shaders::DECODE_SPARSE;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// let ep = &module.entry_points[0];
/// assert_eq!((ep.name.as_str(), ep.workgroup_size), (k.entry, [k.wg_size, 1, 1]));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// File stem, Rust const name in lower case, and pipeline label.
    pub name: &'static str,
    /// Full WGSL source (common code + kernel).
    pub source: &'static str,
    /// Entry point name (always `main`).
    pub entry: &'static str,
    /// Workgroup size along x (mirrors the WGSL `WG_SIZE`).
    pub wg_size: u32,
}

/// Workgroup size of every kernel (WGSL `const WG_SIZE: u32 = 256u;`).
///
/// ```
/// // Dispatch enough workgroups for n threads:
/// let n: u32 = 1000;
/// assert_eq!(n.div_ceil(saeplug_shaders::WG_SIZE), 4);
/// ```
pub const WG_SIZE: u32 = 256;

/// Output tile of the GEMM kernels: TILE_M rows x TILE_N columns per workgroup.
///
/// ```
/// use saeplug_shaders::{TILE_M, TILE_N};
/// // A [65, 130] GEMM output needs 2 x 3 workgroups.
/// assert_eq!((65u32.div_ceil(TILE_M), 130u32.div_ceil(TILE_N)), (2, 3));
/// ```
pub const TILE_M: u32 = 64;
/// See [`TILE_M`].
///
/// ```
/// assert_eq!(saeplug_shaders::TILE_N % 16, 0);
/// ```
pub const TILE_N: u32 = 64;

macro_rules! kernel {
    ($name:literal $(, $common:literal)*) => {
        Kernel {
            name: $name,
            source: concat!(
                include_str!("../wgsl/common/params.wgsl"),
                $(include_str!(concat!("../wgsl/common/", $common, ".wgsl")),)*
                include_str!(concat!("../wgsl/", $name, ".wgsl"))
            ),
            entry: "main",
            wg_size: WG_SIZE,
        }
    };
}

/// The same kernel file with f16 weights: `enable f16;` first, then the shared
/// params, the f16 right operand, the GEMM and the kernel body. Needs SHADER_F16.
macro_rules! kernel_f16 {
    ($name:literal, $file:literal) => {
        Kernel {
            name: $name,
            source: concat!(
                include_str!("../wgsl/common/enable_f16.wgsl"),
                include_str!("../wgsl/common/params.wgsl"),
                include_str!("../wgsl/common/rhs_f16.wgsl"),
                include_str!("../wgsl/common/gemm.wgsl"),
                include_str!(concat!("../wgsl/", $file, ".wgsl"))
            ),
            entry: "main",
            wg_size: WG_SIZE,
        }
    };
}

/// Fused encoder GEMM + bias + ReLU (standard SAEs).
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_STANDARD;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_standard"));
/// ```
pub const ENCODE_STANDARD: Kernel = kernel!("encode_standard", "rhs_f32", "gemm");
/// Fused encoder GEMM + bias + JumpReLU.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_JUMPRELU;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_jumprelu"));
/// ```
pub const ENCODE_JUMPRELU: Kernel = kernel!("encode_jumprelu", "rhs_f32", "gemm");
/// Fused encoder GEMM + gate and magnitude paths (gated SAEs).
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_GATED;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_gated"));
/// ```
pub const ENCODE_GATED: Kernel = kernel!("encode_gated", "rhs_f32", "gemm");
/// Encoder GEMM + bias (+ decoder-norm rescale): top-k pre-activations.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_PRE;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_pre"));
/// ```
pub const ENCODE_PRE: Kernel = kernel!("encode_pre", "rhs_f32", "gemm");
/// Per-row exact top-k selection (radix select on ordered keys), in place.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::TOPK_SELECT;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "topk_select"));
/// ```
pub const TOPK_SELECT: Kernel = kernel!("topk_select");
/// Per-row group maximum (sparsify groupmax), in place.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::GROUPMAX_SELECT;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "groupmax_select"));
/// ```
pub const GROUPMAX_SELECT: Kernel = kernel!("groupmax_select");
/// Dense decode GEMM: `out (+)= f @ W_dec (+ b_dec)`.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::DECODE_DENSE;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "decode_dense"));
/// ```
pub const DECODE_DENSE: Kernel = kernel!("decode_dense", "rhs_f32", "gemm");
/// Sparse decode: gather rows of W_dec for active features.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::DECODE_SPARSE;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "decode_sparse"));
/// ```
pub const DECODE_SPARSE: Kernel = kernel!("decode_sparse");
/// Steering: per (row, edit) feature activation and the coefficient change.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::STEER_DELTA;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "steer_delta"));
/// ```
pub const STEER_DELTA: Kernel = kernel!("steer_delta");
/// Steering: `x += sum_e delta[r, e] * d_{i_e} + mask * coef * v`, in place.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::STEER_APPLY;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "steer_apply"));
/// ```
pub const STEER_APPLY: Kernel = kernel!("steer_apply");

/// ITO correlation GEMM `Q = R W_dec^T`.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ITO_CORRELATE;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "ito_correlate"));
/// ```
pub const ITO_CORRELATE: Kernel = kernel!("ito_correlate", "rhs_f32", "gemm");
/// ITO per-row argmax selection (gradient pursuit support growth, matching pursuit step).
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ITO_SELECT;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "ito_select"));
/// ```
pub const ITO_SELECT: Kernel = kernel!("ito_select", "ito_state");
/// Gradient pursuit direction `C = (S * Q) W_dec` on the support.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ITO_DIRECTION;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "ito_direction"));
/// ```
pub const ITO_DIRECTION: Kernel = kernel!("ito_direction", "ito_state");
/// Gradient pursuit exact line search and masked coefficient update.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ITO_LINESEARCH;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "ito_linesearch"));
/// ```
pub const ITO_LINESEARCH: Kernel = kernel!("ito_linesearch", "ito_state");
/// ITO residual `R = X - A W_dec` on the support.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ITO_RESIDUAL;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "ito_residual"));
/// ```
pub const ITO_RESIDUAL: Kernel = kernel!("ito_residual", "ito_state");

/// Trainer dense products: strided tiled GEMM (either operand transposed), bias, accumulate.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::TRAIN_GEMM;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "train_gemm"));
/// ```
pub const TRAIN_GEMM: Kernel = kernel!("train_gemm");
/// Trainer sparse row dots `out[e] = mat[i_e] . vecs[row(e)]` over one row chunk of `mat`.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::TRAIN_ROW_DOTS;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "train_row_dots"));
/// ```
pub const TRAIN_ROW_DOTS: Kernel = kernel!("train_row_dots");
/// Trainer Adam step, element-wise, in place on parameters and moments.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::TRAIN_ADAM;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "train_adam"));
/// ```
pub const TRAIN_ADAM: Kernel = kernel!("train_adam");
/// Trainer per-row top-k indices (total order, ties to the lower index), ascending.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::TRAIN_TOPK;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "train_topk"));
/// ```
pub const TRAIN_TOPK: Kernel = kernel!("train_topk");
/// Trainer sum of squares: f32 partial sums of 4096-element blocks.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::TRAIN_SUM_SQUARES;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "train_sum_squares"));
/// ```
pub const TRAIN_SUM_SQUARES: Kernel = kernel!("train_sum_squares");

/// [`ENCODE_STANDARD`] with W_enc stored as f16.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_STANDARD_F16;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_standard_f16"));
/// ```
pub const ENCODE_STANDARD_F16: Kernel = kernel_f16!("encode_standard_f16", "encode_standard");
/// [`ENCODE_JUMPRELU`] with W_enc stored as f16.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_JUMPRELU_F16;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_jumprelu_f16"));
/// ```
pub const ENCODE_JUMPRELU_F16: Kernel = kernel_f16!("encode_jumprelu_f16", "encode_jumprelu");
/// [`ENCODE_GATED`] with W_enc stored as f16.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_GATED_F16;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_gated_f16"));
/// ```
pub const ENCODE_GATED_F16: Kernel = kernel_f16!("encode_gated_f16", "encode_gated");
/// [`ENCODE_PRE`] with W_enc stored as f16.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// let k = saeplug_shaders::ENCODE_PRE_F16;
/// let module = naga::front::wgsl::parse_str(k.source).expect("parses");
/// Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16).validate(&module).expect("validates");
/// assert_eq!((module.entry_points[0].name.as_str(), k.name), ("main", "encode_pre_f16"));
/// ```
pub const ENCODE_PRE_F16: Kernel = kernel_f16!("encode_pre_f16", "encode_pre");

/// The f16-weight variants (validated with naga's SHADER_FLOAT16 capability).
///
/// ```
/// for k in saeplug_shaders::ALL_F16 {
///     assert!(k.source.contains("enable f16;"), "{}", k.name);
/// }
/// ```
pub const ALL_F16: &[Kernel] = &[
    ENCODE_STANDARD_F16,
    ENCODE_JUMPRELU_F16,
    ENCODE_GATED_F16,
    ENCODE_PRE_F16,
];

/// Every kernel that needs no optional feature.
///
/// ```
/// use naga::valid::{Capabilities, ValidationFlags, Validator};
/// for k in saeplug_shaders::ALL {
///     let module = naga::front::wgsl::parse_str(k.source).expect(k.name);
///     Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module).expect(k.name);
/// }
/// ```
pub const ALL: &[Kernel] = &[
    ENCODE_STANDARD,
    ENCODE_JUMPRELU,
    ENCODE_GATED,
    ENCODE_PRE,
    TOPK_SELECT,
    GROUPMAX_SELECT,
    DECODE_DENSE,
    DECODE_SPARSE,
    STEER_DELTA,
    STEER_APPLY,
    ITO_CORRELATE,
    ITO_SELECT,
    ITO_DIRECTION,
    ITO_LINESEARCH,
    ITO_RESIDUAL,
    TRAIN_GEMM,
    TRAIN_ROW_DOTS,
    TRAIN_ADAM,
    TRAIN_TOPK,
    TRAIN_SUM_SQUARES,
];
