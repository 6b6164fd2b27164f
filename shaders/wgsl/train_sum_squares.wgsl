// train_sum_squares.wgsl — partial sums of x^2 (TrainOps::sum_squares): workgroup w
// sums elements [w * 4096, (w + 1) * 4096) in f32 (16 strided terms per invocation,
// then a tree over the workgroup) into partial[w]; the host adds the partials in f64.
// All terms are non-negative, so the relative error is at most ~24 f32 ulps.
// Bindings: 0 params (n_rows = elements) | 1 x | 2 partial [groups] (read_write)
// Dispatch: (ceil(n / 4096), 1, 1).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let base = wg.x * 4096u;
    var s = 0.0;
    for (var t = 0u; t < 16u; t++) {
        let i = base + t * WG_SIZE + li;
        if (i < params.n_rows) { s = fma(x[i], x[i], s); }
    }
    red[li] = s;
    workgroupBarrier();
    for (var h = WG_SIZE / 2u; h > 0u; h = h / 2u) {
        if (li < h) { red[li] += red[li + h]; }
        workgroupBarrier();
    }
    if (li == 0u) { partial[wg.x] = red[0]; }
}
