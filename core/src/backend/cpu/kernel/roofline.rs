//! The machine's limits, measured in the same run as the benchmarks that are
//! reported against them: the FMA peak of an ISA (a register-only kernel per
//! thread with 12 independent accumulators, about `seconds` per run, best of
//! three, all threads at once) and the streaming read bandwidth (all threads
//! summing disjoint parts of a buffer, best of three).
//!
//! ```no_run
//! use saeplug::backend::cpu::{Isa, roofline};
//! let peak = roofline::fma_peak(Isa::detected(), 2, 1.0).unwrap();
//! let bw = roofline::read_bandwidth(151 << 20, 2);
//! println!("{peak:.0} GFLOP/s, {bw:.1} GB/s");
//! ```

use std::time::Instant;

use super::Isa;
use crate::error::{Error, Result};

/// Independent accumulators per thread (hides the FMA latency: 2 pipes x 4+ cycles).
const ACC: usize = 12;

/// Best of three timed runs of `f` on `threads` threads at once; seconds.
fn best_of_3(threads: usize, f: impl Fn() + Sync) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads.max(1) {
                    s.spawn(&f);
                }
            });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// f32 lanes per vector of `isa`.
///
/// ```
/// use saeplug::backend::cpu::{Isa, roofline};
/// assert_eq!(roofline::lanes(Isa::Avx512), 16);
/// ```
pub fn lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Neon => 4,
        Isa::Portable => 4,
    }
}

/// `iters` rounds of ACC independent FMAs of `isa`'s width; returns a value so
/// the work is not optimised away.
fn spin(isa: Isa, iters: u64) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fma_peak` checked that the CPU runs `isa`.
        Isa::Avx512 => unsafe { x86::avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::avx2(iters) },
        _ => portable(iters),
    }
}

/// Scalar-array FMAs (what the compiler makes of plain Rust).
fn portable(iters: u64) -> f32 {
    let mut acc = [[1.0f32; 4]; ACC];
    let (a, b) = (0.999_999f32, 1e-7f32);
    for _ in 0..iters {
        for v in acc.iter_mut() {
            for x in v.iter_mut() {
                *x = *x * a + b;
            }
        }
        std::hint::black_box(&mut acc);
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::ACC;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(iters: u64) -> f32 {
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); ACC];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in acc {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(iters: u64) -> f32 {
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); ACC];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in acc {
            s = _mm256_add_ps(s, v);
        }
        let mut out = [0.0f32; 8];
        // SAFETY: `out` holds exactly the 8 floats an unaligned 256-bit store writes.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }

    /// Sum of `v` (whole 128-float blocks) with 8 accumulators, every cache
    /// line prefetched `ahead` floats in advance (0: hardware prefetch only).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn read512(v: &[f32], ahead: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 8];
        for c in v.chunks_exact(128) {
            let p = c.as_ptr();
            if ahead > 0 {
                for l in 0..8 {
                    // A hint only: it never faults, even past the buffer.
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + 16 * l) as *const i8);
                }
            }
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: `c` holds 128 floats; i*16 + 16 <= 128.
                *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(p.add(i * 16)) });
            }
        }
        let mut s = _mm512_setzero_ps();
        for a in acc {
            s = _mm512_add_ps(s, a);
        }
        _mm512_reduce_add_ps(s)
    }
}

/// Measured FMA throughput of `isa` on `threads` threads, GFLOP/s (an FMA is 2
/// FLOP): each run about `seconds` long, best of three.
///
/// ```
/// use saeplug::backend::cpu::{Isa, roofline};
/// assert!(roofline::fma_peak(Isa::Portable, 1, 0.01).unwrap() > 0.0);
/// ```
pub fn fma_peak(isa: Isa, threads: usize, seconds: f64) -> Result<f64> {
    isa.check()?;
    if !(seconds > 0.0 && seconds <= 60.0) {
        return Err(Error::invalid(format!(
            "roofline run length {seconds} s is outside (0, 60]"
        )));
    }
    let probe = 1_000_000u64;
    let t = best_of_3(1, || {
        std::hint::black_box(spin(isa, probe));
    });
    let iters = ((probe as f64) * seconds / t.max(1e-6)).max(1.0) as u64;
    let secs = best_of_3(threads, || {
        std::hint::black_box(spin(isa, iters));
    });
    let flops = threads.max(1) as f64 * iters as f64 * (ACC * lanes(isa) * 2) as f64;
    Ok(flops / secs / 1e9)
}

