// common/gemm.wgsl — a 64x64 output tile of lhs[n_rows, k_dim] @ rhs[k_dim, n_cols]
// per workgroup of WG_SIZE = 256 invocations, 4x4 outputs per invocation, K in
// steps of 16 through workgroup memory. lhs element (r, kk) is
// lhs[r * ld_lhs + lhs_offset + kk]; rhs is dense with row stride n_cols.
// Out-of-range elements load as 0, so any shape works; callers guard the stores.
// Accumulation is f32 in k order within each 16-wide step (same rounding class as
// the CPU GEMM; parity tests allow 1e-4). The right operand (binding 2) and its
// `rhs_at(i) -> f32` come from common/rhs_f32.wgsl or common/rhs_f16.wgsl.
@group(0) @binding(1) var<storage, read> lhs: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> tile_a: array<f32, 1024>; // [BK][TILE], transposed A tile
var<workgroup> tile_b: array<f32, 1024>; // [BK][TILE]

fn gemm_tile(wg: vec3<u32>, li: u32) -> array<f32, 16> {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let tr = li / 16u;
    let tc = li % 16u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < params.k_dim; k0 += BK) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG_SIZE;
            let ar = e / BK;
            let ak = e % BK;
            let gr = row0 + ar;
            let gk = k0 + ak;
            var av = 0.0;
            if (gr < params.n_rows && gk < params.k_dim) {
                av = lhs[gr * params.ld_lhs + params.lhs_offset + gk];
            }
            tile_a[ak * TILE + ar] = av;
            let bk = e / TILE;
            let bc = e % TILE;
            let gbk = k0 + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if (gbk < params.k_dim && gc < params.n_cols) {
                bv = rhs_at(gbk * params.n_cols + gc);
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
    return acc;
}
