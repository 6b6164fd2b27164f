//! `saeplug record`: per-feature dashboards' data from an activation store — top
//! examples and interval samples with their context windows (token ids, text,
//! the feature's value on every token), a histogram, density and max — in two
//! passes over the store, a batch at a time (see `saeplug::record::contexts`).
//! Output: a folder with `index.json` and `features/chunk-NNNNN.json`
//! (docs/DASHBOARD.md describes both).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use saeplug::record::contexts::{ContextRecorder, Example, RecordOptions, window};
use saeplug::store::{ActivationStore, Split};
use saeplug::{Error, Result, Sae, SparseCodes};
use serde_json::{Value, json};

use crate::check;
use crate::compute::{ComputeArgs, Engine};
use crate::progress;
use crate::vocab::GgufVocab;

/// Store splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SplitArg {
    /// The training split.
    Train,
    /// The held-out split.
    Heldout,
}

#[derive(Args, Debug)]
pub(crate) struct RecordArgs {
    /// SAE folder or file.
    #[arg(long)]
    pub(crate) sae: PathBuf,
    /// Activation store folder (written by `saeplug-llama capture`).
    #[arg(long)]
    pub(crate) store: PathBuf,
    /// Split of the store to read.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// Features to record, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    features: Vec<usize>,
    /// Top activating examples kept per feature.
    #[arg(long, default_value = "20")]
    top: usize,
    /// Tokens of context on each side of an example.
    #[arg(long, default_value = "8")]
    context: usize,
    /// Activation intervals (equal width over [0, max]) sampled per feature.
    #[arg(long, default_value = "10")]
    intervals: usize,
    /// Examples sampled per interval.
    #[arg(long, default_value = "5")]
    per_interval: usize,
    /// Histogram bins.
    #[arg(long, default_value = "50")]
    hist_bins: usize,
    /// Seed of the interval sampling.
    #[arg(long, default_value = "0")]
    seed: u64,
    /// The model's GGUF file, for token text (default: the manifest's model
    /// file when it sits beside the store; else token ids only).
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Rows encoded per batch.
    #[arg(long, default_value = "4096", value_parser = check::positive)]
    batch: usize,
    /// Read only the first N rows of the split.
    #[arg(long)]
    max_rows: Option<usize>,
    /// Features per output chunk file.
    #[arg(long, default_value = "128", value_parser = check::positive)]
    chunk: usize,
    /// Output folder (index.json, features/chunk-NNNNN.json).
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    compute: ComputeArgs,
}

/// Peak resident set of this process in KiB (`VmHWM`), when the OS says.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Keep only the chosen features of `codes`, renumbered 0.. in `map` order.
fn select(codes: &SparseCodes, map: &[u32], k: usize) -> SparseCodes {
    let mut out = SparseCodes {
        row_offsets: Vec::with_capacity(codes.row_offsets.len()),
        d_sae: k,
        ..Default::default()
    };
    out.row_offsets.push(0);
    for r in 0..codes.n_rows() {
        let (idx, val) = codes.row(r);
        for (&i, &v) in idx.iter().zip(val) {
            let m = map[i as usize];
            if m != u32::MAX {
                out.indices.push(m);
                out.values.push(v);
            }
        }
        out.row_offsets.push(out.indices.len());
    }
    out
}

