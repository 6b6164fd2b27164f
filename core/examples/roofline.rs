//! The machine's limits and where saeplug's CPU encode stands against them, for
//! every ISA level and weight storage (`saeplug bench cpu` is the fuller table,
//! with decoders, ITO and the PyTorch peer):
//! - FMA peak: a register-only kernel per thread (12 independent accumulators,
//!   about a second per run, best of three) for the widest ISA, all threads at once;
//!   the theoretical peak from the nominal clock printed beside it.
//! - Streaming read bandwidth over a 151 MB buffer (a 2304 x 16384 W_enc).
//! - Encode (2304 x 16384, standard) at batch 64 as a fraction of the FMA peak, at
//!   batch 1 as a fraction of the bandwidth.
//!
//! `cargo run --release -p saeplug --no-default-features --example roofline [FILTER]`

use std::time::Instant;

use saeplug::backend::cpu::{Isa, WeightStorage, roofline};
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, CpuBackend};

fn main() -> saeplug::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let widest = Isa::detected();
    let peak = roofline::fma_peak(widest, threads, 1.0)?;
    println!(
        "FMA peak {} x {threads} threads: {peak:.1} GFLOP/s measured; theoretical at the nominal clock: {}",
        widest.name(),
        roofline::theoretical_peak(widest, threads)
            .map_or("unknown".into(), |t| format!("{t:.1} GFLOP/s"))
    );
    let (d, ds) = (2304, 16384);
    let bw = roofline::read_bandwidth(d * ds * 4, threads);
    println!("streaming read: {bw:.1} GB/s");
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
                    100.0 * gflops / peak,
                    100.0 * gbs / bw
                );
            }
        }
    }
    Ok(())
}
