// common/rhs_f16.wgsl — the GEMM's right operand (weights) stored as f16 (half the
// memory and bandwidth), widened to f32 on load; needs `enable f16;`.
@group(0) @binding(2) var<storage, read> rhs: array<f16>;

fn rhs_at(i: u32) -> f32 {
    return f32(rhs[i]);
}
