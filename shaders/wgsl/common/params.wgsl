// common/params.wgsl — the uniform every kernel binds at @group(0) @binding(0).
// Mirrored in Rust by `backend::wgpu::Params` (#[repr(C)], bytemuck::Pod, 64 bytes);
// a test checks the size against naga's layouter.
const WG_SIZE: u32 = 256u;

struct Params {
    n_rows: u32,     // rows (tokens) in this dispatch
    k_dim: u32,      // reduction length (GEMM), or d_in
    n_cols: u32,     // output columns of this dispatch (chunk width), or d_sae
    ld_out: u32,     // row stride of the output buffer
    col_offset: u32, // first global column of this chunk (bias/threshold index, output column)
    ld_lhs: u32,     // row stride of the GEMM left operand
    lhs_offset: u32, // first column of the GEMM left operand used by this chunk
    flags: u32,      // kernel-specific bits (documented per kernel)
    k: u32,          // top-k k, groupmax groups, number of edits
    lo: u32,         // sparse decode: first feature of this W_dec chunk
    hi: u32,         // sparse decode: one past the last feature of this chunk
    mode: u32,       // kernel-specific selector (top-k order, architecture)
    coef: f32,       // steering vector coefficient
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
