//! Per-call time of the wgpu backend at batch 1: dense encode, dense decode, a
//! steering hook (one clamped feature) and a hook replacing the activations by the
//! reconstruction, on a small and a medium SAE. At batch 1 the
//! arithmetic is tiny, so this measures the fixed cost of a call (buffers, bind
//! groups, submission, read-back).
//!
//! `cargo run --release -p saeplug --example gpu_call_overhead [-- ITERS]`
//! (`SAEPLUG_ADAPTER=llvmpipe` picks lavapipe). Prints one line per measurement:
//! `shape op median_us mean_us cpu_us` (wall-clock median and mean per call, and
//! the process's CPU time per call).

use std::sync::Arc;
use std::time::Instant;

use saeplug::hook::{Hook, Replace};
use saeplug::steer::Edit;
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, WgpuBackend, WgpuOptions};

/// Process CPU time (user + system, all threads: lavapipe's workers included) in
/// microseconds, from /proc/self/stat; `None` elsewhere. Less sensitive than wall
/// time to other processes on a loaded machine.
fn cpu_us() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 1e6 / 100.0) // USER_HZ is 100 on Linux
}

/// (median wall, mean wall, CPU per call) in microseconds over up to `iters` calls
/// (at least 5, at most about 3 s).
fn time(
    iters: usize,
    mut f: impl FnMut() -> saeplug::Result<()>,
) -> saeplug::Result<(f64, f64, f64)> {
    for _ in 0..3 {
        f()?; // warm-up: uploads, pipelines, first-use buffers
    }
    let mut t = Vec::with_capacity(iters);
    let (start, cpu0) = (Instant::now(), cpu_us());
    while t.len() < 5 || (t.len() < iters && start.elapsed().as_secs_f64() < 3.0) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let cpu = match (cpu0, cpu_us()) {
        (Some(a), Some(b)) => (b - a) / t.len() as f64,
        _ => f64::NAN,
    };
    t.sort_by(f64::total_cmp);
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    Ok((t[t.len() / 2], mean, cpu))
}

fn main() -> saeplug::Result<()> {
    let iters = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000usize)
        .max(1);
    let gpu = WgpuBackend::new(WgpuOptions::default())?;
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}), {iters} calls each",
        info.name, info.device_type
    );
    for (d, ds) in [(64, 512), (512, 4096)] {
        let sae = Arc::new(random_sae(d, ds, Architecture::Standard, 1)?);
        let x = Rng::new(2).normal_vec(d, 1.0);
        let mut f = vec![0.0f32; ds];
        let mut r = vec![0.0f32; d];
        let shape = format!("d_in {d} d_sae {ds}");
        let (m, a, c) = time(iters, || gpu.encode(&sae, &x, &mut f).map(|_| ()))?;
        println!("{shape} encode {m:.0} {a:.0} {c:.0}");
        let (m, a, c) = time(iters, || gpu.decode(&sae, &f, &[], &mut r))?;
        println!("{shape} decode {m:.0} {a:.0} {c:.0}");
        let (m, a, c) = time(iters, || gpu.encode_sparse(&sae, &x).map(|_| ()))?;
        println!("{shape} encode_sparse {m:.0} {a:.0} {c:.0}");
        let codes = gpu.encode_sparse(&sae, &x)?;
        let (m, a, c) = time(iters, || gpu.decode_sparse(&sae, &codes, &mut r))?;
        println!("{shape} decode_sparse {m:.0} {a:.0} {c:.0}");
        let mut hook = Hook::new(Arc::clone(&sae), 0);
        hook.edits = vec![Edit::Clamp {
            feature: 3,
            value: 2.0,
        }];
        let mut y = x.clone();
        let (m, a, c) = time(iters, || {
            y.copy_from_slice(&x);
            hook.apply(&gpu, &mut y, 0)
        })?;
        println!("{shape} steer_clamp {m:.0} {a:.0} {c:.0}");
        // Full replacement by the reconstruction: a sparse encode and decode.
        let mut hook = Hook::new(Arc::clone(&sae), 0);
        hook.replace = Replace::ReconstructionOnly;
        let (m, a, c) = time(iters, || {
            y.copy_from_slice(&x);
            hook.apply(&gpu, &mut y, 0)
        })?;
        println!("{shape} hook_replace {m:.0} {a:.0} {c:.0}");
    }
    Ok(())
}
