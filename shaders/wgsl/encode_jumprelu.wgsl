// encode_jumprelu.wgsl — p = xc @ W_enc + b_enc; f = relu(p) * [p > threshold]
// (strict comparison, FORMATS.md §8.3), one column chunk of W_enc.
// Bindings: 0 params | 1 lhs = xc | 2 rhs = W_enc chunk | 3 b_enc | 4 threshold
//           5 out [n_rows, ld_out] (read_write)
// Dispatch: (ceil(n_cols / 64), ceil(n_rows / 64), 1). Precision: f32, fma.
@group(0) @binding(3) var<storage, read> b_enc: array<f32>;
@group(0) @binding(4) var<storage, read> threshold: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let acc = gemm_tile(wg, li);
    for (var i = 0u; i < 4u; i++) {
        let r = wg.y * TILE + (li / 16u) * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = wg.x * TILE + (li % 16u) * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            let gc = params.col_offset + c;
            let p = acc[i * 4u + j] + b_enc[gc];
            out[r * params.ld_out + gc] = select(0.0, max(p, 0.0), p > threshold[gc]);
        }
    }
}
