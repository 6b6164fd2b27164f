//! `saeplug`: demo, inspect, encode, steer, export-cvec, decompose, sweep, train, record and bench.
//!
//! Arguments are parsed by clap: unknown options are errors, every subcommand has
//! its own `--help`, and values (numbers, feature specs, input files, output
//! folders, solver and backend names) are checked before any work starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use saeplug::solve::{Solver, SolverParams};
use saeplug::steer::{Edit, FeatureSource, apply_edits, feature_activation};
use saeplug::sweep::fvu;
use saeplug::synthetic::{random_sae, sparse_data};
use saeplug::weights::{SafeTensors, read_npy, write_npy, write_safetensors};
use saeplug::{Architecture, Backend, CpuBackend, Error, Result, Sae};

use check::FeatureSpec;
use compute::{ComputeArgs, Engine};

mod bench;
mod check;
mod compute;
mod dashboard;
mod explain;
mod progress;
mod record;
mod train;
mod vocab;

/// saeplug: sparse autoencoders as activation plugins.
///
/// With no command, runs `saeplug demo`.
#[derive(Parser, Debug)]
#[command(name = "saeplug", version, propagate_version = true)]
struct Cli {
    /// Show progress on stderr even when it is not a terminal (plain lines).
    #[arg(long, global = true)]
    progress: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a small SAE, save it, map it, encode and steer (the default command).
    Demo,
    /// Describe an SAE (SAELens / Gemma Scope / sparsify).
    Inspect {
        /// SAE folder or file.
        path: PathBuf,
    },
    /// Encode activations [n, d_in] with the SAE's encoder, or with an ITO solver on
    /// its decoder. .safetensors output holds feature_acts and recon; .npy output
    /// holds feature_acts.
    Encode(EncodeArgs),
    /// Edit activations [n, d_in] through the SAE (error-preserving unless --replace).
    Steer(SteerArgs),
    /// Write a llama.cpp control vector: direction.L = sum C*d_F (+ C*V).
    ExportCvec(ExportArgs),
    /// Express a steering vector in SAE features (signed ITO).
    Decompose(DecomposeArgs),
    /// L0 and FVU of the encoder vs MP/OMP/GP at each k (no PATH: a synthetic SAE
    /// with sparse planted data).
    Sweep(SweepArgs),
    /// Train an SAE on activations [n, d_in] (.npy or .safetensors) and write a
    /// SAELens v6 folder, metrics.csv, curves.svg and checkpoints.
    Train(Box<train::TrainArgs>),
    /// Record per-feature dashboard data from an activation store: top examples and
    /// interval samples with context windows, histogram, density (two passes).
    Record(Box<record::RecordArgs>),
    /// Benchmarks, measured against a peer (PyTorch / scikit-learn) in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Build a static feature dashboard (opens from file://) from `saeplug record`,
    /// `saeplug-llama logits` and `saeplug explain` output.
    Dashboard(dashboard::DashboardArgs),
    /// Explain features with a language model (an OpenAI-compatible endpoint or a
    /// local GGUF chat model) and score the explanations (detection, fuzzing).
    Explain(Box<explain::ExplainArgs>),
}

/// ITO solver names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SolverKind {
    /// Matching pursuit.
    Mp,
    /// Orthogonal matching pursuit.
    Omp,
    /// Gradient pursuit.
    Gp,
}

impl From<SolverKind> for Solver {
    fn from(s: SolverKind) -> Self {
        match s {
            SolverKind::Mp => Solver::MatchingPursuit,
            SolverKind::Omp => Solver::OrthogonalMatchingPursuit,
            SolverKind::Gp => Solver::GradientPursuit,
        }
    }
}

/// An SAE and the activations to run through it.
#[derive(Args, Debug)]
struct SaeInput {
    /// SAE folder or file.
    path: PathBuf,
    /// Activations [n, d_in]: .npy or .safetensors.
    #[arg(long)]
    input: PathBuf,
    /// Tensor to read from a .safetensors input holding several.
    #[arg(long)]
    tensor: Option<String>,
}

impl SaeInput {
    /// Both paths are what they should be (checked before any work).
    fn check(&self) -> std::result::Result<(), String> {
        check::sae_path(&self.path)?;
        check::input_file(&self.input)
    }
}

