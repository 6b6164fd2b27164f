//! Bounded memory of `record::contexts::ContextRecorder`: records N synthetic rows
//! (generated a batch at a time, never held whole) through a TopK SAE in the
//! recorder's two passes and prints the process's peak resident set (VmHWM)
//! before and after. Run once per row count (the peak is per process):
//!
//! `cargo run --release -p saeplug --no-default-features --example record_memory -- 1600000`
//!
//! Arguments: ROWS [D_IN=64] [D_SAE=1024] [K=32].

use std::time::Instant;

use saeplug::record::contexts::{ContextRecorder, RecordOptions};
use saeplug::synthetic::{Rng, random_sae};
use saeplug::{Architecture, Backend, CpuBackend, TopKOrder};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> saeplug::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are integers"))
        .collect();
    let rows = args.first().copied().unwrap_or(100_000);
    let d_in = args.get(1).copied().unwrap_or(64);
    let d_sae = args.get(2).copied().unwrap_or(1024);
    let k = args.get(3).copied().unwrap_or(32);
    let arch = Architecture::TopK {
        k,
        order: TopKOrder::TopKThenRelu,
        rescale_by_decoder_norm: false,
    };
    let sae = random_sae(d_in, d_sae, arch, 1)?;
    let cpu = CpuBackend::default();
    let batch = 4096;
    let mut rec = ContextRecorder::new(d_sae, RecordOptions::default())?;
    let before = vm_hwm_kib();
    let t = Instant::now();
    let mut firings = 0u64;
    while rec.needs_pass() {
        let mut rng = Rng::new(7); // the same rows in both passes
        let mut start = 0;
        while start < rows {
            let take = batch.min(rows - start);
            let x = rng.normal_vec(take * d_in, 1.0);
            let codes = cpu.encode_sparse(&sae, &x)?;
            firings += codes.indices.len() as u64;
            rec.observe(&codes, start as u64)?;
            start += take;
        }
        rec.finish_pass()?;
    }
    let dead = (0..d_sae).filter(|&i| rec.feature(i).count == 0).count();
    println!(
        "rows {rows} (d_in {d_in}, d_sae {d_sae}, TopK k {k}, top 20, 10 x 5 samples, context 8): \
         peak RSS {:.1} MiB (before recording {:.1} MiB), {:.1} s, {} firings over both passes, {dead} dead",
        vm_hwm_kib() as f64 / 1024.0,
        before as f64 / 1024.0,
        t.elapsed().as_secs_f64(),
        firings
    );
    Ok(())
}
