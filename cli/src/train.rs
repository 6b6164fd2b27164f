//! `saeplug train`: train an SAE natively on an activation matrix and write a
//! SAELens v6 folder, with a live progress line, a metrics CSV, an SVG plot of
//! the curves, checkpoints (every N tokens and on Ctrl-C, write then rename) and
//! `--resume`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Args, ValueEnum};
use saeplug::backend::train_ops::TrainOps;
use saeplug::train::{
    ActivationSource, Arch, MatrixSource, StoreSource, TrainConfig, Trainer, cycle_rows,
};
use saeplug::weights::write_atomic;
use saeplug::{CpuBackend, Error, Result, WgpuBackend};

use crate::{check, progress};

/// Architectures on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ArchArg {
    /// ReLU + L1 weighted by decoder norms (Anthropic, April 2024).
    Standard,
    /// ReLU(topk(h)) per token, AuxK for dead latents.
    Topk,
    /// Top k·B over the batch; saved as JumpReLU.
    Batchtopk,
    /// JumpReLU with a trained threshold and the L0 penalty.
    Jumprelu,
}

/// Compute backends for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TrainBackend {
    /// Multi-threaded CPU.
    Cpu,
    /// WGSL kernels through wgpu (any Vulkan adapter; see docs/TRAINER.md).
    Gpu,
}

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    /// Activations: an activation store folder (written by `saeplug-llama capture`;
    /// its train split, rows shuffled by --seed), or an [n, d_in] f32 matrix in a
    /// .npy or .safetensors file.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Tensor to read from a .safetensors input (default: `acts`, or the only one).
    #[arg(long)]
    tensor: Option<String>,
    /// Output folder: cfg.json + sae_weights.safetensors, metrics.csv,
    /// curves.svg, checkpoint.safetensors.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// Architecture.
    #[arg(long, value_enum, default_value_t = ArchArg::Topk)]
    arch: ArchArg,
    /// Number of latents.
    #[arg(long, value_parser = check::positive)]
    d_sae: usize,
    /// Active latents per token (topk, batchtopk).
    #[arg(long, default_value = "32", value_parser = check::positive)]
    k: usize,
    /// Peak learning rate (Adam).
    #[arg(long, default_value = "3e-4", value_parser = check::positive_f64)]
    lr: f64,
    /// Tokens (rows) per step.
    #[arg(long, default_value = "4096", value_parser = check::positive)]
    batch_size: usize,
    /// Tokens to train on, cycling over the input as often as needed (default: one pass).
    #[arg(long, value_parser = check::positive)]
    tokens: Option<usize>,
    /// Initialisation seed.
    #[arg(long, default_value = "42")]
    seed: u64,
    /// CPU threads (0 = all cores). The same seed and thread count give the same bits.
    #[arg(long, default_value = "0", value_parser = check::threads)]
    threads: usize,
    /// Sparsity coefficient: L1 (standard, default 5) or L0 (jumprelu, default 1).
    #[arg(long, value_parser = check::non_negative)]
    l1_coeff: Option<f32>,
    /// Ghost grads for dead latents (standard).
    #[arg(long)]
    ghost_grads: bool,
    /// AuxK coefficient (topk, batchtopk; 0 = off).
    #[arg(long, default_value = "1", value_parser = check::non_negative)]
    aux_coeff: f32,
    /// Rank h_i·‖W_dec,i‖ and decode with unit decoder rows (SAELens's
    /// rescale_acts_by_decoder_norm; topk, batchtopk).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    rescale_acts_by_decoder_norm: bool,
    /// Matryoshka nested widths, comma separated, ascending, each below d_sae (topk, batchtopk).
    #[arg(long, value_delimiter = ',', value_parser = check::positive)]
    matryoshka: Vec<usize>,
    /// JumpReLU kernel bandwidth.
    #[arg(long, default_value = "0.05", value_parser = check::positive_f64)]
    bandwidth: f64,
    /// JumpReLU initial threshold.
    #[arg(long, default_value = "0.01", value_parser = check::positive_f64)]
    init_threshold: f64,
    /// A latent that has not fired for this many tokens is dead (AuxK, ghost grads, dead %).
    #[arg(long, default_value = "10000000", value_parser = check::positive)]
    dead_window: usize,
    /// Write a metrics row every this many steps.
    #[arg(long, default_value = "10", value_parser = check::positive)]
    log_every: usize,
    /// Write a checkpoint every this many tokens (0 = only on Ctrl-C and at the end).
    #[arg(long, default_value = "0")]
    checkpoint_every: usize,
    /// Continue from OUTPUT/checkpoint.safetensors (its configuration wins).
    #[arg(long)]
    resume: bool,
    /// Stop as if interrupted after this many steps (writes a checkpoint; for tests).
    #[arg(long, hide = true)]
    stop_after: Option<u64>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = TrainBackend::Cpu)]
    backend: TrainBackend,
}