#[derive(Args, Debug)]
struct EncodeArgs {
    #[command(flatten)]
    io: SaeInput,
    /// Output file: .npy (feature_acts) or .safetensors (feature_acts and recon).
    #[arg(long)]
    output: PathBuf,
    /// Encode with this ITO solver instead of the SAE's encoder.
    #[arg(long, value_enum)]
    solver: Option<SolverKind>,
    /// Solver steps (an upper bound on L0).
    #[arg(long, default_value = "32", value_parser = check::positive, requires = "solver")]
    k: usize,
    /// Signed solver codes (default: nonnegative).
    #[arg(long, requires = "solver")]
    signed: bool,
    /// Stop a row once its residual norm is below this.
    #[arg(long, default_value = "0", value_parser = check::non_negative, requires = "solver")]
    tol: f32,
    /// Rows per chunk (progress advances by chunks).
    #[arg(long, default_value = "4096", value_parser = check::positive)]
    chunk: usize,
    #[command(flatten)]
    compute: ComputeArgs,
}

/// `--replace` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReplaceKind {
    /// Replace x by the edited reconstruction plus the SAE's error term.
    WithError,
    /// Replace x by the edited reconstruction only.
    Recon,
}

#[derive(Args, Debug)]
struct SteerArgs {
    #[command(flatten)]
    io: SaeInput,
    /// Output .npy file.
    #[arg(long)]
    output: PathBuf,
    /// Clamp feature F to V (repeatable).
    #[arg(long, value_name = "F:V", value_parser = check::feature_spec)]
    clamp: Vec<FeatureSpec>,
    /// Multiply feature F by S (repeatable).
    #[arg(long, value_name = "F:S", value_parser = check::feature_spec)]
    scale: Vec<FeatureSpec>,
    /// Add C times feature F's decoder direction (repeatable).
    #[arg(long, value_name = "F:C", value_parser = check::feature_spec)]
    add: Vec<FeatureSpec>,
    /// Zero feature F (repeatable).
    #[arg(long, value_name = "F")]
    ablate: Vec<usize>,
    /// Rows edited: all, last or first:P.
    #[arg(long, default_value = "all", value_parser = check::positions)]
    positions: saeplug::hook::Positions,
    /// Replace x by the reconstruction instead of preserving the error term.
    #[arg(long, value_enum)]
    replace: Option<ReplaceKind>,
    /// Compute feature activations with this ITO solver instead of the encoder.
    #[arg(long, value_enum)]
    solver: Option<SolverKind>,
    /// Solver steps.
    #[arg(long, default_value = "32", value_parser = check::positive, requires = "solver")]
    k: usize,
    #[command(flatten)]
    compute: ComputeArgs,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// SAE folder or file.
    #[arg(long)]
    sae: PathBuf,
    /// Model layer the vector is added at.
    #[arg(long)]
    layer: u32,
    /// Output .gguf file.
    #[arg(long)]
    out: PathBuf,
    /// Add C times feature F's decoder direction (repeatable).
    #[arg(long, value_name = "F:C", value_parser = check::feature_spec)]
    feature: Vec<FeatureSpec>,
    /// Add a vector [d_in] from a .npy / .safetensors file.
    #[arg(long)]
    vector: Option<PathBuf>,
    /// Coefficient of --vector.
    #[arg(long, default_value = "1", value_parser = check::finite, requires = "vector")]
    coef: f32,
    /// Model name recorded in the file.
    #[arg(long, default_value = "saeplug")]
    model_hint: String,
}

