// ito_select.wgsl — one ITO selection step per row (ALGORITHMS.md): the atom with
// the largest score q_i / ||d_i|| (|.| when signed, flags bit 0 clear), lowest index
// on ties, zero atoms skipped, score must be > 0. Rows whose residual norm is below
// params.coef (tol, when > 0) stop first.
// mode 0 (gradient pursuit): append the atom to the support if new; a row with an
//   empty support stops. mode 1 (matching pursuit): a_i += q_i / ||d_i||^2; a row
//   with no atom stops; iters counts the step.
// Bindings: 0 params | 1-5 ito_state | 6 q [n_rows, d_sae] | 7 inv_norm [d_sae]
//           8 r [n_rows, d_in]
// Dispatch: one workgroup per row: (n_rows, 1, 1).
@group(0) @binding(6) var<storage, read> q: array<f32>;
@group(0) @binding(7) var<storage, read> inv_norm: array<f32>;
@group(0) @binding(8) var<storage, read> r: array<f32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.x;
    let ok = row < params.n_rows;
    let nonneg = (params.flags & 1u) != 0u;
    var bv = 0.0;
    var bi = 0xffffffffu;
    var rr = 0.0;
    if (ok) {
        for (var i = li; i < params.n_cols; i += WG_SIZE) {
            let inv = inv_norm[i];
            if (inv == 0.0) { continue; }
            var s = q[row * params.n_cols + i] * inv;
            if (!nonneg) { s = abs(s); }
            if (s > bv) { bv = s; bi = i; }
        }
        for (var j = li; j < params.k_dim; j += WG_SIZE) {
            let v = r[row * params.k_dim + j];
            rr = fma(v, v, rr);
        }
    }
    best_v[li] = bv;
    best_i[li] = bi;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            let ov = best_v[li + s];
            let oi = best_i[li + s];
            if (ov > best_v[li] || (ov == best_v[li] && oi < best_i[li])) {
                best_v[li] = ov;
                best_i[li] = oi;
            }
        }
        workgroupBarrier();
    }
    // Residual norm, reduced in the same shared array after the argmax is read.
    let win_v = best_v[0];
    let win_i = best_i[0];
    workgroupBarrier();
    best_v[li] = rr;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s = s / 2u) {
        if (li < s) { best_v[li] += best_v[li + s]; }
        workgroupBarrier();
    }
    if (li != 0u || !ok || done[row] != 0u) { return; }
    if (params.coef > 0.0 && best_v[0] < params.coef * params.coef) {
        done[row] = 1u;
        return;
    }
    let base = row * params.k;
    let n = count[row];
    let found = win_v > 0.0 && win_i != 0xffffffffu;
    var pos = n;
    if (found) {
        for (var t = 0u; t < n; t++) {
            if (support[base + t] == win_i) { pos = t; }
        }
    }
    if (params.mode == 1u) {
        if (!found) { done[row] = 1u; return; }
        let c = q[row * params.n_cols + win_i] * inv_norm[win_i] * inv_norm[win_i];
        if (pos == n) {
            support[base + n] = win_i;
            coef[base + n] = c;
            count[row] = n + 1u;
        } else {
            coef[base + pos] += c;
        }
        iters[row] += 1u;
    } else {
        if (found && pos == n && n < params.k) {
            support[base + n] = win_i;
            coef[base + n] = 0.0;
            count[row] = n + 1u;
        }
        if (count[row] == 0u) { done[row] = 1u; }
    }
}
