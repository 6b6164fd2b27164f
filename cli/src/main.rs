//! `saeplug`: inspect, encode, demo and bench.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use saeplug::solve::{Solver, SolverParams, solve};
use saeplug::steer::{Edit, apply_edits, feature_activation};
use saeplug::sweep::fvu;
use saeplug::synthetic::{random_sae, sparse_data};
use saeplug::weights::{SafeTensors, read_npy, write_npy, write_safetensors};
use saeplug::{Architecture, Backend, CpuBackend, Error, Result, Sae};

mod bench;

const USAGE: &str = "saeplug: sparse autoencoders as activation plugins

usage:
  saeplug demo                      build a small SAE, save it, map it, encode and steer
  saeplug inspect PATH              describe an SAE (SAELens / Gemma Scope / sparsify)
  saeplug encode PATH --input X.(safetensors|npy) [--tensor NAME] --output OUT.(safetensors|npy)
                 [--solver mp|omp|gp --k K [--signed] [--tol T]]
                                    encode activations [n, d_in] with the SAE's encoder or an
                                    ITO solver on its decoder; .safetensors output holds
                                    feature_acts and recon, .npy output holds feature_acts
  saeplug steer PATH --input X.npy --output Y.npy [--clamp F:V] [--ablate F] [--scale F:S]
                 [--add F:C] [--positions all|last|first:P] [--replace with-error|recon]
                 [--solver mp|omp|gp --k K]   edit activations [n, d_in] through the SAE
  saeplug export-cvec --sae PATH --layer L --out FILE.gguf [--feature F:C]... [--vector V.npy [--coef C]]
                 [--model-hint NAME]  llama.cpp control vector: direction.L = sum C*d_F (+ C*V)
  saeplug decompose --sae PATH --vector V.npy [--k K] [--solver omp|gp|mp]
                                    express a steering vector in SAE features (signed ITO)
  saeplug sweep [PATH --input X.(safetensors|npy) [--tensor NAME]] [--k 4,8,16,32]
                                    L0 and FVU of the encoder vs MP/OMP/GP at each k
                                    (no PATH: a synthetic SAE with sparse planted data)
  saeplug bench encode [--d-in N] [--d-sae N] [--batch N] [--iters N] [--no-peer]
                                    CPU encode throughput vs PyTorch on the same machine
  saeplug bench gpu [--d-in N] [--d-sae N] [--batch N] [--iters N] [--peak-tflops F]
                                    wgpu vs CPU encode/decode on whatever adapter exists
  saeplug bench ito [--d-in N] [--d-sae N] [--k K] [--batch N] [--gpu] [--no-peer]
                                    MP/OMP/GP throughput vs scikit-learn orthogonal_mp_gram
  saeplug bench open [--mb N]       time to open (map) a large SAE file
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("saeplug: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` lookup.
pub(crate) fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

pub(crate) fn opt_usize(args: &[String], name: &str, default: usize) -> Result<usize> {
    match opt(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("{name} expects a number, got '{v}'"))),
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None | Some("demo") => demo(),
        Some("inspect") => inspect(args.get(1).ok_or_else(|| usage("inspect needs PATH"))?),
        Some("encode") => encode(args),
        Some("sweep") => sweep(args),
        Some("export-cvec") => export_cvec(args),
        Some("steer") => steer_cmd(args),
        Some("decompose") => decompose(args),
        Some("bench") => bench::run(&args[1..]),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(usage(&format!("unknown command '{other}'"))),
    }
}

pub(crate) fn usage_err(msg: &str) -> Error {
    usage(msg)
}

fn usage(msg: &str) -> Error {
    Error::InvalidArgument(format!("{msg}\n\n{USAGE}"))
}