pub(crate) fn run(a: RecordArgs) -> Result<()> {
    let t0 = Instant::now();
    let sae = Sae::open(&a.sae)?;
    let store = ActivationStore::open(&a.store)?;
    if sae.d_in() != store.d_in() {
        return Err(Error::InvalidArgument(format!(
            "the SAE's d_in is {} but the store's rows have {} values ({}): \
             this SAE was not trained on this model's hook",
            sae.d_in(),
            store.d_in(),
            a.store.display()
        )));
    }
    let model = a.model.clone().or_else(|| {
        let m = store.manifest().model.as_ref()?;
        let p = a.store.join(&m.file);
        p.is_file().then_some(p)
    });
    let vocab = match &model {
        Some(p) => {
            let v = GgufVocab::read(p)?;
            if let Some(n) = v.n_embd
                && n != sae.d_in() as u64
            {
                return Err(Error::InvalidArgument(format!(
                    "the SAE's d_in is {} but the model {} has n_embd {n}",
                    sae.d_in(),
                    p.display()
                )));
            }
            Some(v)
        }
        None => None,
    };
    let split = match a.split {
        SplitArg::Train => Split::Train,
        SplitArg::Heldout => Split::Heldout,
    };
    let d_sae = sae.d_sae();
    let features: Vec<usize> = if a.features.is_empty() {
        (0..d_sae).collect()
    } else {
        check::features_in_range(&sae, "--features", a.features.iter().copied())?;
        let mut f = a.features.clone();
        f.sort_unstable();
        f.dedup();
        f
    };
    let mut map = vec![u32::MAX; d_sae];
    for (k, &f) in features.iter().enumerate() {
        map[f] = k as u32;
    }
    let all = features.len() == d_sae;
    let opts = RecordOptions {
        top_n: a.top,
        intervals: a.intervals,
        per_interval: a.per_interval,
        hist_bins: a.hist_bins,
        context: a.context,
        seed: a.seed,
    };
    let mut rec = ContextRecorder::new(features.len(), opts.clone())?;
    let engine = Engine::new(&a.compute)?;
    let backend = engine.backend();
    let n = store.n_rows(split).min(a.max_rows.unwrap_or(usize::MAX));
    let d = sae.d_in();
    let mut buf = crate::zeros(a.batch.min(n.max(1)) * d)?;
    let mut pass = 0;
    while rec.needs_pass() {
        pass += 1;
        let bar = progress::bar(n as u64, &format!("record: pass {pass}"), "rows");
        let mut start = 0;
        while start < n {
            let take = a.batch.min(n - start);
            let x = &mut buf[..take * d];
            store.rows_into(split, start, x)?;
            let codes = backend.encode_sparse(&sae, x)?;
            if all {
                rec.observe(&codes, start as u64)?;
            } else {
                rec.observe(&select(&codes, &map, features.len()), start as u64)?;
            }
            start += take;
            bar.inc(take as u64);
        }
        rec.finish_pass()?;
        progress::done(&bar);
    }
    let t_rec = t0.elapsed();
    std::fs::create_dir_all(a.out.join("features")).map_err(|e| Error::Io {
        path: a.out.clone(),
        source: e,
    })?;
    let example = |e: &Example| -> Result<Value> {
        let w = window(&store, split, e.row, a.context)?;
        let c = a.context as i64;
        let acts: Vec<f32> = (0..w.tokens.len())
            .map(|k| {
                let off = w.first_row as i64 + k as i64 - e.row as i64 + c;
                e.window.get(off as usize).copied().unwrap_or(0.0)
            })
            .collect();
        let mut v = json!({
            "row": e.row,
            "seq": w.seq,
            "pos": w.pos[w.focus],
            "value": e.value,
            "focus": w.focus,
            "tokens": w.tokens,
            "acts": acts,
        });
        if let Some(voc) = &vocab {
            v["text"] = json!(w.tokens.iter().map(|&t| voc.text(t)).collect::<Vec<_>>());
        }
        Ok(v)
    };
    let mut index = Vec::with_capacity(features.len());
    let mut chunks = Vec::new();
    for (c, group) in features.chunks(a.chunk).enumerate() {
        let file = format!("features/chunk-{c:05}.json");
        let mut out = Vec::with_capacity(group.len());
        for (j, &f) in group.iter().enumerate() {
            let s = rec.feature(c * a.chunk + j);
            let top = s.top.iter().map(&example).collect::<Result<Vec<_>>>()?;
            let intervals = s
                .intervals
                .iter()
                .map(|i| {
                    Ok(json!({
                        "lo": i.lo, "hi": i.hi, "count": i.count,
                        "samples": i.samples.iter().map(&example).collect::<Result<Vec<_>>>()?,
                    }))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(json!({
                "feature": f,
                "fired": s.count > 0,
                "count": s.count,
                "density": s.density,
                "mean": s.mean,
                "max": s.max,
                "histogram": {"lo": s.lo, "hi": s.max, "counts": s.histogram},
                "top": top,
                "intervals": intervals,
            }));
            index.push(json!({
                "feature": f, "count": s.count, "density": s.density,
                "mean": s.mean, "max": s.max, "chunk": c,
            }));
        }
        write_json(&a.out.join(&file), &json!({"features": out}))?;
        chunks.push(file);
    }
    let dead = index.iter().filter(|v| v["count"] == 0).count();
    let m = store.manifest();
    write_json(
        &a.out.join("index.json"),
        &json!({
            "format": "saeplug-features",
            "version": 1,
            "sae": {"path": a.sae.display().to_string(), "d_in": d, "d_sae": d_sae,
                    "hook": sae.config().hook_name},
            "store": {"path": a.store.display().to_string(), "split": split.name(),
                      "hook": m.hook_name, "layer": m.layer, "rows": n},
            "model": model.as_ref().map(|p| p.display().to_string()),
            "options": {"top": a.top, "context": a.context, "intervals": a.intervals,
                        "per_interval": a.per_interval, "hist_bins": a.hist_bins,
                        "seed": a.seed, "interval_rule": "equal width over [lo, max], lo = min(0, min value)"},
            "chunk_size": a.chunk,
            "chunks": chunks,
            "features": index,
        }),
    )?;
    println!(
        "recorded {} features over {n} rows in {:.1} s ({}): {dead} never fired; \
         peak RSS {} MiB -> {}",
        features.len(),
        t_rec.as_secs_f64(),
        engine.describe(),
        peak_rss_kib().map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        a.out.display()
    );
    Ok(())
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let s = serde_json::to_string(v).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    saeplug::weights::write_atomic(path, s.as_bytes())
}