#[derive(Args, Debug)]
struct DecomposeArgs {
    /// SAE folder or file.
    #[arg(long)]
    sae: PathBuf,
    /// The vector [d_in] (.npy / .safetensors).
    #[arg(long)]
    vector: PathBuf,
    /// Features to use at most.
    #[arg(long, default_value = "16", value_parser = check::positive)]
    k: usize,
    /// ITO solver.
    #[arg(long, value_enum, default_value_t = SolverKind::Omp)]
    solver: SolverKind,
    #[command(flatten)]
    compute: ComputeArgs,
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// SAE folder or file (omit for the synthetic SAE).
    #[arg(requires = "input")]
    path: Option<PathBuf>,
    /// Activations [n, d_in] for PATH.
    #[arg(long, requires = "path")]
    input: Option<PathBuf>,
    /// Tensor to read from a .safetensors input holding several.
    #[arg(long, requires = "input")]
    tensor: Option<String>,
    /// Solver steps to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32", value_parser = check::positive)]
    k: Vec<usize>,
    #[command(flatten)]
    compute: ComputeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    progress::force(cli.progress);
    let command = cli.command.unwrap_or(Command::Demo);
    if let Err(msg) = check_files(&command) {
        // Reported like clap's own value errors (exit status 2), before any work.
        let mut cli = <Cli as clap::CommandFactory>::command();
        cli.build();
        let sub = command.name();
        let mut cmd = match cli.find_subcommand_mut(sub) {
            Some(c) => c.clone(),
            None => cli,
        };
        cmd.error(clap::error::ErrorKind::ValueValidation, msg)
            .exit();
    }
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("saeplug: error: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The subcommand's name on the command line.
    fn name(&self) -> &'static str {
        match self {
            Command::Demo => "demo",
            Command::Inspect { .. } => "inspect",
            Command::Encode(_) => "encode",
            Command::Steer(_) => "steer",
            Command::ExportCvec(_) => "export-cvec",
            Command::Decompose(_) => "decompose",
            Command::Sweep(_) => "sweep",
            Command::Train(_) => "train",
            Command::Record(_) => "record",
            Command::Bench(_) => "bench",
            Command::Dashboard(_) => "dashboard",
            Command::Explain(_) => "explain",
        }
    }
}

/// Every file named on the command line: SAE paths exist, inputs are regular
/// files, outputs go to an existing folder.
fn check_files(cmd: &Command) -> std::result::Result<(), String> {
    use check::{input_file, output_file, sae_path};
    let opt = |p: &Option<PathBuf>, f: fn(&Path) -> std::result::Result<(), String>| {
        p.as_deref().map_or(Ok(()), f)
    };
    match cmd {
        Command::Demo | Command::Bench(_) => Ok(()),
        Command::Explain(a) => {
            if !a.record.join("index.json").is_file() {
                return Err(format!(
                    "{}: no index.json (a folder written by saeplug record)",
                    a.record.display()
                ));
            }
            sae_path(&a.sae)?;
            opt(&a.model, input_file)?;
            opt(&a.llm, input_file)?;
            output_file(&a.out)
        }
        Command::Dashboard(a) => {
            if !a.record.join("index.json").is_file() {
                return Err(format!(
                    "{}: no index.json (a folder written by saeplug record)",
                    a.record.display()
                ));
            }
            opt(&a.logits, input_file)?;
            opt(&a.explanations, input_file)?;
            if a.out.exists() && !a.out.is_dir() {
                return Err(format!("{} exists and is not a folder", a.out.display()));
            }
            Ok(())
        }
        Command::Inspect { path } => sae_path(path),
        Command::Encode(a) => {
            a.io.check()?;
            output_file(&a.output)
        }
        Command::Steer(a) => {
            a.io.check()?;
            output_file(&a.output)
        }
        Command::ExportCvec(a) => {
            sae_path(&a.sae)?;
            opt(&a.vector, input_file)?;
            output_file(&a.out)
        }
        Command::Decompose(a) => {
            sae_path(&a.sae)?;
            input_file(&a.vector)
        }
        Command::Sweep(a) => {
            opt(&a.path, sae_path)?;
            opt(&a.input, input_file)
        }
        Command::Record(a) => {
            sae_path(&a.sae)?;
            if !a.store.join("manifest.json").is_file() {
                return Err(format!(
                    "{} is not an activation store (no manifest.json)",
                    a.store.display()
                ));
            }
            opt(&a.model, input_file)?;
            if a.out.exists() && !a.out.is_dir() {
                return Err(format!("{} exists and is not a folder", a.out.display()));
            }
            Ok(())
        }
        Command::Train(a) => {
            // An activation store folder, or a regular matrix file.
            if !(a.input.is_dir() && a.input.join("manifest.json").is_file()) {
                input_file(&a.input)?;
            }
            if a.output.exists() && !a.output.is_dir() {
                return Err(format!("{} exists and is not a folder", a.output.display()));
            }
            Ok(())
        }
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Demo => demo(),
        Command::Inspect { path } => inspect(&path),
        Command::Encode(a) => encode(a),
        Command::Steer(a) => steer(a),
        Command::ExportCvec(a) => export_cvec(a),
        Command::Decompose(a) => decompose(a),
        Command::Sweep(a) => sweep(a),
        Command::Train(a) => train::run(*a),
        Command::Record(a) => record::run(*a),
        Command::Bench(b) => bench::run(b),
        Command::Dashboard(a) => dashboard::run(a).map_err(Error::InvalidArgument),
        Command::Explain(a) => explain::run(*a),
    }
}

