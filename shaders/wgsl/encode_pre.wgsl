// encode_pre.wgsl — top-k pre-activations p = (xc @ W_enc + b_enc) * scale, where
// scale is the decoder row norm when flags bit 0 is set (SAELens
// rescale_acts_by_decoder_norm) and 1 otherwise. topk_select / groupmax_select
// then sparsify the rows in place.
// Bindings: 0 params | 1 lhs = xc | 2 rhs = W_enc chunk | 3 b_enc | 4 scale [d_sae]
//           5 out [n_rows, ld_out] (read_write)
// Dispatch: (ceil(n_cols / 64), ceil(n_rows / 64), 1). Precision: f32, fma.
@group(0) @binding(3) var<storage, read> b_enc: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let acc = gemm_tile(wg, li);
    let rescale = (params.flags & 1u) != 0u;
    for (var i = 0u; i < 4u; i++) {
        let r = wg.y * TILE + (li / 16u) * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = wg.x * TILE + (li % 16u) * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            let gc = params.col_offset + c;
            let p = acc[i * 4u + j] + b_enc[gc];
            out[r * params.ld_out + gc] = select(p, p * scale[gc], rescale);
        }
    }
}
