//! `saeplug explain`: auto-interp. Explanations of features from a language model
//! shown delphi-style examples, scored by detection and fuzzing (balanced accuracy
//! on held-out activating and non-activating examples).

pub mod model;
pub mod prompt;
pub mod score;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use saeplug::record::contexts::window;
use saeplug::store::{ActivationStore, Split};
use saeplug::synthetic::Rng;
use saeplug::{Error, Result, Sae};
use serde_json::{Value, json};

use crate::compute::{ComputeArgs, Engine};
use crate::progress;
use crate::vocab::GgufVocab;
use model::{ChatModel, Endpoint, LocalServer, find_llama_server};
use prompt::{ScoreKind, Window, explainer_messages, fallback_explanation, parse_explanation};

#[derive(Args, Debug)]
pub(crate) struct ExplainArgs {
    /// Folder written by `saeplug record` (examples with token text: record with --model).
    #[arg(long)]
    pub(crate) record: PathBuf,
    /// The SAE the record was made with (to find non-activating examples).
    #[arg(long)]
    pub(crate) sae: PathBuf,
    /// The activation store the record was made from.
    #[arg(long)]
    pub(crate) store: PathBuf,
    /// The model's GGUF file, for the non-activating examples' token text
    /// (default: the record's model).
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// An OpenAI-compatible API base, e.g. http://127.0.0.1:8080/v1.
    #[arg(long, conflicts_with = "llm")]
    endpoint: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long, default_value = "default")]
    endpoint_model: String,
    /// Environment variable holding the endpoint's API key (sent as a Bearer token when set).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// A local GGUF chat model, served by llama.cpp's llama-server for the run.
    #[arg(long)]
    pub(crate) llm: Option<PathBuf>,
    /// The llama-server binary (default: built by scripts/build-llama.sh --server).
    #[arg(long)]
    llama_server: Option<PathBuf>,
    /// Context size of the local model.
    #[arg(long, default_value = "4096")]
    llm_ctx: u32,
    /// Threads of the local model (0: llama-server's default).
    #[arg(long, default_value = "0")]
    llm_threads: usize,
    /// Seconds to wait for one answer.
    #[arg(long, default_value = "300")]
    timeout: u64,
    /// Tokens the model may write per answer.
    #[arg(long, default_value = "400")]
    max_tokens: u32,
    /// Features to explain, comma separated (default: every feature that fired, up to --max-features).
    #[arg(long, value_delimiter = ',')]
    features: Vec<usize>,
    /// At most this many features (the densest first when --features is not given).
    #[arg(long, default_value = "50")]
    max_features: usize,
    /// Score this explanation instead of asking the model for one (with --features).
    #[arg(long)]
    explanation: Option<String>,
    /// Top examples shown to the explainer (the rest are held out for scoring).
    #[arg(long, default_value = "10")]
    explain_top: usize,
    /// Samples per activation interval shown to the explainer.
    #[arg(long, default_value = "2")]
    explain_per_interval: usize,
    /// Activating and non-activating examples scored per feature (each).
    #[arg(long, default_value = "20")]
    score_examples: usize,
    /// Examples per scoring prompt.
    #[arg(long, default_value = "5")]
    per_prompt: usize,
    /// Random store windows drawn as candidate non-activating examples.
    #[arg(long, default_value = "400")]
    negative_pool: usize,
    /// For small local models that ignore the answer formats: an explainer answer
    /// without an `[EXPLANATION]:` line gives its first line (marked in the
    /// output), and with --per-prompt 1 a scorer answer without a list is read as
    /// its first 0/1 or yes/no word.
    #[arg(long)]
    lenient: bool,
    /// Skip scoring (explanations only).
    #[arg(long)]
    no_score: bool,
    /// Seed of the shuffles and random windows.
    #[arg(long, default_value = "0")]
    seed: u64,
    /// Output JSON file.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    compute: ComputeArgs,
}

