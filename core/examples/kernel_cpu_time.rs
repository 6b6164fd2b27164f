//! Development probe: micro-kernel efficiency measured in *thread CPU time*
//! (CLOCK_THREAD_CPUTIME_ID), which other processes sharing the cores do not
//! inflate: one thread, batch-64 encode of 2304 x 16384 vs a register-only
//! AVX-512 FMA loop timed the same way.
//!
//! `cargo run --release -p saeplug --no-default-features --example kernel_cpu_time`

use saeplug::backend::cpu::{Isa, WeightStorage};
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, CpuBackend};

fn cpu_time() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
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

fn main() -> saeplug::Result<()> {
    let mut peak = f64::NAN;
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx512.is_available() {
        let iters = 50_000_000u64;
        let t = cpu_time();
        // SAFETY: AVX-512F checked above.
        std::hint::black_box(unsafe { fma512(iters) });
        peak = iters as f64 * 12.0 * 32.0 / (cpu_time() - t) / 1e9;
        println!("1-thread AVX-512 FMA peak (CPU time): {peak:.1} GFLOP/s");
    }
    let (d, ds) = (2304, 16384);
    let sae = random_sae(d, ds, Architecture::Standard, 1)?;
    let mut rng = Rng::new(2);
    let which = std::env::args().nth(1).unwrap_or_else(|| "avx512".into());
    if let Some(n) = std::env::args()
        .nth(2)
        .and_then(|v| v.parse::<usize>().ok())
    {
        // Profiling mode: n batch-64 encodes and nothing else after setup.
        let cpu = CpuBackend::new(1).with_isa(Isa::parse(&which).unwrap_or_else(Isa::detected))?;
        let x = rng.normal_vec(64 * d, 1.0);
        let mut f = vec![0.0f32; 64 * ds];
        let t = cpu_time();
        for _ in 0..n {
            cpu.encode(&sae, &x, &mut f)?;
        }
        println!("{:.2} ms per call", (cpu_time() - t) / n as f64 * 1e3);
        return Ok(());
    }
    let isa = Isa::parse(&which).unwrap_or_else(Isa::detected);
    for storage in [WeightStorage::PackedF32, WeightStorage::ZeroCopy] {
        let cpu = CpuBackend::new(1)
            .with_isa(isa)?
            .with_weight_storage(storage);
        for batch in [64usize, 1] {
            let x = rng.normal_vec(batch * d, 1.0);
            let mut f = vec![0.0f32; batch * ds];
            cpu.encode(&sae, &x, &mut f)?;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = cpu_time();
                cpu.encode(&sae, &x, &mut f)?;
                best = best.min(cpu_time() - t);
            }
            let g = 2.0 * (batch * d * ds) as f64 / best / 1e9;
            println!(
                "{} {storage:?} batch {batch}: {:.2} ms CPU, {g:.1} GFLOP/s = {:.0}% of 1-thread peak",
                isa.name(),
                best * 1e3,
                100.0 * g / peak
            );
        }
    }
    Ok(())
}
