// steer_delta.wgsl — for each (row r, edit e) the change of feature i_e's
// coefficient (ALGORITHMS.md, error-preserving interventions):
//   kind 0 add: c | 1 clamp: v - f_i(x) | 2 ablate: -f_i(x) | 3 scale: (s - 1) f_i(x)
// computing only f_i: h = (x - b_dec [if flags bit 0]) . W_enc[:, i].
// mode (architecture): 0 standard relu(h + b) | 1 jumprelu relu(p)[p > t] | 2 gated.
// Rows with mask[r] == 0 get delta 0.
// Bindings: 0 params (n_rows, k_dim = d_in, k = n_edits, flags, mode) | 1 x [n_rows, d_in]
//           2 enc_cols [n_edits, d_in] (W_enc columns of the edited features)
//           3 edits [n_edits * 8]: kind, value, b_enc|b_gate, threshold, exp_r_mag, b_mag, 0, 0
//           4 b_dec [d_in] | 5 mask [n_rows] | 6 delta [n_rows, n_edits] (read_write)
// Dispatch: one invocation per (row, edit): (ceil(n_rows * n_edits / 256), 1, 1).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> enc_cols: array<f32>;
@group(0) @binding(3) var<storage, read> edits: array<f32>;
@group(0) @binding(4) var<storage, read> b_dec: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ne = params.k;
    if (gid.x >= params.n_rows * ne) { return; }
    let r = gid.x / ne;
    let e = gid.x % ne;
    if (mask[r] == 0u) { delta[gid.x] = 0.0; return; }
    let kind = u32(edits[e * 8u]);
    let value = edits[e * 8u + 1u];
    if (kind == 0u) { delta[gid.x] = value; return; }
    let d = params.k_dim;
    var h = 0.0;
    let centre = (params.flags & 1u) != 0u;
    for (var j = 0u; j < d; j++) {
        let xv = select(x[r * d + j], x[r * d + j] - b_dec[j], centre);
        h = fma(xv, enc_cols[e * d + j], h);
    }
    let b = edits[e * 8u + 2u];
    var f = 0.0;
    if (params.mode == 0u) {
        f = max(h + b, 0.0);
    } else if (params.mode == 1u) {
        let p = h + b;
        f = select(0.0, max(p, 0.0), p > edits[e * 8u + 3u]);
    } else {
        let mag = max(h * edits[e * 8u + 4u] + edits[e * 8u + 5u], 0.0);
        f = select(0.0, mag, h + b > 0.0);
    }
    var dl = 0.0;
    if (kind == 1u) { dl = value - f; }
    if (kind == 2u) { dl = -f; }
    if (kind == 3u) { dl = (value - 1.0) * f; }
    delta[gid.x] = dl;
}