/// A recorded example as the explainer and scorers see it.
fn record_window(e: &Value, what: &str) -> Result<(u64, Window)> {
    let bad = |m: &str| Error::InvalidArgument(format!("{what}: {m}"));
    let text = e
        .get("text")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no token text (record with --model)"))?;
    let acts = e
        .get("acts")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no 'acts'"))?;
    if text.len() != acts.len() {
        return Err(bad("token text and activations differ in length"));
    }
    let row = e.get("row").and_then(Value::as_u64).unwrap_or(u64::MAX);
    Ok((
        row,
        Window {
            tokens: text
                .iter()
                .map(|t| t.as_str().unwrap_or("").to_string())
                .collect(),
            acts: acts
                .iter()
                .map(|a| a.as_f64().unwrap_or(0.0) as f32)
                .collect(),
        },
    ))
}

/// The explainer's examples and the held-out activating ones of a record FEATURE.
fn split_examples(
    f: &Value,
    explain_top: usize,
    per_interval: usize,
    n_score: usize,
) -> Result<(Vec<Window>, Vec<Window>)> {
    let id = f.get("feature").and_then(Value::as_u64).unwrap_or(0);
    let mut shown = Vec::new();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    let top = f
        .get("top")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (j, e) in top.iter().enumerate() {
        let (row, w) = record_window(e, &format!("feature {id} top example {j}"))?;
        if seen.insert(row) {
            if j < explain_top {
                &mut shown
            } else {
                &mut held
            }
            .push(w);
        }
    }
    if let Some(iv) = f.get("intervals").and_then(Value::as_array) {
        for (k, q) in iv.iter().enumerate() {
            let samples = q
                .get("samples")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, e) in samples.iter().enumerate() {
                let (row, w) = record_window(e, &format!("feature {id} interval {k} sample {j}"))?;
                if seen.insert(row) {
                    if j < per_interval {
                        &mut shown
                    } else {
                        &mut held
                    }
                    .push(w);
                }
            }
        }
    }
    held.truncate(n_score);
    Ok((shown, held))
}

/// Random windows of the store with every feature's value on each token: the pool
/// non-activating examples are drawn from.
struct Pool {
    windows: Vec<Window>,
    /// Per window, the features that fire on any of its tokens.
    firing: Vec<HashSet<u32>>,
}

fn negative_pool(
    a: &ExplainArgs,
    sae: &Sae,
    store: &ActivationStore,
    split: Split,
    vocab: &GgufVocab,
    context: usize,
    engine: &Engine,
) -> Result<Pool> {
    let n = store.n_rows(split) as u64;
    let mut rng = Rng::new(a.seed ^ 0x6e65_6761_7469_7665);
    let mut windows = Vec::new();
    let mut firing = Vec::new();
    let d = sae.d_in();
    for _ in 0..a.negative_pool.min(n as usize) {
        let row = rng.next_u64() % n;
        let w = window(store, split, row, context)?;
        let mut x = crate::zeros(w.tokens.len() * d)?;
        store.rows_into(split, w.first_row as usize, &mut x)?;
        let codes = engine.backend().encode_sparse(sae, &x)?;
        let mut fire = HashSet::new();
        for r in 0..codes.n_rows() {
            let (idx, val) = codes.row(r);
            for (&i, &v) in idx.iter().zip(val) {
                if v != 0.0 {
                    fire.insert(i);
                }
            }
        }
        windows.push(Window {
            tokens: w.tokens.iter().map(|&t| vocab.text(t)).collect(),
            acts: vec![0.0; w.tokens.len()],
        });
        firing.push(fire);
    }
    Ok(Pool { windows, firing })
}

