// train_topk.wgsl — the k largest entries of each row of h (total order, as Rust's
// f32::total_cmp; ties to the lower index), written as their indices ascending
// (TrainOps::top_k_rows). The radix select of topk_select.wgsl on order-preserving
// u32 keys (32 counting passes find the k-th largest key), then each invocation
// compacts its contiguous segment: keys above the k-th, and ties while the row's
// budget of ties (in index order) lasts.
// Bindings: 0 params (n_rows, n_cols = width, k) | 1 h [n_rows, width]
//           2 out [n_rows, k] (u32, read_write)
// Dispatch: one workgroup per row: (n_rows, 1, 1).
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> red: array<u32, 256>;

fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Sum of `x` over the workgroup, returned uniformly.
fn wg_sum(li: u32, x: u32) -> u32 {
    red[li] = x;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s = s / 2u) {
        if (li < s) { red[li] += red[li + s]; }
        workgroupBarrier();
    }
    let total = workgroupUniformLoad(&red[0]);
    return total;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.x;
    let row_ok = row < params.n_rows;
    let n = params.n_cols;
    let base = row * n;
    var kth = 0u;
    for (var bit = 31i; bit >= 0i; bit--) {
        let cand = kth | (1u << u32(bit));
        var cnt = 0u;
        if (row_ok) {
            for (var j = li; j < n; j += WG_SIZE) {
                cnt += u32(key_of(h[base + j]) >= cand);
            }
        }
        if (wg_sum(li, cnt) >= params.k) { kth = cand; }
    }
    var gt = 0u;
    if (row_ok) {
        for (var j = li; j < n; j += WG_SIZE) {
            gt += u32(key_of(h[base + j]) > kth);
        }
    }
    let budget = params.k - min(wg_sum(li, gt), params.k);
    // Contiguous segments per invocation: exclusive prefix of the tie counts, then
    // of the kept counts (the output position of the segment's first kept index).
    let seg = (n + WG_SIZE - 1u) / WG_SIZE;
    let j0 = min(li * seg, n);
    let j1 = min(j0 + seg, n);
    var ties = 0u;
    if (row_ok) {
        for (var j = j0; j < j1; j++) {
            ties += u32(key_of(h[base + j]) == kth);
        }
    }
    red[li] = ties;
    workgroupBarrier();
    var before = 0u;
    for (var t = 0u; t < li; t++) { before += red[t]; }
    workgroupBarrier();
    var kept = 0u;
    var used = before;
    if (row_ok) {
        for (var j = j0; j < j1; j++) {
            let key = key_of(h[base + j]);
            if (key > kth) {
                kept += 1u;
            } else if (key == kth) {
                kept += u32(used < budget);
                used += 1u;
            }
        }
    }
    red[li] = kept;
    workgroupBarrier();
    var at = 0u;
    for (var t = 0u; t < li; t++) { at += red[t]; }
    workgroupBarrier();
    if (!row_ok) { return; }
    used = before;
    for (var j = j0; j < j1; j++) {
        let key = key_of(h[base + j]);
        var keep = key > kth;
        if (key == kth) {
            keep = used < budget;
            used += 1u;
        }
        if (keep && at < params.k) {
            out[row * params.k + at] = j;
            at += 1u;
        }
    }
}
