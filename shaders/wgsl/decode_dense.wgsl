// decode_dense.wgsl — out = [accumulate ? out : 0] + f[:, lo..hi] @ W_dec[lo..hi, :]
// + [first chunk ? b_dec : 0], for one row chunk of W_dec (ALGORITHMS.md decode).
// flags bit 0: accumulate into out; bit 1: add b_dec. f has already been divided
// by the decoder norms for rescaling top-k SAEs.
// Bindings: 0 params | 1 lhs = f [n_rows, ld_lhs] (columns lhs_offset..+k_dim)
//           2 rhs = W_dec chunk [k_dim, n_cols = d_in] | 3 b_dec [d_in]
//           4 out [n_rows, ld_out = d_in] (read_write)
// Dispatch: (ceil(d_in / 64), ceil(n_rows / 64), 1). Precision: f32, fma.
@group(0) @binding(3) var<storage, read> b_dec: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let acc = gemm_tile(wg, li);
    let accumulate = (params.flags & 1u) != 0u;
    let add_bias = (params.flags & 2u) != 0u;
    for (var i = 0u; i < 4u; i++) {
        let r = wg.y * TILE + (li / 16u) * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = wg.x * TILE + (li % 16u) * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            let o = r * params.ld_out + c;
            var v = acc[i * 4u + j];
            if (add_bias) { v += b_dec[c]; }
            if (accumulate) { v += out[o]; }
            out[o] = v;
        }
    }
}
