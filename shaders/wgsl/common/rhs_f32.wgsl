// common/rhs_f32.wgsl — the GEMM's right operand (weights) stored as f32.
@group(0) @binding(2) var<storage, read> rhs: array<f32>;

fn rhs_at(i: u32) -> f32 {
    return rhs[i];
}