/// A zeroed buffer of `len` floats, or an error (not an abort) when it cannot be had.
pub(crate) fn zeros(len: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::InvalidArgument(format!("cannot allocate {len} floats for the output"))
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

/// `a * b` for buffer sizes, or an error.
fn size(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::InvalidArgument(format!("{a} x {b} values overflow")))
}

fn inspect(path: &Path) -> Result<()> {
    let t = Instant::now();
    let sae = Sae::open(path)?;
    let dt = t.elapsed();
    let c = sae.config();
    println!("path:          {}", path.display());
    println!("format:        {:?}", c.format);
    println!("architecture:  {:?}", c.architecture);
    println!("d_in:          {}", c.d_in);
    println!("d_sae:         {}", c.d_sae);
    println!("normalization: {:?}", c.normalization);
    println!("apply_b_dec_to_input: {}", c.apply_b_dec_to_input);
    println!("hook:          {}", c.hook_name.as_deref().unwrap_or("-"));
    let copied = sae.copied_tensors();
    if copied.is_empty() {
        println!("zero-copy:     yes (all tensors borrowed from the file map)");
    } else {
        println!(
            "zero-copy:     no; converted/copied once: {}",
            copied.join(", ")
        );
    }
    println!("opened in:     {:.3} ms", dt.as_secs_f64() * 1e3);
    Ok(())
}

