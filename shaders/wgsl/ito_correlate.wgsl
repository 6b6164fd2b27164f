// ito_correlate.wgsl — ITO correlations Q = R @ W_dec^T for one column chunk of
// W_dec^T (ALGORITHMS.md, inference-time optimisation; the "correlation GEMM").
// Bindings: 0 params | 1 lhs = R [n_rows, k_dim = d_in] | 2 rhs = W_dec^T chunk [d_in, n_cols]
//           3 q [n_rows, ld_out = d_sae], columns col_offset.. (read_write)
// Dispatch: (ceil(n_cols / 64), ceil(n_rows / 64), 1). Precision: f32, fma.
@group(0) @binding(3) var<storage, read_write> q: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let acc = gemm_tile(wg, li);
    for (var i = 0u; i < 4u; i++) {
        let r = wg.y * TILE + (li / 16u) * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = wg.x * TILE + (li % 16u) * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            q[r * params.ld_out + params.col_offset + c] = acc[i * 4u + j];
        }
    }
}
