//! AVX-512F micro-kernel: an `MR x 48` tile (MR <= 8) of `c` in 3·MR zmm
//! registers; per step of `k`, three 16-lane loads of `b` and MR broadcasts of `a`.
//! bf16 panels are widened to f32 in registers (a shift), so products and sums
//! stay f32.

use std::arch::x86_64::*;

use super::BSlice;

const NR: usize = 48;

macro_rules! kernel {
    ($name:ident, $elem:ty, $load:ident) => {
        /// # Safety
        /// The CPU must support AVX-512F; `a` holds `kc * MR` floats, `b` holds
        /// `kc * 48` elements and `c` is writable for MR rows of 48 floats `ldc` apart (read too when `add`).
        #[target_feature(enable = "avx512f")]
        unsafe fn $name<const MR: usize>(
            kc: usize,
            a: *const f32,
            b: *const $elem,
            c: *mut f32,
            ldc: usize,
            add: bool,
        ) {
            let mut acc = [[_mm512_setzero_ps(); 3]; MR];
            for p in 0..kc {
                // SAFETY: p < kc, so the 48 elements at b + p*48 and the MR floats
                // at a + p*MR are inside the buffers (function contract).
                let (b0, b1, b2, ap) = unsafe {
                    let bp = b.add(p * NR);
                    // The next slice of the panel (contiguous in packed panels):
                    // fetched from memory while this one is computed. A hint
                    // only: it never faults, even past the buffer.
                    let ahead = bp.wrapping_add(kc * NR) as *const i8;
                    _mm_prefetch::<_MM_HINT_T0>(ahead);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
                    (
                        $load(bp),
                        $load(bp.add(16)),
                        $load(bp.add(32)),
                        a.add(p * MR),
                    )
                };
                for (i, row) in acc.iter_mut().enumerate() {
                    // SAFETY: i < MR (see above).
                    let ai = _mm512_set1_ps(unsafe { *ap.add(i) });
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                    row[2] = _mm512_fmadd_ps(ai, b2, row[2]);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    // SAFETY: row i < MR, columns j*16..+16 < NR (function contract).
                    unsafe {
                        let p = c.add(i * ldc + j * 16);
                        _mm512_storeu_ps(
                            p,
                            if add {
                                _mm512_add_ps(_mm512_loadu_ps(p), *v)
                            } else {
                                *v
                            },
                        );
                    }
                }
            }
        }
    };
}

/// 16 f32 from `p`.
///
/// # Safety
/// 16 floats readable at `p`; AVX-512F present.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_f32(p: *const f32) -> __m512 {
    // SAFETY: per the contract.
    unsafe { _mm512_loadu_ps(p) }
}

/// 16 bf16 from `p`, widened to f32 (exact).
///
/// # Safety
/// 16 u16 readable at `p`; AVX-512F present.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_bf16(p: *const u16) -> __m512 {
    // SAFETY: per the contract: 32 bytes readable at `p`.
    let h = unsafe { _mm256_loadu_si256(p.cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

kernel!(kernel_f32, f32, load_f32);
kernel!(kernel_bf16, u16, load_bf16);

/// `tile[h][48] = Σ_p a[p][h] · b[p][48]` for h <= 8; the portable kernel when the
/// CPU lacks AVX-512F.
///
/// # Safety
/// `c` must be valid for reads and writes of `h` rows of NR floats, `ldc` apart,
/// that no other thread accesses during the call.
pub(super) unsafe fn tile(
    h: usize,
    kc: usize,
    a: &[f32],
    b: BSlice<'_>,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    if !std::arch::is_x86_feature_detected!("avx512f")
        || !(1..=8).contains(&h)
        || a.len() < kc * h
        || b.len() < kc * NR
    {
        // SAFETY: forwarded contract.
        return unsafe { super::portable::tile_nr(NR, h, kc, a, b, c, ldc, add) };
    }
    let a = a.as_ptr();
    macro_rules! go {
        ($k:ident, $b:expr) => {
            // SAFETY: AVX-512F detected above; lengths checked above: `a` has
            // kc*h floats, `b` kc*48 elements; `c` per this function's contract;
            // h is the kernel's MR.
            unsafe {
                match h {
                    1 => $k::<1>(kc, a, $b, c, ldc, add),
                    2 => $k::<2>(kc, a, $b, c, ldc, add),
                    3 => $k::<3>(kc, a, $b, c, ldc, add),
                    4 => $k::<4>(kc, a, $b, c, ldc, add),
                    5 => $k::<5>(kc, a, $b, c, ldc, add),
                    6 => $k::<6>(kc, a, $b, c, ldc, add),
                    7 => $k::<7>(kc, a, $b, c, ldc, add),
                    _ => $k::<8>(kc, a, $b, c, ldc, add),
                }
            }
        };
    }
    match b {
        BSlice::F32(v) => go!(kernel_f32, v.as_ptr()),
        BSlice::Bf16(v) => go!(kernel_bf16, v.as_ptr()),
    }
}
