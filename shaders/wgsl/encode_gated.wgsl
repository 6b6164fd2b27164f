// encode_gated.wgsl — gated SAE: one GEMM h = xc @ W_enc feeds both paths:
// gate = h + b_gate > 0, magnitude = relu(h * exp(r_mag) + b_mag) (equal to
// xc @ (W_enc * exp(r_mag)) + b_mag up to rounding), f = gate ? magnitude : 0.
// Bindings: 0 params | 1 lhs = xc | 2 rhs = W_enc chunk | 3 b_gate | 4 exp_r_mag
//           5 b_mag | 6 out [n_rows, ld_out] (read_write)
// Dispatch: (ceil(n_cols / 64), ceil(n_rows / 64), 1). Precision: f32, fma.
@group(0) @binding(3) var<storage, read> b_gate: array<f32>;
@group(0) @binding(4) var<storage, read> exp_r_mag: array<f32>;
@group(0) @binding(5) var<storage, read> b_mag: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let acc = gemm_tile(wg, li);
    for (var i = 0u; i < 4u; i++) {
        let r = wg.y * TILE + (li / 16u) * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = wg.x * TILE + (li % 16u) * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            let gc = params.col_offset + c;
            let h = acc[i * 4u + j];
            let mag = max(h * exp_r_mag[gc] + b_mag[gc], 0.0);
            out[r * params.ld_out + gc] = select(0.0, mag, h + b_gate[gc] > 0.0);
        }
    }
}
