// train_gemm.wgsl — out[r, col_offset + c] = [accumulate ? out : 0] + [bias ? bias[col_offset + c] : 0]
//   + sum_kk A[r, kk] * B[kk, c], the trainer's dense products (TrainOps::affine_t and
// TrainOps::matmul). A 64x64 output tile per workgroup of 256 invocations, 4x4 outputs
// each, K in steps of 16 through workgroup memory (the layout of common/gemm.wgsl, with
// both operands strided so that either may be read transposed).
// A element (r, kk): flags bit 2 clear: lhs[r * ld_lhs + lhs_offset + kk];
//                    bit 2 set (A stored [K, M]): lhs[kk * ld_lhs + lhs_offset + r].
// B element (kk, c): flags bit 3 clear: rhs[kk * k + c] (params.k is B's row stride);
//                    bit 3 set (B stored [N, K], one row per output): rhs[c * k + kk].
// flags bit 0: accumulate into out; bit 1: add bias.
// Bindings: 0 params (n_rows = M, k_dim = K, n_cols = N, ld_out, col_offset, ld_lhs,
//           lhs_offset, flags, k = ld_rhs) | 1 lhs | 2 rhs | 3 bias | 4 out (read_write)
// Dispatch: (ceil(N / 64), ceil(M / 64), 1). Precision: f32, fma, k order within each tile.
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> tile_a: array<f32, 1024>; // [BK][TILE], transposed A tile
var<workgroup> tile_b: array<f32, 1024>; // [BK][TILE]

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let tr = li / 16u;
    let tc = li % 16u;
    let a_t = (params.flags & 4u) != 0u;
    let b_t = (params.flags & 8u) != 0u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < params.k_dim; k0 += BK) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG_SIZE;
            // Neighbouring invocations load neighbouring addresses in either layout.
            var ar = e / BK;
            var ak = e % BK;
            if (a_t) {
                ar = e % TILE;
                ak = e / TILE;
            }
            let gr = row0 + ar;
            let gk = k0 + ak;
            var av = 0.0;
            if (gr < params.n_rows && gk < params.k_dim) {
                if (a_t) {
                    av = lhs[gk * params.ld_lhs + params.lhs_offset + gr];
                } else {
                    av = lhs[gr * params.ld_lhs + params.lhs_offset + gk];
                }
            }
            tile_a[ak * TILE + ar] = av;
            var bk = e / TILE;
            var bc = e % TILE;
            if (b_t) {
                bk = e % BK;
                bc = e / BK;
            }
            let gbk = k0 + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if (gbk < params.k_dim && gc < params.n_cols) {
                if (b_t) {
                    bv = rhs[gc * params.k + gbk];
                } else {
                    bv = rhs[gbk * params.k + gc];
                }
            }
            tile_b[bk * TILE + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_a[kk * TILE + tr * 4u + i];
                b[i] = tile_b[kk * TILE + tc * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let accumulate = (params.flags & 1u) != 0u;
    let add_bias = (params.flags & 2u) != 0u;
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + tr * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + tc * 4u + j;
            if (r >= params.n_rows || c >= params.n_cols) { continue; }
            let o = r * params.ld_out + params.col_offset + c;
            var v = acc[i * 4u + j];
            if (add_bias) { v += bias[params.col_offset + c]; }
            if (accumulate) { v += out[o]; }
            out[o] = v;
        }
    }
}