/// Theoretical FMA peak of `isa` on `threads` cores at the nominal clock that
/// /proc/cpuinfo reports (two FMA pipes per core), GFLOP/s; `None` when the clock
/// is unknown. Boost clocks make the measured peak exceed it.
///
/// ```
/// use saeplug::backend::cpu::{Isa, roofline};
/// if let Some(t) = roofline::theoretical_peak(Isa::Avx2, 2) {
///     assert!(t > 0.0);
/// }
/// ```
pub fn theoretical_peak(isa: Isa, threads: usize) -> Option<f64> {
    nominal_ghz().map(|g| g * threads as f64 * 2.0 * lanes(isa) as f64 * 2.0)
}

/// The clock /proc/cpuinfo reports, GHz.
///
/// ```
/// assert!(saeplug::backend::cpu::roofline::nominal_ghz().is_none_or(|g| g > 0.0));
/// ```
pub fn nominal_ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    line.split(':')
        .nth(1)?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|m| m / 1e3)
}

/// Streaming read bandwidth over a buffer of `bytes` split between `threads`
/// threads, GB/s: the best of three runs of each reader (plain Rust summing
/// with the hardware prefetcher alone; with AVX-512 where present, 8 independent
/// accumulators and software prefetch 4 KiB ahead, as the GEMM's stream does).
///
/// ```
/// assert!(saeplug::backend::cpu::roofline::read_bandwidth(1 << 20, 1) > 0.0);
/// ```
pub fn read_bandwidth(bytes: usize, threads: usize) -> f64 {
    let buf: Vec<f32> = (0..bytes / 4).map(|i| (i % 7) as f32).collect();
    let threads = threads.max(1);
    let part = buf.len().div_ceil(threads).max(16);
    let variants = if cfg!(target_arch = "x86_64") && Isa::Avx512.is_available() {
        5
    } else {
        1
    };
    let secs = (0..variants)
        .flat_map(|variant| (0..3).map(move |_| variant))
        .map(|variant| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for chunk in buf.chunks(part) {
                    s.spawn(move || {
                        std::hint::black_box(sum(chunk, variant));
                    });
                }
            });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    (buf.len() * 4) as f64 / secs / 1e9
}

/// Sum of `v` by reader `variant` (0: plain Rust; 1..: AVX-512 with software
/// prefetch 0, 4, 16 or 48 KiB ahead).
fn sum(v: &[f32], variant: usize) -> f32 {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = variant; // one reader off x86-64
    #[cfg(target_arch = "x86_64")]
    if variant > 0 && Isa::Avx512.is_available() {
        let ahead = [0, 1024, 4096, 12288][(variant - 1).min(3)];
        // SAFETY: AVX-512F detected just above.
        return unsafe { x86::read512(v, ahead) };
    }
    let mut acc = [0.0f32; 16];
    for c in v.chunks_exact(16) {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_positive_and_wider_isas_are_not_slower() {
        let mut last = 0.0;
        for isa in Isa::available() {
            let g = fma_peak(isa, 1, 0.02).expect("peak");
            assert!(g > 0.0 && g.is_finite());
            if isa != Isa::Portable {
                assert!(g > 0.5 * last, "{isa:?} {g} vs {last}");
                last = g;
            }
        }
        assert!(read_bandwidth(1 << 22, 2) > 0.0);
        assert!(fma_peak(Isa::Portable, 1, 0.0).is_err());
    }
}
