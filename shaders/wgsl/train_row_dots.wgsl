// train_row_dots.wgsl — out[e] = mat[indices[e], :] . vecs[entry_row[e], :] for the
// entries whose index lies in this row chunk of mat (lo <= i < hi); the others keep
// out[e] (TrainOps::row_dots). Eight partial sums in a fixed order, like the CPU dot.
// Bindings: 0 params (n_rows = entries, k_dim = d, lo, hi) | 1 entry_row [entries]
//           2 indices [entries] | 3 mat chunk [hi-lo, d] | 4 vecs [rows, d]
//           5 out [entries] (read_write)
// Dispatch: one invocation per entry: (ceil(entries / 256), 1, 1).
@group(0) @binding(1) var<storage, read> entry_row: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read> mat: array<f32>;
@group(0) @binding(4) var<storage, read> vecs: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    if (e >= params.n_rows) { return; }
    let i = indices[e];
    if (i < params.lo || i >= params.hi) { return; }
    let d = params.k_dim;
    let m0 = (i - params.lo) * d;
    let v0 = entry_row[e] * d;
    var acc: array<f32, 8>;
    let full = d / 8u * 8u;
    for (var j = 0u; j < full; j += 8u) {
        for (var t = 0u; t < 8u; t++) {
            acc[t] = fma(mat[m0 + j + t], vecs[v0 + j + t], acc[t]);
        }
    }
    var s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (var j = full; j < d; j++) {
        s = fma(mat[m0 + j], vecs[v0 + j], s);
    }
    out[e] = s;
}
