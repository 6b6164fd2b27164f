//! The machine's limits, measured the way issue 11 asks, and where saeplug's CPU
//! encode stands against them (the baseline before the CPU work):
//! - FMA peak: a register-only kernel per thread (12 independent accumulators,
//!   about a second per run, best of three), for each vector ISA the CPU has
//!   (AVX-512F, AVX2+FMA), all threads at once; the theoretical peak from the
//!   nominal clock printed beside it.
//! - Streaming read bandwidth: all threads summing disjoint halves of a 151 MB
//!   buffer (the size of a 2304 x 16384 W_enc), best of three.
//! - saeplug encode (2304 x 16384, standard) at batch 64 as a fraction of the FMA
//!   peak, at batch 1 as a fraction of the bandwidth.
//!
//! `cargo run --release -p saeplug --no-default-features --example roofline`

use std::time::Instant;

use saeplug::backend::cpu::{Isa, WeightStorage};
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, CpuBackend};

const ACC: usize = 12;

/// Best of three timed runs of `f` on `threads` threads at once; returns seconds.
fn best_of_3(threads: usize, f: impl Fn() + Sync) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(&f);
                }
            });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use super::ACC;
    use std::arch::x86_64::*;

    /// `iters` rounds of ACC independent 16-lane FMAs; returns a value so the work
    /// is not optimised away.
    ///
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

    /// As [`avx512`] with 8-lane AVX2 FMAs.
    ///
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
        let mut out = [0.0f32; 8];
        let mut s = _mm256_setzero_ps();
        for v in acc {
            s = _mm256_add_ps(s, v);
        }
        // SAFETY: `out` holds exactly the 8 floats an unaligned 256-bit store writes.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }
}

/// Nominal clock in GHz from /proc/cpuinfo (the VM's reported frequency).
fn ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    line.split(':')
        .nth(1)?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|m| m / 1e3)
}

fn main() -> saeplug::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("threads: {threads}, nominal clock: {:?} GHz", ghz());
    let mut peak = 0.0f64;
    #[cfg(target_arch = "x86_64")]
    {
        // Calibrate each ISA to about a second per run.
        type Kernel = unsafe fn(u64) -> f32;
        let mut isas: Vec<(&str, Kernel, f64)> = Vec::new();
        if is_x86_feature_detected!("avx512f") {
            isas.push(("avx512f", fma::avx512, 16.0));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            isas.push(("avx2+fma", fma::avx2, 8.0));
        }
        for (name, kernel, lanes) in isas {
            let probe = 2_000_000u64;
            let t = best_of_3(1, || {
                // SAFETY: the feature this kernel needs was detected above.
                std::hint::black_box(unsafe { kernel(probe) });
            });
            let iters = ((probe as f64) / t.max(1e-6)) as u64;
            let secs = best_of_3(threads, || {
                // SAFETY: as above.
                std::hint::black_box(unsafe { kernel(iters) });
            });
            let flops = threads as f64 * iters as f64 * ACC as f64 * lanes * 2.0;
            let gflops = flops / secs / 1e9;
            peak = peak.max(gflops);
            // Two FMA pipes per core of the vector width, at the nominal clock.
            let theory = ghz().map(|g| g * threads as f64 * 2.0 * lanes * 2.0);
            println!(
                "FMA peak {name:>9}: {gflops:7.1} GFLOP/s measured ({:.2} s per run); theoretical at the nominal clock with 2 FMA pipes/core: {}",
                secs,
                theory.map_or("unknown".into(), |t| format!("{t:.1} GFLOP/s"))
            );
        }
    }
    // Streaming read bandwidth over a W_enc-sized buffer.
    let (d, ds) = (2304, 16384);
    let buf: Vec<f32> = (0..d * ds).map(|i| (i % 7) as f32).collect();
    let half = buf.len().div_ceil(threads);
    let secs = (0..3)
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for part in buf.chunks(half) {
                    s.spawn(move || {
                        let mut acc = [0.0f32; 16];
                        for c in part.chunks_exact(16) {
                            for (a, v) in acc.iter_mut().zip(c) {
                                *a += v;
                            }
                        }
                        std::hint::black_box(acc);
                    });
                }
            });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    let bytes = (buf.len() * 4) as f64;
    let bw = bytes / secs / 1e9;
    println!(
        "streaming read: {bw:.1} GB/s ({:.1} MB in {:.2} ms)",
        bytes / 1e6,
        secs * 1e3
    );
    drop(buf);

    let sae = random_sae(d, ds, Architecture::Standard, 1)?;
    let mut rng = Rng::new(2);
    let only = std::env::args().nth(1);
    for isa in Isa::available().into_iter().rev() {
        for storage in [
            WeightStorage::PackedF32,
            WeightStorage::ZeroCopy,
            WeightStorage::PackedBf16,
        ] {
            let label = format!("{}/{:?}", isa.name(), storage);
            if only.as_deref().is_some_and(|o| !label.contains(o)) {
                continue;
            }
            let cpu = CpuBackend::default()
                .with_isa(isa)?
                .with_weight_storage(storage);
            for (batch, rounds) in [(64usize, 10usize), (1, 50)] {
                let x = rng.normal_vec(batch * d, 1.0);
                let mut f = vec![0.0f32; batch * ds];
                cpu.encode(&sae, &x, &mut f)?;
                let mut best = f64::MAX;
                for _ in 0..rounds {
                    let t = Instant::now();
                    cpu.encode(&sae, &x, &mut f)?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let gflops = 2.0 * (batch * d * ds) as f64 / best / 1e9;
                let bytes = if storage == WeightStorage::PackedBf16 {
                    2
                } else {
                    4
                };
                let gbs = (d * ds * bytes) as f64 / best / 1e9;
                println!(
                    "encode {label:>22} batch {batch:>2}: {:6.2} ms = {gflops:6.1} GFLOP/s ({:3.0}% of the FMA peak), W_enc streamed at {gbs:5.1} GB/s ({:3.0}% of the read bandwidth)",
                    best * 1e3,
                    100.0 * gflops / peak.max(1e-9),
                    100.0 * gbs / bw
                );
            }
        }
    }
    Ok(())
}