/// `saeplug explain`.
pub(crate) fn run(a: ExplainArgs) -> Result<()> {
    let (index, recorded) =
        crate::dashboard::read_record(&a.record).map_err(Error::InvalidArgument)?;
    let sae = Sae::open(&a.sae)?;
    let store = ActivationStore::open(&a.store)?;
    if sae.d_in() != store.d_in() {
        return Err(Error::InvalidArgument(format!(
            "the SAE's d_in is {} but the store's rows have {} values",
            sae.d_in(),
            store.d_in()
        )));
    }
    if index.pointer("/sae/d_sae").and_then(Value::as_u64) != Some(sae.d_sae() as u64) {
        return Err(Error::InvalidArgument(format!(
            "the record was made with an SAE of {} features, --sae has {}",
            index.pointer("/sae/d_sae").unwrap_or(&Value::Null),
            sae.d_sae()
        )));
    }
    let split = match index.pointer("/store/split").and_then(Value::as_str) {
        Some("heldout") => Split::Heldout,
        _ => Split::Train,
    };
    let context = index
        .pointer("/options/context")
        .and_then(Value::as_u64)
        .unwrap_or(8) as usize;
    let model_path = a
        .model
        .clone()
        .or_else(|| {
            index
                .get("model")
                .and_then(Value::as_str)
                .map(PathBuf::from)
        })
        .ok_or_else(|| {
            Error::InvalidArgument(
                "no --model and the record names none: token text is needed".into(),
            )
        })?;
    let vocab = GgufVocab::read(&model_path)?;
    // Every recorded feature, by id.
    let feats: HashMap<u64, Value> = recorded
        .into_iter()
        .filter_map(|(_, f)| Some((f.get("feature")?.as_u64()?, f)))
        .collect();
    let chosen: Vec<u64> = if a.features.is_empty() {
        let mut fired: Vec<(f64, u64)> = feats
            .values()
            .filter(|f| f.get("count").and_then(Value::as_u64).unwrap_or(0) > 0)
            .map(|f| {
                (
                    f.get("density").and_then(Value::as_f64).unwrap_or(0.0),
                    f["feature"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        fired.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        fired
            .into_iter()
            .take(a.max_features)
            .map(|x| x.1)
            .collect()
    } else {
        let mut v = Vec::new();
        for &f in &a.features {
            if !feats.contains_key(&(f as u64)) {
                return Err(Error::InvalidArgument(format!(
                    "feature {f} is not in the record"
                )));
            }
            v.push(f as u64);
        }
        v.truncate(a.max_features.max(a.features.len()));
        v
    };
    if a.explanation.is_some() && a.features.is_empty() {
        return Err(Error::InvalidArgument(
            "--explanation scores one given text: name the features with --features".into(),
        ));
    }
    let engine = Engine::new(&a.compute)?;
    let pool = if a.no_score {
        Pool {
            windows: Vec::new(),
            firing: Vec::new(),
        }
    } else {
        negative_pool(&a, &sae, &store, split, &vocab, context, &engine)?
    };
    // The model: an endpoint, or llama-server on a local GGUF.
    let timeout = Duration::from_secs(a.timeout);
    let _server;
    let (base, model_name) = match (&a.endpoint, &a.llm) {
        (Some(url), _) => (url.clone(), a.endpoint_model.clone()),
        (None, Some(gguf)) => {
            let bin =
                find_llama_server(a.llama_server.as_deref()).map_err(Error::InvalidArgument)?;
            eprintln!("explain: starting {} on {}", bin.display(), gguf.display());
            let s = LocalServer::start(
                &bin,
                gguf,
                a.llm_ctx,
                a.llm_threads,
                Duration::from_secs(600),
            )
            .map_err(Error::InvalidArgument)?;
            let b = s.base();
            _server = s;
            (b, "local".to_string())
        }
        (None, None) if a.explanation.is_some() && a.no_score => (String::new(), String::new()),
        (None, None) => {
            return Err(Error::InvalidArgument(
                "no model: give --endpoint URL or --llm MODEL.gguf".into(),
            ));
        }
    };
    let api_key = std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty());
    let llm = Endpoint::new(&base, &model_name, api_key, a.max_tokens, timeout);
    let out = explain_features(&a, &llm, &feats, &chosen, &pool)?;
    let doc = json!({
        "format": "saeplug-explanations",
        "version": 1,
        "record": a.record.display().to_string(),
        "model": if a.llm.is_some() { json!(a.llm.as_ref().map(|p| p.display().to_string())) } else { json!(base) },
        "options": {"explain_top": a.explain_top, "explain_per_interval": a.explain_per_interval,
                    "score_examples": a.score_examples, "per_prompt": a.per_prompt, "seed": a.seed,
                    "score": "balanced accuracy (TPR + TNR) / 2, answers >= 0.5 count as activating"},
        "features": out,
    });
    let s =
        serde_json::to_string_pretty(&doc).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    saeplug::weights::write_atomic(&a.out, s.as_bytes())?;
    eprintln!("explain: {} features -> {}", chosen.len(), a.out.display());
    Ok(())
}

/// Explain and score each chosen feature; a failure is recorded on that feature
/// and the run goes on.
fn explain_features(
    a: &ExplainArgs,
    llm: &dyn ChatModel,
    feats: &HashMap<u64, Value>,
    chosen: &[u64],
    pool: &Pool,
) -> Result<Vec<Value>> {
    let bar = progress::bar(chosen.len() as u64, "explain", "features");
    let mut out = Vec::new();
    for &id in chosen {
        let f = &feats[&id];
        let max = f.get("max").and_then(Value::as_f64).unwrap_or(0.0) as f32;
        let mut entry = json!({"feature": id, "explanation": null, "detection": null,
                               "fuzzing": null, "error": null});
        if f.get("count").and_then(Value::as_u64).unwrap_or(0) == 0 {
            entry["error"] = json!("the feature never fired in the record: nothing to explain");
            out.push(entry);
            bar.inc(1);
            continue;
        }
        let (shown, held) =
            split_examples(f, a.explain_top, a.explain_per_interval, a.score_examples)?;
        let explanation = match &a.explanation {
            Some(t) => Ok(t.clone()),
            None => llm.chat(&explainer_messages(&shown, max)).and_then(|ans| {
                parse_explanation(&ans).or_else(|e| {
                    // A model that ignores the format: its first line, marked as such.
                    match fallback_explanation(&ans) {
                        Some(t) if a.lenient => {
                            entry["explanation_format"] =
                                json!("fallback: no [EXPLANATION]: line, the answer's first line");
                            Ok(t)
                        }
                        _ => Err(e),
                    }
                })
            }),
        };
        match explanation {
            Err(e) => entry["error"] = json!(format!("explainer: {e}")),
            Ok(text) => {
                entry["explanation"] = json!(text);
                if !a.no_score {
                    let mut rng =
                        Rng::new(a.seed.wrapping_add(id.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                    let mut cand: Vec<usize> = (0..pool.windows.len())
                        .filter(|&w| !pool.firing[w].contains(&(id as u32)))
                        .collect();
                    for i in (1..cand.len()).rev() {
                        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                        cand.swap(i, j);
                    }
                    let neg: Vec<Window> = cand
                        .iter()
                        .take(a.score_examples)
                        .map(|&w| pool.windows[w].clone())
                        .collect();
                    if neg.len() < a.score_examples || held.len() < a.score_examples {
                        entry["score_note"] = json!(format!(
                            "{} activating and {} non-activating examples (asked for {} each): \
                             a feature that fires in most windows of the {}-window pool has few \
                             non-activating ones; one with few recorded examples has few held-out ones",
                            held.len(),
                            neg.len(),
                            a.score_examples,
                            pool.windows.len()
                        ));
                    }
                    for (key, kind) in [
                        ("detection", ScoreKind::Detection),
                        ("fuzzing", ScoreKind::Fuzzing),
                    ] {
                        let s = score::score_with(
                            llm,
                            kind,
                            &text,
                            &held,
                            &neg,
                            max,
                            a.per_prompt,
                            a.seed ^ id,
                            a.lenient,
                        );
                        entry[key] = s.to_json();
                    }
                }
            }
        }
        out.push(entry);
        bar.inc(1);
    }
    progress::done(&bar);
    Ok(out)
}
