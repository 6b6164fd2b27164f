// train_adam.wgsl — one Adam step, element-wise (TrainOps::adam):
//   g' = g * grad_scale; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
//   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
// The f32 constants travel bit-cast in u32 fields of params (computed on the host
// exactly as the CPU backend computes them): k_dim = lr, n_cols = b1, ld_out = 1 - b1,
// col_offset = b2, ld_lhs = 1 - b2, lhs_offset = bc1, lo = bc2, hi = eps, coef = grad_scale.
// Bindings: 0 params (n_rows = elements) | 1 g | 2 p | 3 m | 4 v (2-4 read_write)
// Dispatch: one invocation per element: (ceil(n / 256), 1, 1).
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.n_rows) { return; }
    let lr = bitcast<f32>(params.k_dim);
    let b1 = bitcast<f32>(params.n_cols);
    let c1 = bitcast<f32>(params.ld_out);
    let b2 = bitcast<f32>(params.col_offset);
    let c2 = bitcast<f32>(params.ld_lhs);
    let bc1 = bitcast<f32>(params.lhs_offset);
    let bc2 = bitcast<f32>(params.lo);
    let eps = bitcast<f32>(params.hi);
    let gi = g[i] * params.coef;
    let mi = b1 * m[i] + c1 * gi;
    let vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    let mh = mi / bc1;
    let vh = vi / bc2;
    p[i] = p[i] - lr * mh / (sqrt(vh) + eps);
}
