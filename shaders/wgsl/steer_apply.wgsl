// steer_apply.wgsl — x[r, j] += sum_e delta[r, e] * W_dec[i_e, j] + mask[r] * coef * v[j],
// in place: the error-preserving edit x + (f' - f) W_dec plus an optional steering
// vector on the masked positions (ALGORITHMS.md).
// Bindings: 0 params (n_rows, k_dim = d_in, k = n_edits, coef) | 1 delta [n_rows, n_edits]
//           2 dec_rows [n_edits, d_in] | 3 vec [d_in] | 4 mask [n_rows] | 5 x (read_write)
// Dispatch: one invocation per (row, j): (ceil(n_rows * d_in / 256), 1, 1).
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> dec_rows: array<f32>;
@group(0) @binding(3) var<storage, read> vec_add: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = params.k_dim;
    if (gid.x >= params.n_rows * d) { return; }
    let r = gid.x / d;
    let j = gid.x % d;
    if (mask[r] == 0u) { return; }
    var acc = x[gid.x];
    for (var e = 0u; e < params.k; e++) {
        acc = fma(delta[r * params.k + e], dec_rows[e * d + j], acc);
    }
    acc = fma(params.coef, vec_add[j], acc);
    x[gid.x] = acc;
}
