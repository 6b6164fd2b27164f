// ito_residual.wgsl — R = X - sum_t coef[t] * W_dec[support[t]] per row, O(k d_in)
// (ALGORITHMS.md: R = X - A W_dec on the support), over the support atoms inside one
// row chunk of W_dec (features lo..hi); flags bit 1: continue from r (every chunk
// but the first) instead of starting from x.
// Bindings: 0 params (n_rows, k_dim = d_in, k = k_max, lo, hi) | 1-5 ito_state
//           6 x [n_rows, d_in] (targets x - b_dec) | 7 w_dec chunk [hi-lo, d_in] | 8 r (read_write)
// Dispatch: one invocation per (row, j): (ceil(n_rows * d_in / 256), 1, 1).
@group(0) @binding(6) var<storage, read> x: array<f32>;
@group(0) @binding(7) var<storage, read> w_dec: array<f32>;
@group(0) @binding(8) var<storage, read_write> r: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = params.k_dim;
    if (gid.x >= params.n_rows * d) { return; }
    let row = gid.x / d;
    let j = gid.x % d;
    var acc = select(x[gid.x], r[gid.x], (params.flags & 2u) != 0u);
    for (var t = 0u; t < count[row]; t++) {
        let i = support[row * params.k + t];
        if (i < params.lo || i >= params.hi) { continue; }
        acc = acc - coef[row * params.k + t] * w_dec[(i - params.lo) * d + j];
    }
    r[gid.x] = acc;
}
