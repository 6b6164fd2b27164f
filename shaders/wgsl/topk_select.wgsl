// topk_select.wgsl — exact per-row top-k, in place (FORMATS.md §2 topk, §8.1).
// Keys: mode 0 (SAELens: top-k then ReLU) and 2 (signed, |p|) select on p / |p|;
// mode 1 (sparsify: ReLU then top-k) on relu(p). Values kept: relu(p) for modes
// 0 and 1, p for mode 2; everything else becomes 0. Ties at the k-th value are
// broken towards lower indices, like the CPU backend.
// Method: radix select of the k-th largest order-preserving u32 key, MSB first
// (32 counting passes), then one pass that keeps keys above it and the first ties.
// Bindings: 0 params (n_rows, n_cols = d_sae, ld_out, k, mode) | 1 rows (read_write)
// Dispatch: one workgroup per row: (min(n_rows, 65535), ceil(n_rows / 65535), 1).
@group(0) @binding(1) var<storage, read_write> rows: array<f32>;

var<workgroup> red: array<u32, 256>;

fn key_of(v: f32) -> u32 {
    var kv = v;
    if (params.mode == 1u) { kv = max(v, 0.0); }
    if (params.mode == 2u) { kv = abs(v); }
    let b = bitcast<u32>(kv);
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
    let row = wg.x + wg.y * 65535u;
    let row_ok = row < params.n_rows;
    let n = params.n_cols;
    let base = row * params.ld_out;
    var kth = 0u;
    for (var bit = 31i; bit >= 0i; bit--) {
        let cand = kth | (1u << u32(bit));
        var cnt = 0u;
        if (row_ok) {
            for (var j = li; j < n; j += WG_SIZE) {
                cnt += u32(key_of(rows[base + j]) >= cand);
            }
        }
        if (wg_sum(li, cnt) >= params.k) { kth = cand; }
    }
    var gt = 0u;
    if (row_ok) {
        for (var j = li; j < n; j += WG_SIZE) {
            gt += u32(key_of(rows[base + j]) > kth);
        }
    }
    let budget = params.k - min(wg_sum(li, gt), params.k);
    // Ties: contiguous segments per invocation, exclusive prefix of tie counts.
    let seg = (n + WG_SIZE - 1u) / WG_SIZE;
    let j0 = min(li * seg, n);
    let j1 = min(j0 + seg, n);
    var ties = 0u;
    if (row_ok) {
        for (var j = j0; j < j1; j++) {
            ties += u32(key_of(rows[base + j]) == kth);
        }
    }
    red[li] = ties;
    workgroupBarrier();
    var before = 0u;
    for (var t = 0u; t < li; t++) { before += red[t]; }
    workgroupBarrier();
    if (!row_ok) { return; }
    var used = before;
    for (var j = j0; j < j1; j++) {
        let v = rows[base + j];
        let key = key_of(v);
        var keep = key > kth;
        if (key == kth) {
            keep = used < budget;
            used += 1u;
        }
        var outv = 0.0;
        if (keep) { outv = select(max(v, 0.0), v, params.mode == 2u); }
        rows[base + j] = outv;
    }
}
