// ito_linesearch.wgsl — gradient pursuit exact line search per row (ALGORITHMS.md):
// eta = <C, R> / <C, C> (a row with <C, C> = 0 stops), then on the support
// a_i = a_i + eta q_i, clipped at 0 when nonnegative (flags bit 0); iters counts the step.
// Bindings: 0 params | 1-5 ito_state | 6 q [n_rows, d_sae] | 7 dir [n_rows, d_in]
//           8 r [n_rows, d_in]
// Dispatch: one workgroup per row: (n_rows, 1, 1).
@group(0) @binding(6) var<storage, read> q: array<f32>;
@group(0) @binding(7) var<storage, read> dir: array<f32>;
@group(0) @binding(8) var<storage, read> r: array<f32>;

var<workgroup> cr: array<f32, 256>;
var<workgroup> cc: array<f32, 256>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.x;
    let ok = row < params.n_rows;
    var a = 0.0;
    var b = 0.0;
    if (ok) {
        for (var j = li; j < params.k_dim; j += WG_SIZE) {
            let c = dir[row * params.k_dim + j];
            a = fma(c, r[row * params.k_dim + j], a);
            b = fma(c, c, b);
        }
    }
    cr[li] = a;
    cc[li] = b;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            cr[li] += cr[li + s];
            cc[li] += cc[li + s];
        }
        workgroupBarrier();
    }
    if (li != 0u || !ok || done[row] != 0u) { return; }
    let den = cc[0];
    if (den == 0.0) { done[row] = 1u; return; }
    let eta = cr[0] / den;
    let nonneg = (params.flags & 1u) != 0u;
    let base = row * params.k;
    for (var t = 0u; t < count[row]; t++) {
        let i = support[base + t];
        var v = coef[base + t] + eta * q[row * params.n_cols + i];
        if (nonneg) { v = max(v, 0.0); }
        coef[base + t] = v;
    }
    iters[row] += 1u;
}