/// Set by the SIGINT handler; the loop checkpoints and stops at the next step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
fn catch_ctrl_c() {
    // SAFETY: `signal` installs a handler that only stores to an atomic (async-signal
    // safe); the function pointer has the C ABI `signal` expects and lives forever.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

#[cfg(not(unix))]
fn catch_ctrl_c() {}

impl TrainArgs {
    fn config(&self, d_in: usize, total_steps: u64) -> TrainConfig {
        let arch = match self.arch {
            ArchArg::Standard => Arch::Standard,
            ArchArg::Topk => Arch::TopK,
            ArchArg::Batchtopk => Arch::BatchTopK,
            ArchArg::Jumprelu => Arch::JumpRelu,
        };
        let mut c = TrainConfig::new(arch, d_in, self.d_sae);
        c.k = self.k;
        if let Some(l) = self.l1_coeff {
            c.l1_coeff = l;
        }
        c.ghost_grads = self.ghost_grads;
        c.aux_coeff = self.aux_coeff;
        c.rescale_acts_by_decoder_norm = self.rescale_acts_by_decoder_norm;
        c.matryoshka = self.matryoshka.clone();
        c.bandwidth = self.bandwidth as f32;
        c.init_threshold = self.init_threshold as f32;
        c.lr = self.lr as f32;
        c.batch_size = self.batch_size;
        c.total_steps = total_steps;
        c.dead_window = self.dead_window as u64;
        c.seed = self.seed;
        c
    }
}

/// Metrics kept for the CSV and the plot.
#[derive(Clone, Copy, Debug)]
struct Row {
    step: u64,
    tokens: u64,
    loss: f64,
    mse: f64,
    fvu: f64,
    l0: f64,
    dead: f64,
    lr: f32,
}

const CSV_HEADER: &str = "step,tokens,loss,mse,fvu,l0,dead_frac,lr";

fn read_csv(path: &Path, up_to_step: u64) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            let f = |i: usize| v.get(i)?.parse::<f64>().ok();
            Some(Row {
                step: v.first()?.parse().ok()?,
                tokens: v.get(1)?.parse().ok()?,
                loss: f(2)?,
                mse: f(3)?,
                fvu: f(4)?,
                l0: f(5)?,
                dead: f(6)?,
                lr: v.get(7)?.parse().ok()?,
            })
        })
        .filter(|r| r.step <= up_to_step)
        .collect()
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut s = format!("{CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{}",
            r.step, r.tokens, r.loss, r.mse, r.fvu, r.l0, r.dead, r.lr
        );
    }
    write_atomic(path, s.as_bytes())
}

