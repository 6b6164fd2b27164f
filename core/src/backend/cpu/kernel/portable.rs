//! Portable micro-kernel in plain Rust: the compiler vectorises the 16-wide
//! inner loops for the build's baseline ISA (SSE2 on x86-64).

use super::{BSlice, bf16_value};

/// `c[h][nr] (+)= Σ_p a[p][h] · b[p][nr]` for any panel width `nr` (16 for the
/// fast path; other widths when a vector kernel falls back here).
///
/// # Safety
/// `c` must be valid for reads and writes of `h` rows of `nr` floats, `ldc`
/// apart, that no other thread accesses during the call.
#[allow(
    clippy::too_many_arguments,
    reason = "the micro-kernel signature of every ISA"
)]
pub(super) unsafe fn tile_nr(
    nr: usize,
    h: usize,
    kc: usize,
    a: &[f32],
    b: BSlice<'_>,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    // Tiles are at most 8 x 48 (the widest micro-kernel); larger ones (never made
    // by the driver) are computed in a heap buffer.
    let mut stack = [0f32; 8 * 48];
    let mut heap = Vec::new();
    let tile: &mut [f32] = if h * nr <= stack.len() {
        &mut stack[..h * nr]
    } else {
        heap.resize(h * nr, 0.0);
        &mut heap
    };
    if nr == 16 && (1..=4).contains(&h) {
        match h {
            1 => fixed::<1>(kc, a, b, tile),
            2 => fixed::<2>(kc, a, b, tile),
            3 => fixed::<3>(kc, a, b, tile),
            _ => fixed::<4>(kc, a, b, tile),
        }
    } else {
        general(nr, h, kc, a, b, tile);
    }
    for (i, src) in tile.chunks_exact(nr).enumerate() {
        // SAFETY: row i < h of `c` holds `nr` floats exclusively ours (contract).
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), nr) };
        if add {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// `tile[h][nr] = Σ_p a[p][h] · b[p][nr]`, plain loops.
fn general(nr: usize, h: usize, kc: usize, a: &[f32], b: BSlice<'_>, tile: &mut [f32]) {
    for p in 0..kc {
        for i in 0..h {
            let s = a[p * h + i];
            let row = &mut tile[i * nr..(i + 1) * nr];
            match b {
                BSlice::F32(v) => row
                    .iter_mut()
                    .zip(&v[p * nr..(p + 1) * nr])
                    .for_each(|(c, b)| *c += s * b),
                BSlice::Bf16(v) => row
                    .iter_mut()
                    .zip(&v[p * nr..(p + 1) * nr])
                    .for_each(|(c, b)| *c += s * bf16_value(*b)),
            }
        }
    }
}

/// Register tile of `MR x 16` accumulators.
fn fixed<const MR: usize>(kc: usize, a: &[f32], b: BSlice<'_>, tile: &mut [f32]) {
    let mut acc = [[0f32; 16]; MR];
    let mut bp = [0f32; 16];
    for (p, ap) in a.chunks_exact(MR).take(kc).enumerate() {
        match b {
            BSlice::F32(v) => bp.copy_from_slice(&v[p * 16..p * 16 + 16]),
            BSlice::Bf16(v) => bp
                .iter_mut()
                .zip(&v[p * 16..p * 16 + 16])
                .for_each(|(d, s)| *d = bf16_value(*s)),
        }
        for (row, s) in acc.iter_mut().zip(ap) {
            for (c, b) in row.iter_mut().zip(&bp) {
                *c += s * b;
            }
        }
    }
    for (dst, row) in tile.chunks_exact_mut(16).zip(&acc) {
        dst.copy_from_slice(row);
    }
}
