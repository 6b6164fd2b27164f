//! AVX2+FMA micro-kernel: an `MR x 16` tile (MR <= 6) of `c` in 2·MR ymm
//! registers; per step of `k`, two 8-lane loads of `b` and MR broadcasts of `a`.

use std::arch::x86_64::*;

use super::BSlice;

const NR: usize = 16;

macro_rules! kernel {
    ($name:ident, $elem:ty, $load:ident) => {
        /// # Safety
        /// The CPU must support AVX2 and FMA; `a` holds `kc * MR` floats, `b`
        /// holds `kc * 16` elements and `c` is writable for MR rows of 16 floats `ldc`
        /// apart (read too when `add`).
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name<const MR: usize>(
            kc: usize,
            a: *const f32,
            b: *const $elem,
            c: *mut f32,
            ldc: usize,
            add: bool,
        ) {
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            for p in 0..kc {
                // SAFETY: p < kc: inside the buffers (function contract).
                let (b0, b1, ap) = unsafe {
                    let bp = b.add(p * NR);
                    ($load(bp), $load(bp.add(8)), a.add(p * MR))
                };
                for (i, row) in acc.iter_mut().enumerate() {
                    // SAFETY: i < MR.
                    let ai = _mm256_set1_ps(unsafe { *ap.add(i) });
                    row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    // SAFETY: row i < MR, columns j*8..+8 < NR (function contract).
                    unsafe {
                        let p = c.add(i * ldc + j * 8);
                        _mm256_storeu_ps(
                            p,
                            if add {
                                _mm256_add_ps(_mm256_loadu_ps(p), *v)
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

/// 8 f32 from `p`.
///
/// # Safety
/// 8 floats readable at `p`; AVX2 present.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_f32(p: *const f32) -> __m256 {
    // SAFETY: per the contract.
    unsafe { _mm256_loadu_ps(p) }
}

/// 8 bf16 from `p`, widened to f32 (exact).
///
/// # Safety
/// 8 u16 readable at `p`; AVX2 present.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_bf16(p: *const u16) -> __m256 {
    // SAFETY: per the contract: 16 bytes readable at `p`.
    let h = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

kernel!(kernel_f32, f32, load_f32);
kernel!(kernel_bf16, u16, load_bf16);

/// `tile[h][16] = Σ_p a[p][h] · b[p][16]` for h <= 6; the portable kernel when the
/// CPU lacks AVX2+FMA.
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
    let cpu_ok =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    if !cpu_ok || !(1..=6).contains(&h) || a.len() < kc * h || b.len() < kc * NR {
        // SAFETY: forwarded contract.
        return unsafe { super::portable::tile_nr(NR, h, kc, a, b, c, ldc, add) };
    }
    let a = a.as_ptr();
    macro_rules! go {
        ($k:ident, $b:expr) => {
            // SAFETY: AVX2+FMA detected above; lengths checked above: `a` has
            // kc*h floats, `b` kc*16 elements; `c` per this function's
            // contract; h is MR.
            unsafe {
                match h {
                    1 => $k::<1>(kc, a, $b, c, ldc, add),
                    2 => $k::<2>(kc, a, $b, c, ldc, add),
                    3 => $k::<3>(kc, a, $b, c, ldc, add),
                    4 => $k::<4>(kc, a, $b, c, ldc, add),
                    5 => $k::<5>(kc, a, $b, c, ldc, add),
                    _ => $k::<6>(kc, a, $b, c, ldc, add),
                }
            }
        };
    }
    match b {
        BSlice::F32(v) => go!(kernel_f32, v.as_ptr()),
        BSlice::Bf16(v) => go!(kernel_bf16, v.as_ptr()),
    }
}