/// A plotted metric: its name and how to read it from a row.
type Panel = (&'static str, fn(&Row) -> f64);

/// Four panels (loss, FVU, L0, dead fraction against tokens) as a plain SVG.
fn write_svg(path: &Path, rows: &[Row]) -> Result<()> {
    let (w, h, pad) = (420.0f64, 260.0f64, 40.0f64);
    let panels: [Panel; 4] = [
        ("loss", |r| r.loss),
        ("FVU", |r| r.fvu),
        ("L0", |r| r.l0),
        ("dead fraction", |r| r.dead),
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * w,
        2.0 * h
    );
    let t_max = rows.iter().map(|r| r.tokens).max().unwrap_or(1).max(1) as f64;
    for (p, (name, get)) in panels.iter().enumerate() {
        let (ox, oy) = ((p % 2) as f64 * w, (p / 2) as f64 * h);
        let vals: Vec<f64> = rows.iter().map(get).filter(|v| v.is_finite()).collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let (pw, ph) = (w - 2.0 * pad, h - 2.0 * pad);
        let _ = writeln!(
            s,
            "<g transform=\"translate({ox},{oy})\"><rect x=\"{pad}\" y=\"{pad}\" width=\"{pw}\" \
             height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\
             <text x=\"{pad}\" y=\"{}\">{name}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{hi:.4}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{lo:.4}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t_max} tokens</text>",
            pad - 8.0,
            pad - 2.0,
            pad + 4.0,
            pad - 2.0,
            pad + ph,
            pad + pw,
            pad + ph + 14.0,
        );
        let pts: Vec<String> = rows
            .iter()
            .filter(|r| get(r).is_finite())
            .map(|r| {
                let x = pad + pw * r.tokens as f64 / t_max;
                let y = pad + ph * (1.0 - (get(r) - lo) / (hi - lo));
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/></g>",
            pts.join(" ")
        );
    }
    s.push_str("</svg>\n");
    write_atomic(path, s.as_bytes())
}

pub(crate) fn run(a: TrainArgs) -> Result<()> {
    // An activation store (a folder with manifest.json, written by
    // `saeplug-llama capture`): its train split, rows shuffled by the seed.
    let is_store = a.input.is_dir() && a.input.join("manifest.json").is_file();
    let src: Box<dyn ActivationSource> = if is_store {
        let s = StoreSource::open(&a.input, saeplug::store::Split::Train, Some(a.seed))?;
        s.check_finite().map_err(|e| {
            Error::InvalidArgument(format!(
                "{}: {e}; recapture or drop those rows before training",
                a.input.display()
            ))
        })?;
        Box::new(s)
    } else {
        let m = MatrixSource::open(&a.input, a.tensor.as_deref())?;
        m.check_finite().map_err(|e| {
            Error::InvalidArgument(format!(
                "{}: {e}; remove or fix non-finite rows before training",
                a.input.display()
            ))
        })?;
        Box::new(m)
    };
    let src = src.as_ref();
    let (n, d_in) = (src.n_rows(), src.d_in());
    std::fs::create_dir_all(&a.output).map_err(|e| Error::Io {
        path: a.output.clone(),
        source: e,
    })?;
    let ckpt = a.output.join("checkpoint.safetensors");
    let csv = a.output.join("metrics.csv");
    let mut trainer = if a.resume {
        let t = Trainer::load_checkpoint(&ckpt)?;
        if t.config().d_in != d_in {
            return Err(Error::InvalidArgument(format!(
                "the checkpoint was trained on d_in {}, the input has d_in {d_in}",
                t.config().d_in
            )));
        }
        eprintln!(
            "resuming at step {} of {} (the checkpoint's configuration is used)",
            t.steps_done(),
            t.config().total_steps
        );
        t
    } else {
        let tokens = a.tokens.unwrap_or(n) as u64;
        let steps = tokens.div_ceil(a.batch_size as u64);
        let mut t = Trainer::new(a.config(d_in, steps))?;
        // The scale from the first rows (at most 64 batches).
        let m = n.min(64 * a.batch_size);
        let mut first = vec![0.0f32; m * d_in];
        src.rows(0, &mut first)?;
        t.set_scale_from(&first);
        t
    };
    let cfg = trainer.config().clone();
    let mut rows = if a.resume {
        read_csv(&csv, trainer.steps_done())
    } else {
        Vec::new()
    };
    let cpu = CpuBackend::try_new(a.threads)?;
    // The GPU runs every training primitive (GEMMs, gathers, top-k, Adam); the
    // host keeps the parameters and does the per-entry bookkeeping between them.
    let gpu = match a.backend {
        TrainBackend::Cpu => None,
        TrainBackend::Gpu => {
            let g = WgpuBackend::new(Default::default())?;
            eprintln!("training on {}", g.adapter_info().name);
            Some(g)
        }
    };
    let ops: &dyn TrainOps = match &gpu {
        Some(g) => g,
        None => &cpu,
    };
    catch_ctrl_c();
    let bs = cfg.batch_size as u64;
    let total_tokens = cfg.total_steps * bs;
    let pb = progress::bar(total_tokens, "train", "tokens");
    pb.set_position(trainer.steps_done() * bs);
    let mut batch = vec![0.0f32; cfg.batch_size * d_in];
    let start = Instant::now();
    let first_step = trainer.steps_done();
    let mut next_ckpt = if a.checkpoint_every > 0 {
        (trainer.steps_done() * bs / a.checkpoint_every as u64 + 1) * a.checkpoint_every as u64
    } else {
        u64::MAX
    };
    let mut interrupted = false;
    while trainer.steps_done() < cfg.total_steps {
        let s = trainer.steps_done();
        cycle_rows(src, s * bs, &mut batch)?;
        let st = trainer.step(ops, &batch)?;
        let done = s + 1;
        let tokens = done * bs;
        if done % a.log_every as u64 == 0 || done == cfg.total_steps {
            rows.push(Row {
                step: done,
                tokens,
                loss: st.loss,
                mse: st.mse,
                fvu: st.fvu,
                l0: st.l0,
                dead: st.dead_frac,
                lr: st.lr,
            });
            write_csv(&csv, &rows)?;
        }
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        pb.set_position(tokens);
        pb.set_message(format!(
            "{:.0} tok/s loss {:.4} FVU {:.4} L0 {:.1} dead {:.1}%",
            (done - first_step) as f64 * bs as f64 / secs,
            st.loss,
            st.fvu,
            st.l0,
            100.0 * st.dead_frac
        ));
        if tokens >= next_ckpt {
            trainer.save_checkpoint(&ckpt)?;
            next_ckpt = (tokens / a.checkpoint_every as u64 + 1) * a.checkpoint_every as u64;
        }
        if INTERRUPTED.load(Ordering::SeqCst) || a.stop_after.is_some_and(|m| done >= m) {
            interrupted = true;
            break;
        }
    }
    pb.finish_and_clear();
    write_svg(&a.output.join("curves.svg"), &rows)?;
    trainer.save_checkpoint(&ckpt)?;
    if interrupted {
        eprintln!(
            "interrupted at step {} of {}: checkpoint written to {}; continue with --resume",
            trainer.steps_done(),
            cfg.total_steps,
            ckpt.display()
        );
        std::process::exit(130);
    }
    trainer.save_saelens(&a.output)?;
    let secs = start.elapsed().as_secs_f64();
    let trained = (trainer.steps_done() - first_step) * bs;
    let last = rows.last();
    println!(
        "trained {}{} SAE (d_in {d_in}, d_sae {}) on {} tokens ({n} input rows) in {secs:.1} s \
         ({:.0} tokens/s): loss {:.4}, FVU {:.4}, L0 {:.1}, dead {:.1}%",
        cfg.arch.name(),
        if cfg.matryoshka.is_empty() {
            ""
        } else {
            " Matryoshka"
        },
        cfg.d_sae,
        total_tokens,
        trained as f64 / secs.max(1e-9),
        last.map_or(f64::NAN, |r| r.loss),
        last.map_or(f64::NAN, |r| r.fvu),
        last.map_or(f64::NAN, |r| r.l0),
        100.0 * last.map_or(f64::NAN, |r| r.dead),
    );
    println!(
        "wrote {} (SAELens v6: cfg.json + sae_weights.safetensors), metrics.csv, curves.svg",
        a.output.display()
    );
    Ok(())
}