fn inspect(path: &str) -> Result<()> {
    let t = Instant::now();
    let sae = Sae::open(path)?;
    let dt = t.elapsed();
    let c = sae.config();
    println!("path:          {path}");
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

fn read_input(path: &Path, tensor: Option<&str>) -> Result<(Vec<f32>, Vec<usize>)> {
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

fn encode(args: &[String]) -> Result<()> {
    let path = args.get(1).ok_or_else(|| usage("encode needs PATH"))?;
    let input = PathBuf::from(opt(args, "--input").ok_or_else(|| usage("encode needs --input"))?);
    let output =
        PathBuf::from(opt(args, "--output").ok_or_else(|| usage("encode needs --output"))?);
    let sae = Sae::open(path)?;
    let (x, shape) = read_input(&input, opt(args, "--tensor"))?;
    if shape.last() != Some(&sae.d_in()) {
        return Err(Error::InvalidArgument(format!(
            "input shape {shape:?}: last dimension must be d_in = {}",
            sae.d_in()
        )));
    }
    let n = x.len() / sae.d_in();
    let cpu = CpuBackend::default();
    let t = Instant::now();
    let mut f = vec![0.0; n * sae.d_sae()];
    let mut recon = vec![0.0; x.len()];
    if let Some(s) = opt(args, "--solver") {
        let mut p = SolverParams::new(Solver::parse(s)?, opt_usize(args, "--k", 32)?);
        p.nonnegative = !args.iter().any(|a| a == "--signed");
        if let Some(t) = opt(args, "--tol") {
            p.tol = t.parse().map_err(|_| {
                Error::InvalidArgument(format!("--tol expects a number, got '{t}'"))
            })?;
        }
        let (codes, _) = solve(&cpu, &sae, &x, &p)?;
        f = codes.to_dense();
        cpu.decode_sparse(&sae, &codes, &mut recon)?;
    } else {
        let dn = cpu.encode(&sae, &x, &mut f)?;
        cpu.decode(&sae, &f, &dn, &mut recon)?;
    }
    let dt = t.elapsed();
    let l0 = f.iter().filter(|v| **v != 0.0).count() as f64 / n.max(1) as f64;
    if output.extension().is_some_and(|e| e == "npy") {
        write_npy(&output, &[n, sae.d_sae()], &f)?;
    } else {
        write_safetensors(
            &output,
            &[
                ("feature_acts", &[n, sae.d_sae()], &f),
                ("recon", &[n, sae.d_in()], &recon),
            ],
            &BTreeMap::new(),
        )?;
    }
    println!(
        "encoded {n} rows in {:.3} ms: mean L0 {l0:.1}, FVU {:.4} -> {}",
        dt.as_secs_f64() * 1e3,
        fvu(&x, &recon, sae.d_in()),
        output.display()
    );
    Ok(())
}

fn sweep(args: &[String]) -> Result<()> {
    let ks: Vec<usize> = opt(args, "--k")
        .unwrap_or("4,8,16,32")
        .split(',')
        .map(|k| {
            k.trim()
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("--k expects numbers, got '{k}'")))
        })
        .collect::<Result<_>>()?;
    let report = match args.get(1).filter(|a| !a.starts_with("--")) {
        None => {
            println!(
                "synthetic SAE (d_in 128, d_sae 512, JumpReLU), 256 rows of 5 planted features + noise"
            );
            saeplug::sweep::sweep_synthetic(&CpuBackend::default(), &ks, 7)?
        }
        Some(path) => {
            let input = opt(args, "--input").ok_or_else(|| usage("sweep PATH needs --input"))?;
            let (x, _) = read_input(Path::new(input), opt(args, "--tensor"))?;
            saeplug::sweep::sweep(&CpuBackend::default(), Sae::open(path)?, x, &ks)?
        }
    };
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

/// All values of a repeatable `--name value` option.
fn opts<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

fn parse_feature(s: &str) -> Result<(usize, f32)> {
    let bad = || Error::InvalidArgument(format!("--feature expects F:C, got '{s}'"));
    let (f, c) = s.split_once(':').ok_or_else(bad)?;
    Ok((f.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?))
}

fn export_cvec(args: &[String]) -> Result<()> {
    let sae = Sae::open(opt(args, "--sae").ok_or_else(|| usage("export-cvec needs --sae"))?)?;
    let layer: u32 = opt(args, "--layer")
        .ok_or_else(|| usage("export-cvec needs --layer"))?
        .parse()
        .map_err(|_| usage("--layer expects a number"))?;
    let out = PathBuf::from(opt(args, "--out").ok_or_else(|| usage("export-cvec needs --out"))?);
    let features: Vec<(usize, f32)> = opts(args, "--feature")
        .into_iter()
        .map(parse_feature)
        .collect::<Result<_>>()?;
    if let Some(&(f, _)) = features.iter().find(|(f, _)| *f >= sae.d_sae()) {
        return Err(Error::InvalidArgument(format!(
            "feature {f} >= d_sae {}",
            sae.d_sae()
        )));
    }
    let mut v = saeplug::decompose::recompose(&sae, &features);
    if let Some(p) = opt(args, "--vector") {
        let (x, _) = read_input(Path::new(p), None)?;
        if x.len() != sae.d_in() {
            return Err(Error::InvalidArgument(format!(
                "--vector has {} values, d_in is {}",
                x.len(),
                sae.d_in()
            )));
        }
        let c: f32 = opt(args, "--coef")
            .unwrap_or("1")
            .parse()
            .map_err(|_| usage("--coef expects a number"))?;
        v.iter_mut().zip(&x).for_each(|(a, b)| *a += c * b);
    }
    let hint = opt(args, "--model-hint").unwrap_or("saeplug");
    saeplug::cvec::write_control_vector(&out, hint, &[(layer, v)])?;
    println!(
        "wrote {} (direction.{layer}, {} floats)",
        out.display(),
        sae.d_in()
    );
    Ok(())
}

fn decompose(args: &[String]) -> Result<()> {
    let sae = Sae::open(opt(args, "--sae").ok_or_else(|| usage("decompose needs --sae"))?)?;
    let (v, _) = read_input(
        Path::new(opt(args, "--vector").ok_or_else(|| usage("decompose needs --vector"))?),
        None,
    )?;
    let mut p = SolverParams::new(
        Solver::parse(opt(args, "--solver").unwrap_or("omp"))?,
        opt_usize(args, "--k", 16)?,
    );
    p.nonnegative = false;
    let d = saeplug::decompose::decompose_vector(&CpuBackend::default(), &sae, &v, &p)?;
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

fn steer_cmd(args: &[String]) -> Result<()> {
    use saeplug::hook::{Hook, Positions, Replace};
    use saeplug::steer::{Edit, FeatureSource};
    let path = args.get(1).ok_or_else(|| usage("steer needs PATH"))?;
    let input = PathBuf::from(opt(args, "--input").ok_or_else(|| usage("steer needs --input"))?);
    let output = PathBuf::from(opt(args, "--output").ok_or_else(|| usage("steer needs --output"))?);
    let sae = std::sync::Arc::new(Sae::open(path)?);
    let (mut x, shape) = read_input(&input, opt(args, "--tensor"))?;
    let mut hook = Hook::new(std::sync::Arc::clone(&sae), 0);
    for (name, make) in [("--clamp", 1u8), ("--scale", 2), ("--add", 3)] {
        for v in opts(args, name) {
            let (feature, c) = parse_feature(v)?;
            hook.edits.push(match make {
                1 => Edit::Clamp { feature, value: c },
                2 => Edit::Scale { feature, factor: c },
                _ => Edit::AddFeature { feature, coef: c },
            });
        }
    }
    for v in opts(args, "--ablate") {
        let feature = v
            .parse()
            .map_err(|_| usage("--ablate expects a feature index"))?;
        hook.edits.push(Edit::Ablate { feature });
    }
    hook.positions = match opt(args, "--positions").unwrap_or("all") {
        "all" => Positions::All,
        "last" => Positions::Last,
        p => match p.strip_prefix("first:").and_then(|n| n.parse().ok()) {
            Some(n) => Positions::First(n),
            None => return Err(usage("--positions expects all, last or first:P")),
        },
    };
    hook.replace = match opt(args, "--replace") {
        None => Replace::None,
        Some("with-error") => Replace::WithError,
        Some("recon") => Replace::ReconstructionOnly,
        Some(_) => return Err(usage("--replace expects with-error or recon")),
    };
    if let Some(s) = opt(args, "--solver") {
        hook.source = FeatureSource::Solver(SolverParams::new(
            Solver::parse(s)?,
            opt_usize(args, "--k", 32)?,
        ));
    }
    let before = x.clone();
    hook.apply(&CpuBackend::default(), &mut x, 0)?;
    write_npy(&output, &shape, &x)?;
    let moved = x
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "applied {} edit(s) to {} rows (max change {moved:.4}) -> {}",
        hook.edits.len(),
        x.len() / sae.d_in(),
        output.display()
    );
    Ok(())
}
