//! NEON micro-kernel (aarch64): an `MR x 16` tile (MR <= 6) of `c` in 4·MR
//! q registers; per step of `k`, four 4-lane loads of `b` and MR scalars of `a`.

use std::arch::aarch64::*;

use super::BSlice;

const NR: usize = 16;

macro_rules! kernel {
    ($name:ident, $elem:ty, $load:ident) => {
        /// # Safety
        /// The CPU must support NEON; `a` holds `kc * MR` floats, `b` holds
        /// `kc * 16` elements and `c` is writable for MR rows of 16 floats `ldc`
        /// apart (read too when `add`).
        #[target_feature(enable = "neon")]
        unsafe fn $name<const MR: usize>(
            kc: usize,
            a: *const f32,
            b: *const $elem,
            c: *mut f32,
            ldc: usize,
            add: bool,
        ) {
            let mut acc = [[vdupq_n_f32(0.0); 4]; MR];
            for p in 0..kc {
                // SAFETY: p < kc: inside the buffers (function contract).
                let (bv, ap) = unsafe {
                    let bp = b.add(p * NR);
                    (
                        [
                            $load(bp),
                            $load(bp.add(4)),
                            $load(bp.add(8)),
                            $load(bp.add(12)),
                        ],
                        a.add(p * MR),
                    )
                };
                for (i, row) in acc.iter_mut().enumerate() {
                    // SAFETY: i < MR.
                    let ai = unsafe { *ap.add(i) };
                    for (r, b) in row.iter_mut().zip(bv) {
                        *r = vfmaq_n_f32(*r, b, ai);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    // SAFETY: row i < MR, columns j*4..+4 < NR (function contract).
                    unsafe {
                        let p = c.add(i * ldc + j * 4);
                        vst1q_f32(p, if add { vaddq_f32(vld1q_f32(p), *v) } else { *v });
                    }
                }
            }
        }
    };
}

/// 4 f32 from `p`.
///
/// # Safety
/// 4 floats readable at `p`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_f32(p: *const f32) -> float32x4_t {
    // SAFETY: per the contract.
    unsafe { vld1q_f32(p) }
}

/// 4 bf16 from `p`, widened to f32 (exact).
///
/// # Safety
/// 4 u16 readable at `p`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_bf16(p: *const u16) -> float32x4_t {
    // SAFETY: per the contract: 8 bytes readable at `p`.
    let h = unsafe { vld1_u16(p) };
    vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_u16(h)))
}

kernel!(kernel_f32, f32, load_f32);
kernel!(kernel_bf16, u16, load_bf16);

/// `tile[h][16] = Σ_p a[p][h] · b[p][16]` for h <= 6; the portable kernel when the
/// CPU lacks NEON.
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
    if !std::arch::is_aarch64_feature_detected!("neon")
        || !(1..=6).contains(&h)
        || a.len() < kc * h
        || b.len() < kc * NR
    {
        // SAFETY: forwarded contract.
        return unsafe { super::portable::tile_nr(NR, h, kc, a, b, c, ldc, add) };
    }
    let a = a.as_ptr();
    macro_rules! go {
        ($k:ident, $b:expr) => {
            // SAFETY: NEON detected above; lengths checked above: `a` has kc*h
            // floats, `b` kc*16 elements; `c` per this function's contract;
            // h is MR.
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
