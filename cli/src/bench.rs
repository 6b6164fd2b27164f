//! `saeplug bench`: measured against a peer (PyTorch, else numpy) in the same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use saeplug::synthetic::{Rng, random_sae};
use saeplug::weights::write_npy;
use saeplug::{Architecture, Backend, CpuBackend, Error, Result, Sae};

use clap::{Args, Subcommand};

use crate::check;
use crate::progress;

/// `saeplug bench ...`
#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// CPU encode throughput vs PyTorch (else numpy) on the same machine.
    Encode(EncodeBench),
    /// wgpu vs CPU encode/decode on whatever adapter exists.
    Gpu(GpuBench),
    /// MP/OMP/GP throughput vs scikit-learn's orthogonal_mp_gram.
    Ito(ItoBench),
    /// Time to open (map) a large SAE file.
    Open(OpenBench),
    /// The CPU kernels against the machine's limits measured in the same run
    /// (FMA peak of the widest ISA, streaming read bandwidth): encode at batch 64
    /// and 1 (f32 packed, zero-copy, bf16), dense and sparse decode, the ITO
    /// correlation step; PyTorch (else numpy) encode beside them.
    Cpu(CpuBench),
}

#[derive(Args, Debug)]
pub(crate) struct CpuBench {
    #[command(flatten)]
    shape: Shape,
    /// Rows per batched call.
    #[arg(long, default_value = "64", value_parser = check::positive)]
    batch: usize,
    /// Timed calls per figure (best of).
    #[arg(long, default_value = "10", value_parser = check::positive)]
    iters: usize,
    /// Skip the Python peer.
    #[arg(long)]
    no_peer: bool,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_parser = check::threads)]
    threads: usize,
    /// ISA level (portable, avx2, avx512, neon); default: the fastest present.
    #[arg(long, value_parser = check::isa)]
    isa: Option<saeplug::backend::cpu::Isa>,
}

/// Sizes shared by the benchmarks.
#[derive(Args, Debug)]
pub(crate) struct Shape {
    /// Input width.
    #[arg(long, default_value = "2304", value_parser = check::positive)]
    d_in: usize,
    /// Number of features.
    #[arg(long, default_value = "16384", value_parser = check::positive)]
    d_sae: usize,
}

#[derive(Args, Debug)]
pub(crate) struct EncodeBench {
    #[command(flatten)]
    shape: Shape,
    /// Rows per call.
    #[arg(long, default_value = "64", value_parser = check::positive)]
    batch: usize,
    /// Timed calls.
    #[arg(long, default_value = "20", value_parser = check::positive)]
    iters: usize,
    /// Skip the Python peer.
    #[arg(long)]
    no_peer: bool,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_parser = check::threads)]
    threads: usize,
    /// ISA level (portable, avx2, avx512, neon); default: the fastest present.
    #[arg(long, value_parser = check::isa)]
    isa: Option<saeplug::backend::cpu::Isa>,
    /// Encoder weight storage: f32 (packed once), zero-copy, bf16.
    #[arg(long, default_value = "f32", value_parser = check::weight_storage)]
    weights: saeplug::backend::cpu::WeightStorage,
    /// Skip measuring the machine's limits (FMA peak, read bandwidth).
    #[arg(long)]
    no_roofline: bool,
}

#[derive(Args, Debug)]
pub(crate) struct GpuBench {
    #[command(flatten)]
    shape: Shape,
    /// Rows per call.
    #[arg(long, default_value = "64", value_parser = check::positive)]
    batch: usize,
    /// Timed calls (best of).
    #[arg(long, default_value = "5", value_parser = check::positive)]
    iters: usize,
    /// The card's FP32 peak in TFLOP/s, to report the fraction reached.
    #[arg(long, value_parser = check::positive_f64)]
    peak_tflops: Option<f64>,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_parser = check::threads)]
    threads: usize,
}

