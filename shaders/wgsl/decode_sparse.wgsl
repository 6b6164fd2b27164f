// decode_sparse.wgsl — out[r, j] = [first chunk ? b_dec[j] : out[r, j]]
//   + sum over row r's codes with lo <= idx < hi of v * inv_norm[idx] * W_dec[idx, j]
// for one row chunk of W_dec (features lo..hi). O(nnz * d_in) per chunk.
// flags bit 0: accumulate; bit 1: divide by decoder norms (rescaling top-k SAEs).
// Bindings: 0 params (n_rows, n_cols = d_in, lo, hi, flags) | 1 row_offsets [n_rows+1]
//           2 indices | 3 values | 4 W_dec chunk [hi-lo, d_in] | 5 b_dec | 6 inv_norm [d_sae]
//           7 out [n_rows, d_in] (read_write)
// Dispatch: one invocation per (row, j): (ceil(n_rows * d_in / 256), 1, 1).
@group(0) @binding(1) var<storage, read> row_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> w_dec: array<f32>;
@group(0) @binding(5) var<storage, read> b_dec: array<f32>;
@group(0) @binding(6) var<storage, read> inv_norm: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = params.n_cols;
    if (gid.x >= params.n_rows * d) { return; }
    let r = gid.x / d;
    let j = gid.x % d;
    var acc = select(b_dec[j], out[gid.x], (params.flags & 1u) != 0u);
    let rescale = (params.flags & 2u) != 0u;
    for (var e = row_offsets[r]; e < row_offsets[r + 1u]; e++) {
        let i = indices[e];
        if (i < params.lo || i >= params.hi) { continue; }
        var v = values[e];
        if (rescale) { v = v * inv_norm[i]; }
        acc = fma(v, w_dec[(i - params.lo) * d + j], acc);
    }
    out[gid.x] = acc;
}
