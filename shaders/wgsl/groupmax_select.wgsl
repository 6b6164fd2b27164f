// groupmax_select.wgsl — sparsify groupmax, in place: each of k equal groups of a
// row keeps only its first maximum, ReLU'd (FORMATS.md §2 topk (sparsify)).
// Bindings: 0 params (n_rows, n_cols = d_sae, ld_out, k = groups) | 1 rows (read_write)
// Dispatch: one invocation per (row, group): (ceil(n_rows * k / 256), 1, 1).
@group(0) @binding(1) var<storage, read_write> rows: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.n_rows * params.k) { return; }
    let row = gid.x / params.k;
    let g = gid.x % params.k;
    let size = params.n_cols / params.k;
    let base = row * params.ld_out + g * size;
    var best = 0u;
    var bv = rows[base];
    for (var j = 1u; j < size; j++) {
        let v = rows[base + j];
        if (v > bv) { bv = v; best = j; }
    }
    for (var j = 0u; j < size; j++) {
        rows[base + j] = select(0.0, max(bv, 0.0), j == best);
    }
}