/// Read an `.npy` or a tensor of a `.safetensors` file (regular files only).
fn read_input(path: &Path, tensor: Option<&str>) -> Result<(Vec<f32>, Vec<usize>)> {
    check::regular_file(path)?;
    let t = if path.extension().is_some_and(|e| e == "npy") {
        read_npy(path)?
    } else {
        let st = SafeTensors::open(path)?;
        let name = match tensor {
            Some(n) => n.to_string(),
            None if st.tensors.len() == 1 => st.tensors.keys().next().cloned().unwrap_or_default(),
            None if st.tensors.contains_key("x") => "x".into(),
            None => {
                return Err(Error::InvalidArgument(format!(
                    "{} holds several tensors ({}); choose one with --tensor",
                    path.display(),
                    st.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        };
        st.tensor(&name)?
    };
    Ok((t.as_slice().to_vec(), t.shape().to_vec()))
}

/// Read activations `[.., d_in]` for `sae`.
fn read_rows(sae: &Sae, path: &Path, tensor: Option<&str>) -> Result<(Vec<f32>, Vec<usize>)> {
    let (x, shape) = read_input(path, tensor)?;
    if shape.last() != Some(&sae.d_in()) {
        return Err(Error::InvalidArgument(format!(
            "{}: shape {shape:?}: last dimension must be d_in = {}",
            path.display(),
            sae.d_in()
        )));
    }
    Ok((x, shape))
}

fn solver_params(solver: SolverKind, k: usize) -> SolverParams {
    SolverParams::new(solver.into(), k)
}

fn encode(a: EncodeArgs) -> Result<()> {
    let sae = Sae::open(&a.io.path)?;
    let params = a.solver.map(|s| {
        let mut p = solver_params(s, a.k);
        p.nonnegative = !a.signed;
        p.tol = a.tol;
        p
    });
    if let Some(p) = &params {
        p.validate(&sae)?;
    }
    let engine = Engine::new(&a.compute)?;
    let backend = engine.backend();
    let (x, _) = read_rows(&sae, &a.io.input, a.io.tensor.as_deref())?;
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let n = x.len() / d;
    let mut f = zeros(size(n, ds)?)?;
    let mut recon = zeros(x.len())?;
    let bar = progress::bar(n as u64, "encode", "rows");
    let t = Instant::now();
    let rows = a.chunk;
    for ((xc, fc), rc) in x
        .chunks(size(rows, d)?)
        .zip(f.chunks_mut(size(rows, ds)?))
        .zip(recon.chunks_mut(size(rows, d)?))
    {
        match &params {
            Some(p) => {
                let (codes, _) = backend.solve(&sae, xc, p)?;
                fc.copy_from_slice(&codes.to_dense());
                backend.decode_sparse(&sae, &codes, rc)?;
            }
            None => {
                let dn = backend.encode(&sae, xc, fc)?;
                backend.decode(&sae, fc, &dn, rc)?;
            }
        }
        bar.inc((xc.len() / d) as u64);
    }
    progress::done(&bar);
    let dt = t.elapsed();
    let l0 = f.iter().filter(|v| **v != 0.0).count() as f64 / n.max(1) as f64;
    if a.output.extension().is_some_and(|e| e == "npy") {
        write_npy(&a.output, &[n, ds], &f)?;
    } else {
        write_safetensors(
            &a.output,
            &[("feature_acts", &[n, ds], &f), ("recon", &[n, d], &recon)],
            &BTreeMap::new(),
        )?;
    }
    println!(
        "encoded {n} rows in {:.3} ms ({}): mean L0 {l0:.1}, FVU {:.4} -> {}",
        dt.as_secs_f64() * 1e3,
        engine.describe(),
        fvu(&x, &recon, d),
        a.output.display()
    );
    Ok(())
}

fn sweep(a: SweepArgs) -> Result<()> {
    let engine = Engine::new(&a.compute)?;
    let backend = engine.backend();
    let spin = progress::spinner("sweep: encoder");
    let mut report = match (&a.path, &a.input) {
        (Some(path), Some(input)) => {
            let sae = Sae::open(path)?;
            let (x, _) = read_rows(&sae, input, a.tensor.as_deref())?;
            saeplug::sweep::sweep(backend, sae, x, &[])?
        }
        _ => {
            println!(
                "synthetic SAE (d_in 128, d_sae 512, JumpReLU), 256 rows of 5 planted features + noise"
            );
            saeplug::sweep::sweep_synthetic(backend, &[], 7)?
        }
    };
    spin.finish_and_clear();
    let d_sae = report.sae.d_sae();
    let ks: Vec<usize> = a.k.iter().copied().filter(|&k| k <= d_sae).collect();
    if ks.len() < a.k.len() {
        eprintln!("saeplug: skipping k > d_sae = {d_sae}");
    }
    let solvers = [
        Solver::MatchingPursuit,
        Solver::OrthogonalMatchingPursuit,
        Solver::GradientPursuit,
    ];
    let bar = progress::bar((ks.len() * solvers.len()) as u64, "sweep", "runs");
    for &k in &ks {
        for s in solvers {
            bar.set_message(format!("sweep: {s:?} k={k}"));
            let p = saeplug::sweep::run_solver(backend, &report, s, k)?;
            report.points.push(p);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    print!("{}", report.table());
    Ok(())
}

fn demo() -> Result<()> {
    let (d_in, d_sae, n) = (256, 1024, 32);
    let dir = std::env::temp_dir().join(format!("saeplug-demo-{}", std::process::id()));
    println!("saeplug demo: a {d_in} x {d_sae} JumpReLU SAE, {n} tokens\n");
    random_sae(d_in, d_sae, Architecture::JumpRelu, 42)?.save_saelens(&dir)?;
    println!("1. saved a SAELens folder: {}", dir.display());
    let t = Instant::now();
    let sae = Sae::open(&dir)?;
    println!(
        "2. mapped it in {:.3} ms; zero-copy: {}",
        t.elapsed().as_secs_f64() * 1e3,
        sae.copied_tensors().is_empty()
    );
    let x = sparse_data(&sae, n, 4, 0.02, 7);
    let cpu = CpuBackend::default();
    let codes = cpu.encode_sparse(&sae, &x)?;
    let mut recon = vec![0.0; x.len()];
    cpu.decode_sparse(&sae, &codes, &mut recon)?;
    println!(
        "3. encoded: mean L0 {:.1} of {d_sae}, reconstruction FVU {:.4}",
        codes.indices.len() as f64 / n as f64,
        fvu(&x, &recon, d_in)
    );
    let (idx, val) = codes.row(0);
    let mut top: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let shown: Vec<String> = top
        .iter()
        .take(5)
        .map(|(i, v)| format!("#{i}={v:.3}"))
        .collect();
    println!("4. token 0's top features: {}", shown.join(" "));
    let (feat, before) = top
        .first()
        .map(|&(i, v)| (i as usize, v))
        .unwrap_or((0, 0.0));
    let target = 2.0 * before + 1.0;
    let mut steered = x.clone();
    apply_edits(
        &cpu,
        &sae,
        &mut steered,
        &[Edit::Clamp {
            feature: feat,
            value: target,
        }],
        Some(&[0]),
    )?;
    let after = feature_activation(&cpu, &sae, &steered[..d_in], feat)?;
    let moved: f32 = steered[d_in..]
        .iter()
        .zip(&x[d_in..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    println!(
        "5. steered token 0: clamp feature #{feat} {before:.3} -> {target:.3}; re-encoded: {after:.3}; other tokens moved by {moved}"
    );
    std::fs::remove_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    println!("\nok");
    Ok(())
}

fn export_cvec(a: ExportArgs) -> Result<()> {
    let sae = Sae::open(&a.sae)?;
    check::features_in_range(&sae, "--feature", a.feature.iter().map(|f| f.feature))?;
    let features: Vec<(usize, f32)> = a.feature.iter().map(|f| (f.feature, f.value)).collect();
    let mut v = saeplug::decompose::recompose(&sae, &features);
    if let Some(p) = &a.vector {
        let (x, _) = read_input(p, None)?;
        if x.len() != sae.d_in() {
            return Err(Error::InvalidArgument(format!(
                "--vector has {} values, d_in is {}",
                x.len(),
                sae.d_in()
            )));
        }
        v.iter_mut().zip(&x).for_each(|(s, b)| *s += a.coef * b);
    }
    saeplug::cvec::write_control_vector(&a.out, &a.model_hint, &[(a.layer, v)])?;
    println!(
        "wrote {} (direction.{}, {} floats)",
        a.out.display(),
        a.layer,
        sae.d_in()
    );
    Ok(())
}

fn decompose(a: DecomposeArgs) -> Result<()> {
    let sae = Sae::open(&a.sae)?;
    let mut p = solver_params(a.solver, a.k);
    p.nonnegative = false;
    p.validate(&sae)?;
    let engine = Engine::new(&a.compute)?;
    let (v, _) = read_input(&a.vector, None)?;
    let d = saeplug::decompose::decompose_vector(engine.backend(), &sae, &v, &p)?;
    println!(
        "cosine {:.4}, relative error {:.4}, {} features:",
        d.cosine,
        d.rel_error,
        d.features.len()
    );
    for (i, c) in &d.features {
        println!("  #{i:<8} {c:+.4}");
    }
    Ok(())
}

fn steer(a: SteerArgs) -> Result<()> {
    use saeplug::hook::{Hook, Replace};
    let sae = Arc::new(Sae::open(&a.io.path)?);
    let specs = a.clamp.iter().chain(&a.scale).chain(&a.add);
    check::features_in_range(
        &sae,
        "steer",
        specs.map(|f| f.feature).chain(a.ablate.iter().copied()),
    )?;
    let mut hook = Hook::new(Arc::clone(&sae), 0);
    hook.edits.extend(a.clamp.iter().map(|f| Edit::Clamp {
        feature: f.feature,
        value: f.value,
    }));
    hook.edits.extend(a.scale.iter().map(|f| Edit::Scale {
        feature: f.feature,
        factor: f.value,
    }));
    hook.edits.extend(a.add.iter().map(|f| Edit::AddFeature {
        feature: f.feature,
        coef: f.value,
    }));
    hook.edits
        .extend(a.ablate.iter().map(|&feature| Edit::Ablate { feature }));
    hook.positions = a.positions.clone();
    hook.replace = match a.replace {
        None => Replace::None,
        Some(ReplaceKind::WithError) => Replace::WithError,
        Some(ReplaceKind::Recon) => Replace::ReconstructionOnly,
    };
    if let Some(s) = a.solver {
        let p = solver_params(s, a.k);
        p.validate(&sae)?;
        hook.source = FeatureSource::Solver(p);
    }
    let engine = Engine::new(&a.compute)?;
    let (mut x, shape) = read_rows(&sae, &a.io.input, a.io.tensor.as_deref())?;
    let before = x.clone();
    hook.apply(engine.backend(), &mut x, 0)?;
    write_npy(&a.output, &shape, &x)?;
    let moved = x
        .iter()
        .zip(&before)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    println!(
        "applied {} edit(s) to {} rows (max change {moved:.4}) -> {}",
        hook.edits.len(),
        x.len() / sae.d_in(),
        a.output.display()
    );
    Ok(())
}
