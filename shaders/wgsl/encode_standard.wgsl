// encode_standard.wgsl — f = relu(xc @ W_enc + b_enc) for one column chunk of W_enc
// (ALGORITHMS.md / FORMATS.md §2, standard). xc is already normalised and centred.
// Bindings: 0 params | 1 lhs = xc [n_rows, k_dim] | 2 rhs = W_enc chunk [k_dim, n_cols]
//           3 b_enc [d_sae] | 4 out [n_rows, ld_out], columns col_offset.. (read_write)
// Dispatch: (ceil(n_cols / 64), ceil(n_rows / 64), 1). Precision: f32, fma.
@group(0) @binding(3) var<storage, read> b_enc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let acc = gemm_tile(wg, li);
    for (var i = 0u; i < 4u; i++) {
        let r = wg.y * TILE + (li / 16u) * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = wg.x * TILE + (li % 16u) * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            let gc = params.col_offset + c;
            out[r * params.ld_out + gc] = max(acc[i * 4u + j] + b_enc[gc], 0.0);
        }
    }
}