#[derive(Args, Debug)]
pub(crate) struct ItoBench {
    #[command(flatten)]
    shape: Shape,
    /// Solver steps.
    #[arg(long, default_value = "32", value_parser = check::positive)]
    k: usize,
    /// Rows.
    #[arg(long, default_value = "32", value_parser = check::positive)]
    batch: usize,
    /// Also run MP and GP on the wgpu backend.
    #[arg(long)]
    gpu: bool,
    /// Skip the Python peer.
    #[arg(long)]
    no_peer: bool,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_parser = check::threads)]
    threads: usize,
}

#[derive(Args, Debug)]
pub(crate) struct OpenBench {
    /// Size of the SAE file in MB.
    #[arg(long, default_value = "300", value_parser = check::positive)]
    mb: usize,
}

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Encode(a) => encode(a),
        BenchCommand::Open(a) => open(a),
        BenchCommand::Gpu(a) => gpu(a),
        BenchCommand::Ito(a) => ito(a),
        BenchCommand::Cpu(a) => cpu_kernels(a),
    }
}

/// The machine's limits for `cpu`'s ISA and threads, measured now.
struct Limits {
    /// Measured FMA peak, GFLOP/s.
    peak: f64,
    /// Streaming read bandwidth, GB/s.
    bw: f64,
}

fn limits(cpu: &CpuBackend, bytes: usize) -> Result<Limits> {
    use saeplug::backend::cpu::roofline;
    let isa = cpu.isa();
    let widest = *saeplug::backend::cpu::Isa::available()
        .last()
        .unwrap_or(&isa);
    let t = cpu.threads();
    let peak = roofline::fma_peak(widest, t, 1.0)?;
    let theory = roofline::theoretical_peak(widest, t);
    println!(
        "roofline: FMA peak {} x {t} threads {peak:.1} GFLOP/s measured (register-only, 12 accumulators, best of 3 x 1 s); theoretical at the nominal {} GHz with 2 FMA pipes/core: {}",
        widest.name(),
        roofline::nominal_ghz().map_or("?".into(), |g| format!("{g:.2}")),
        theory.map_or("unknown".into(), |t| format!("{t:.1} GFLOP/s"))
    );
    if isa != widest {
        let own = roofline::fma_peak(isa, t, 1.0)?;
        println!(
            "roofline: FMA peak {} (the kernels' ISA) {own:.1} GFLOP/s",
            isa.name()
        );
    }
    let bw = roofline::read_bandwidth(bytes, t);
    println!(
        "roofline: streaming read {bw:.1} GB/s ({:.0} MB, {t} threads, best of 3)",
        bytes as f64 / 1e6
    );
    Ok(Limits { peak, bw })
}

fn backend(threads: usize, isa: Option<saeplug::backend::cpu::Isa>) -> Result<CpuBackend> {
    let cpu = CpuBackend::try_new(threads)?;
    match isa {
        Some(i) => cpu.with_isa(i),
        None => Ok(cpu),
    }
}

