// ito_direction.wgsl — gradient pursuit direction C = (S * Q) @ W_dec restricted
// to each row's support (ALGORITHMS.md: G = S * Q, C = G W_dec), O(k d_in) per row,
// for the support atoms inside one row chunk of W_dec (features lo..hi);
// flags bit 1: accumulate into dir (every chunk but the first).
// Bindings: 0 params (n_rows, k_dim = d_in, n_cols = d_sae, k = k_max, lo, hi) | 1-5 ito_state
//           6 q [n_rows, d_sae] | 7 w_dec chunk [hi-lo, d_in] | 8 dir [n_rows, d_in] (read_write)
// Dispatch: one invocation per (row, j): (ceil(n_rows * d_in / 256), 1, 1).
@group(0) @binding(6) var<storage, read> q: array<f32>;
@group(0) @binding(7) var<storage, read> w_dec: array<f32>;
@group(0) @binding(8) var<storage, read_write> dir: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = params.k_dim;
    if (gid.x >= params.n_rows * d) { return; }
    let row = gid.x / d;
    let j = gid.x % d;
    var acc = select(0.0, dir[gid.x], (params.flags & 2u) != 0u);
    if (done[row] == 0u) {
        for (var t = 0u; t < count[row]; t++) {
            let i = support[row * params.k + t];
            if (i < params.lo || i >= params.hi) { continue; }
            acc = fma(q[row * params.n_cols + i], w_dec[(i - params.lo) * d + j], acc);
        }
    }
    dir[gid.x] = acc;
}