fn cpu_kernels(a: CpuBench) -> Result<()> {
    use saeplug::backend::cpu::WeightStorage;
    use saeplug::solve::{Solver, SolverParams, solve};
    let (d_in, d_sae, batch, iters) = (a.shape.d_in, a.shape.d_sae, a.batch, a.iters);
    let cpu = backend(a.threads, a.isa)?;
    println!(
        "saeplug cpu: {} threads, ISA {} (available: {})",
        cpu.threads(),
        cpu.isa().name(),
        saeplug::backend::cpu::Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let w_bytes = d_in * d_sae * 4;
    let lim = limits(&cpu, w_bytes)?;
    let dir = bench_dir("cpu");
    make_sae(&dir, d_in, d_sae)?;
    let sae = Sae::open(&dir)?;
    assert_zero_copy(&sae)?;
    let mut rng = Rng::new(3);
    let xb = rng.normal_vec(batch * d_in, 1.0);
    let x1 = rng.normal_vec(d_in, 1.0);
    let flop = |rows: usize| 2.0 * (rows * d_in * d_sae) as f64;
    let mut f32_batch1 = f64::NAN;
    let mut f32_codes = Vec::new();
    for storage in [
        WeightStorage::PackedF32,
        WeightStorage::ZeroCopy,
        WeightStorage::PackedBf16,
    ] {
        let c = cpu.clone().with_weight_storage(storage);
        let open = Instant::now();
        c.encode(&sae, &xb, &mut crate::zeros(batch * d_sae)?)?;
        let first = open.elapsed().as_secs_f64();
        let mut out = crate::zeros(batch * d_sae)?;
        let t = time_it("encode", iters, || {
            c.encode(&sae, &xb, &mut out).map(|_| ())
        })?;
        let g = flop(batch) / t / 1e9;
        println!(
            "encode {storage:?} batch {batch}: {:.2} ms, {g:.1} GFLOP/s = {:.0}% of the FMA peak (first call {:.0} ms incl. packing)",
            t * 1e3,
            100.0 * g / lim.peak,
            first * 1e3
        );
        let mut out1 = crate::zeros(d_sae)?;
        let t1 = time_it("encode", iters * 5, || {
            c.encode(&sae, &x1, &mut out1).map(|_| ())
        })?;
        let bytes = if storage == WeightStorage::PackedBf16 {
            2
        } else {
            4
        };
        let gbs = (d_in * d_sae * bytes) as f64 / t1 / 1e9;
        let mut extra = String::new();
        if storage == WeightStorage::PackedF32 {
            f32_batch1 = t1;
            f32_codes = out.clone();
        } else if storage == WeightStorage::PackedBf16 {
            let scale = f32_codes.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
            let err = out
                .iter()
                .zip(&f32_codes)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let flips = out
                .iter()
                .zip(&f32_codes)
                .filter(|(a, b)| (**a > 0.0) != (**b > 0.0))
                .count();
            extra = format!(
                "; {:.2}x the f32 speed; features vs f32: max |err| {err:.2e} = {:.2e} of max |f|, {flips} of {} on/off flips",
                f32_batch1 / t1,
                err / scale,
                out.len()
            );
        }
        println!(
            "encode {storage:?} batch 1: {:.3} ms, W_enc ({} MB) streamed at {gbs:.1} GB/s = {:.0}% of the read bandwidth{extra}",
            t1 * 1e3,
            d_in * d_sae * bytes / 1_000_000,
            100.0 * gbs / lim.bw
        );
    }
    // Dense decode: f [batch, d_sae] @ W_dec [d_sae, d_in].
    let mut f = crate::zeros(batch * d_sae)?;
    let dn = cpu.encode(&sae, &xb, &mut f)?;
    let mut recon = crate::zeros(batch * d_in)?;
    let t = time_it("decode", iters, || cpu.decode(&sae, &f, &dn, &mut recon))?;
    let g = flop(batch) / t / 1e9;
    println!(
        "dense decode batch {batch}: {:.2} ms, {g:.1} GFLOP/s = {:.0}% of the FMA peak",
        t * 1e3,
        100.0 * g / lim.peak
    );
    // Sparse decode: k = 32 decoder rows per token.
    let k = 32.min(d_sae);
    let mut r2 = Rng::new(9);
    let mut dense = crate::zeros(batch * d_sae)?;
    for row in dense.chunks_exact_mut(d_sae) {
        for _ in 0..k {
            row[(r2.next_u64() % d_sae as u64) as usize] = 1.0;
        }
    }
    let codes = saeplug::SparseCodes::from_dense(&dense, d_sae, Vec::new());
    let t = time_it("sparse decode", iters * 5, || {
        cpu.decode_sparse(&sae, &codes, &mut recon)
    })?;
    let nnz = codes.indices.len();
    let gbs = (nnz * d_in * 4) as f64 / t / 1e9;
    println!(
        "sparse decode batch {batch}, k {k}: {:.3} ms, decoder rows read at {gbs:.1} GB/s = {:.0}% of the read bandwidth ({nnz} rows of {} KB)",
        t * 1e3,
        100.0 * gbs / lim.bw,
        d_in * 4 / 1000
    );
    // ITO correlation: MP is one residual x W_dec^T GEMM per step.
    let steps = 8.min(d_sae);
    let p = SolverParams::new(Solver::MatchingPursuit, steps);
    let t = time_it("mp", iters.div_ceil(2), || {
        solve(&cpu, &sae, &xb, &p).map(|_| ())
    })?;
    let g = steps as f64 * flop(batch) / t / 1e9;
    println!(
        "ITO correlation (matching pursuit, {steps} steps, batch {batch}): {:.2} ms, {g:.1} GFLOP/s in the correlation GEMMs = {:.0}% of the FMA peak (whole solve timed)",
        t * 1e3,
        100.0 * g / lim.peak
    );
    // The trainer's shape (SmolLM2 d_in 576, d_sae 4608, batch 4096): a weight that
    // changes every step, so packed per call (zero-copy storage).
    let (td, ts, tb) = (576.min(d_in), 4608.min(d_sae), 4096.min(batch * 64));
    let tsae = random_sae(td, ts, Architecture::Standard, 4)?;
    let tx = Rng::new(5).normal_vec(tb * td, 1.0);
    let zc = cpu.clone().with_weight_storage(WeightStorage::ZeroCopy);
    let mut tf = crate::zeros(tb * ts)?;
    let t = time_it("train-shape encode", iters.div_ceil(2), || {
        zc.encode(&tsae, &tx, &mut tf).map(|_| ())
    })?;
    let g = 2.0 * (tb * td * ts) as f64 / t / 1e9;
    println!(
        "encoder GEMM at the trainer's shape ({tb} x {td} x {ts}, weights packed per call): {:.2} ms, {g:.1} GFLOP/s = {:.0}% of the FMA peak",
        t * 1e3,
        100.0 * g / lim.peak
    );
    if !a.no_peer {
        for (rows, x) in [(batch, &xb), (1, &x1)] {
            let xp = dir.join("x.npy");
            write_npy(&xp, &[rows, d_in], x)?;
            let iters_s = (iters * if rows == 1 { 5 } else { 1 }).to_string();
            let v = run_peer(
                "peer_encode.py",
                &[dir.as_os_str(), xp.as_os_str(), iters_s.as_ref()],
            )?;
            let peer_s = v["seconds_per_call"].as_f64().unwrap_or(f64::NAN);
            let g = flop(rows) / peer_s / 1e9;
            println!(
                "peer {} encode batch {rows}: {:.3} ms, {g:.1} GFLOP/s = {:.0}% of the FMA peak, {:.0}% of the read bandwidth",
                v["peer"].as_str().unwrap_or("?"),
                peer_s * 1e3,
                100.0 * g / lim.peak,
                100.0 * w_bytes as f64 / peer_s / 1e9 / lim.bw
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Run a peer script from bench/ with `args`; its stdout is one JSON object.
fn run_peer(script: &str, args: &[&std::ffi::OsStr]) -> Result<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bench")
        .join(script);
    let o = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| Error::Backend(format!("cannot run python3 for the peer: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.trim()).map_err(|_| {
        Error::Backend(format!(
            "peer {script} failed: {}{}",
            text,
            String::from_utf8_lossy(&o.stderr)
        ))
    })
}

fn bench_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("saeplug-bench-{name}-{}", std::process::id()))
}

fn make_sae(dir: &Path, d_in: usize, d_sae: usize) -> Result<()> {
    eprintln!("writing a {d_in} x {d_sae} SAE to {} ...", dir.display());
    random_sae(d_in, d_sae, Architecture::Standard, 1)?.save_saelens(dir)
}

fn open(a: OpenBench) -> Result<()> {
    let d_in = 2304;
    let d_sae =
        a.mb.checked_mul(1 << 20)
            .map(|b| (b / (8 * d_in)).max(1))
            .ok_or_else(|| Error::InvalidArgument(format!("--mb {} is too large", a.mb)))?;
    let dir = bench_dir("open");
    make_sae(&dir, d_in, d_sae)?;
    let file = dir.join("sae_weights.safetensors");
    let size = std::fs::metadata(&file)
        .map_err(|e| Error::Io {
            path: file.clone(),
            source: e,
        })?
        .len();
    let mut best = f64::MAX;
    let bar = progress::bar(10, "bench open", "opens");
    for _ in 0..10 {
        let t = Instant::now();
        let sae = Sae::open(&dir)?;
        best = best.min(t.elapsed().as_secs_f64());
        assert_zero_copy(&sae)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let t = Instant::now();
    let bytes = std::fs::read(&file).map_err(|e| Error::Io {
        path: file.clone(),
        source: e,
    })?;
    let read = t.elapsed().as_secs_f64();
    println!(
        "open: {:.1} MB SAE file mapped in {:.3} ms (best of 10); reading it with std::fs::read takes {:.1} ms (warm page cache) -> open is {:.0}x faster than a copy",
        size as f64 / 1e6,
        best * 1e3,
        read * 1e3,
        read / best
    );
    drop(bytes);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn assert_zero_copy(sae: &Sae) -> Result<()> {
    if sae.copied_tensors().is_empty() {
        Ok(())
    } else {
        Err(Error::Backend(
            "benchmark SAE was copied, not mapped".into(),
        ))
    }
}

fn encode(a: EncodeBench) -> Result<()> {
    let (d_in, d_sae, batch, iters) = (a.shape.d_in, a.shape.d_sae, a.batch, a.iters);
    let dir = bench_dir("encode");
    make_sae(&dir, d_in, d_sae)?;
    let sae = Sae::open(&dir)?;
    assert_zero_copy(&sae)?;
    let x = Rng::new(3).normal_vec(batch * d_in, 1.0);
    let cpu = backend(a.threads, a.isa)?.with_weight_storage(a.weights);
    let lim = if a.no_roofline {
        None
    } else {
        Some(limits(&cpu, d_in * d_sae * 4)?)
    };
    let mut out = crate::zeros(batch * d_sae)?;
    for _ in 0..3 {
        cpu.encode(&sae, &x, &mut out)?;
    }
    let bar = progress::bar(iters as u64, "bench encode", "calls");
    let t = Instant::now();
    for _ in 0..iters {
        cpu.encode(&sae, &x, &mut out)?;
        bar.inc(1);
    }
    let ours = t.elapsed().as_secs_f64() / iters as f64;
    bar.finish_and_clear();
    let flop = 2.0 * (batch * d_in * d_sae) as f64;
    let l0 = out.iter().filter(|v| **v > 0.0).count() as f64 / batch as f64;
    println!(
        "saeplug cpu ({} threads, {}, {:?}): encode d_in {d_in}, d_sae {d_sae}, batch {batch}: {:.2} ms/call, {:.0} rows/s, {:.1} GFLOP/s, L0 {l0:.0}",
        cpu.threads(),
        cpu.isa().name(),
        a.weights,
        ours * 1e3,
        batch as f64 / ours,
        flop / ours / 1e9
    );
    let bytes = if a.weights == saeplug::backend::cpu::WeightStorage::PackedBf16 {
        2
    } else {
        4
    };
    let fractions = |secs: f64| -> String {
        lim.as_ref().map_or(String::new(), |l| {
            format!(
                " = {:.0}% of the FMA peak, W_enc streamed at {:.0}% of the read bandwidth",
                100.0 * flop / secs / 1e9 / l.peak,
                100.0 * (d_in * d_sae * bytes) as f64 / secs / 1e9 / l.bw
            )
        })
    };
    println!("saeplug:{}", fractions(ours));
    if !a.no_peer {
        let xp = dir.join("x.npy");
        write_npy(&xp, &[batch, d_in], &x)?;
        let iters_s = iters.to_string();
        let v = run_peer(
            "peer_encode.py",
            &[dir.as_os_str(), xp.as_os_str(), iters_s.as_ref()],
        )?;
        let peer_s = v["seconds_per_call"].as_f64().unwrap_or(f64::NAN);
        println!(
            "peer {}: {:.2} ms/call, {:.1} GFLOP/s, L0 {:.0}",
            v["peer"].as_str().unwrap_or("?"),
            peer_s * 1e3,
            flop / peer_s / 1e9,
            v["l0"].as_f64().unwrap_or(f64::NAN)
        );
        println!(
            "peer:{}",
            fractions(peer_s).replace("W_enc streamed", "W_enc (f32) streamed",)
        );
        println!("ratio (peer time / saeplug time): {:.2}x", peer_s / ours);
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Best-of time of `f` over `iters` calls after one warm-up call.
fn time_it(what: &str, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let bar = progress::bar(iters.max(1) as u64 + 1, what, "calls");
    f()?;
    bar.inc(1);
    let mut best = f64::MAX;
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(best)
}

fn gpu(a: GpuBench) -> Result<()> {
    let (d_in, d_sae, batch, iters) = (a.shape.d_in, a.shape.d_sae, a.batch, a.iters);
    let peak = a.peak_tflops;
    let sae = random_sae(d_in, d_sae, Architecture::Standard, 1)?;
    let x = Rng::new(3).normal_vec(batch * d_in, 1.0);
    let gpu = saeplug::WgpuBackend::new(Default::default())?;
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}, {:?}, driver {}), weight chunk limit {} MB",
        info.name,
        info.device_type,
        info.backend,
        info.driver_info,
        gpu.max_chunk_bytes() >> 20
    );
    let cpu = CpuBackend::try_new(a.threads)?;
    let flop = 2.0 * (batch * d_in * d_sae) as f64;
    let mut out_c = crate::zeros(batch * d_sae)?;
    let mut out_g = crate::zeros(batch * d_sae)?;
    let t_cpu = time_it("cpu encode", iters, || {
        cpu.encode(&sae, &x, &mut out_c).map(|_| ())
    })?;
    let t_up = Instant::now();
    gpu.encode(&sae, &x, &mut out_g)?; // first call uploads the weights
    let upload = t_up.elapsed().as_secs_f64();
    let t_gpu = time_it("gpu encode", iters, || {
        gpu.encode(&sae, &x, &mut out_g).map(|_| ())
    })?;
    let err = out_c
        .iter()
        .zip(&out_g)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "encode d_in {d_in}, d_sae {d_sae}, batch {batch}: cpu {:.2} ms ({:.1} GFLOP/s), gpu {:.2} ms ({:.1} GFLOP/s incl. upload of x and read-back), gpu/cpu speed ratio {:.2}x, max |gpu-cpu| {err:.2e}; first call (weights upload) {:.0} ms",
        t_cpu * 1e3,
        flop / t_cpu / 1e9,
        t_gpu * 1e3,
        flop / t_gpu / 1e9,
        t_cpu / t_gpu,
        upload * 1e3
    );
    if let Some(p) = peak {
        println!(
            "gpu encode at {:.2}% of the card's FP32 peak ({p} TFLOP/s)",
            100.0 * flop / t_gpu / (p * 1e12)
        );
    }
    let mut rc = vec![0.0f32; batch * d_in];
    let mut rg = vec![0.0f32; batch * d_in];
    let t_cpu = time_it("cpu decode", iters, || {
        cpu.decode(&sae, &out_c, &[], &mut rc)
    })?;
    let t_gpu = time_it("gpu decode", iters, || {
        gpu.decode(&sae, &out_c, &[], &mut rg)
    })?;
    println!(
        "dense decode: cpu {:.2} ms, gpu {:.2} ms, gpu/cpu speed ratio {:.2}x",
        t_cpu * 1e3,
        t_gpu * 1e3,
        t_cpu / t_gpu
    );
    Ok(())
}

fn ito(a: ItoBench) -> Result<()> {
    use saeplug::solve::{Solver, SolverParams, solve};
    let (d_in, d_sae, k, rows) = (a.shape.d_in, a.shape.d_sae, a.k, a.batch);
    if k > d_sae {
        return Err(Error::InvalidArgument(format!("--k {k} > --d-sae {d_sae}")));
    }
    let dir = bench_dir("ito");
    make_sae(&dir, d_in, d_sae)?;
    let sae = Sae::open(&dir)?;
    let x = saeplug::synthetic::sparse_data(&sae, rows, k, 0.01, 5);
    let cpu = CpuBackend::try_new(a.threads)?;
    let mut ours = Vec::new();
    let bar = progress::bar(3, "bench ito", "solvers");
    for s in [
        Solver::GradientPursuit,
        Solver::OrthogonalMatchingPursuit,
        Solver::MatchingPursuit,
    ] {
        let mut p = SolverParams::new(s, k);
        p.nonnegative = false; // sklearn's OMP is signed
        let t = Instant::now();
        let (_, info) = solve(&cpu, &sae, &x, &p)?;
        let dt = t.elapsed().as_secs_f64();
        let res = info.residual.iter().map(|v| *v as f64).sum::<f64>() / rows as f64;
        bar.suspend(|| {
            println!(
                "saeplug {s:?} (cpu, {} threads): d {d_in}, n {d_sae}, k {k}, {rows} rows: {:.2} s, {:.1} rows/s, mean residual {res:.4}",
                cpu.threads(),
                dt,
                rows as f64 / dt
            )
        });
        ours.push((s, dt));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if a.gpu {
        let gpu = saeplug::WgpuBackend::new(Default::default())?;
        for s in [Solver::GradientPursuit, Solver::MatchingPursuit] {
            let mut p = SolverParams::new(s, k);
            p.nonnegative = false;
            let t = Instant::now();
            match gpu.solve(&sae, &x, &p) {
                Ok(_) => {
                    let dt = t.elapsed().as_secs_f64();
                    println!(
                        "saeplug {s:?} (wgpu, {}): {:.2} s, {:.1} rows/s (first call includes the weight upload)",
                        gpu.adapter_info().name,
                        dt,
                        rows as f64 / dt
                    );
                }
                Err(e) => println!("saeplug {s:?} (wgpu, {}): {e}", gpu.adapter_info().name),
            }
        }
    }
    if a.no_peer {
        return Ok(());
    }
    let xp = dir.join("x.npy");
    write_npy(&xp, &[rows, d_in], &x)?;
    let k_s = k.to_string();
    let v = run_peer(
        "peer_omp.py",
        &[dir.as_os_str(), xp.as_os_str(), k_s.as_ref()],
    )?;
    let gram = v["gram_seconds"].as_f64().unwrap_or(f64::NAN);
    let solve_s = v["solve_seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "peer {}: Gram {:.2} s + solve {:.3} s ({:.1} rows/s after the Gram), mean residual {:.4}",
        v["peer"].as_str().unwrap_or("?"),
        gram,
        solve_s,
        rows as f64 / solve_s,
        v["mean_residual"].as_f64().unwrap_or(f64::NAN)
    );
    let omp = ours
        .iter()
        .find(|(s, _)| *s == Solver::OrthogonalMatchingPursuit)
        .map_or(f64::NAN, |x| x.1);
    println!(
        "ratio OMP (peer time / saeplug time): {:.2}x including the peer's Gram matrix, {:.3}x excluding it",
        (gram + solve_s) / omp,
        solve_s / omp
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
