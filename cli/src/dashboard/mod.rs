//! `saeplug dashboard`: a static feature dashboard (HTML, JS, CSS and data) that
//! opens from file:// with no network. Browsers refuse fetch() from file:// pages,
//! so the data are script files: `data/index.js` (one summary row per feature)
//! and `data/chunk-NNNNN.js` (the full pages of `chunk_size` features each),
//! loaded on demand when a feature is opened. Corpus text is inserted with
//! `textContent` only.
//!
//! A feature page (the JSON each chunk holds, one object per feature):
//! `{id, density, max_act, fired, rows, hist: {lo, hi, counts}, top: [Example],
//! quantiles: [{lo, hi, count, examples: [Example]}], logits: {top: [[token,
//! value]], bottom, hist} | null, explanation: {text, detection, fuzzing, error} |
//! null}` with `Example = {act, seq, pos, center, tokens: [text], acts: [value]}`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Site-wide settings.
pub struct Site {
    /// The line under the heading (SAE, model, layer, corpus).
    pub title: String,
    /// How the logit effects were computed (shown under each logit table).
    pub logit_note: Option<String>,
    /// Features per data chunk.
    pub chunk_size: usize,
    /// The SAE's width (the pages may cover only some of its features).
    pub d_sae: usize,
}

/// The summary row of the feature list: `[id, density, max_act, explanation,
/// score]`, score being the mean of the detection and fuzzing scores present.
fn summary(f: &Value) -> Value {
    let e = f.get("explanation").filter(|e| !e.is_null());
    let text = e.and_then(|e| e.get("text")).and_then(Value::as_str);
    let scores: Vec<f64> = ["detection", "fuzzing"]
        .iter()
        .filter_map(|k| e.and_then(|e| e.get(*k)).and_then(Value::as_f64))
        .collect();
    let score = if scores.is_empty() {
        Value::Null
    } else {
        json!(scores.iter().sum::<f64>() / scores.len() as f64)
    };
    json!([
        f["id"],
        f.get("density").cloned().unwrap_or(json!(0.0)),
        f.get("max_act").cloned().unwrap_or(json!(0.0)),
        text,
        score
    ])
}

/// Write the site to `dir` (created; existing files of the same names are
/// replaced). `features` are the pages, ids ascending; page `i` goes to chunk
/// `i / chunk_size` (the index lists each page in that order).
pub fn write_site(dir: &Path, site: &Site, features: &[Value]) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| io(&data, e))?;
    let mut last = None;
    for (i, f) in features.iter().enumerate() {
        let id = f.get("id").and_then(Value::as_u64);
        if id.is_none() || (last.is_some() && id <= last) {
            return Err(format!(
                "feature page {i} has id {} (ids must ascend)",
                f["id"]
            ));
        }
        last = id;
    }
    let chunk = site.chunk_size.max(1);
    let mut files = Vec::new();
    for (n, c) in features.chunks(chunk).enumerate() {
        let name = format!("chunk-{n:05}.js");
        let body = format!(
            "saeplugChunk({n}, {});\n",
            serde_json::to_string(c).map_err(|e| e.to_string())?
        );
        let p = data.join(&name);
        std::fs::write(&p, body).map_err(|e| io(&p, e))?;
        files.push(name);
    }
    let index = json!({
        "title": site.title,
        "n_features": features.len(),
        "chunk_size": chunk,
        "chunk_files": files,
        "logit_note": site.logit_note,
        "d_sae": site.d_sae,
        "features": features.iter().map(summary).collect::<Vec<_>>(),
    });
    let p = data.join("index.js");
    std::fs::write(&p, format!("saeplugIndex({index});\n")).map_err(|e| io(&p, e))?;
    for (name, body) in [
        ("index.html", INDEX_HTML),
        ("app.js", APP_JS),
        ("style.css", STYLE_CSS),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

/// `saeplug dashboard` options.
#[derive(clap::Args, Debug)]
pub struct DashboardArgs {
    /// Folder written by `saeplug record` (index.json + features/chunk-*.json).
    #[arg(long)]
    pub record: PathBuf,
    /// Logit effects written by `saeplug-llama logits` (optional).
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Explanations and scores written by `saeplug explain` (optional).
    #[arg(long)]
    pub explanations: Option<PathBuf>,
    /// Output folder (index.html, app.js, style.css, data/).
    #[arg(long)]
    pub out: PathBuf,
    /// Features per data chunk (the unit the page loads on demand).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub chunk: u64,
}

fn read_json(p: &Path) -> Result<Value, String> {
    let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&s).map_err(|e| format!("{}: not JSON: {e}", p.display()))
}

fn field<'a>(v: &'a Value, k: &str, what: &str) -> Result<&'a Value, String> {
    v.get(k)
        .filter(|x| !x.is_null())
        .ok_or_else(|| format!("{what}: no '{k}' field"))
}

/// A record EXAMPLE (docs/DASHBOARD.md) as the page shows it: token texts (ids
/// when the record had no vocabulary), the feature's values, the focus token.
fn example_page(e: &Value, what: &str) -> Result<Value, String> {
    let acts = field(e, "acts", what)?
        .as_array()
        .ok_or_else(|| format!("{what}: 'acts' is not a list"))?;
    let tokens: Vec<Value> = match e.get("text").and_then(Value::as_array) {
        Some(t) => t.clone(),
        None => field(e, "tokens", what)?
            .as_array()
            .ok_or_else(|| format!("{what}: 'tokens' is not a list"))?
            .iter()
            .map(|id| json!(format!("[{id}]")))
            .collect(),
    };
    if tokens.len() != acts.len() {
        return Err(format!(
            "{what}: {} tokens but {} activations",
            tokens.len(),
            acts.len()
        ));
    }
    let focus = field(e, "focus", what)?.as_u64().unwrap_or(u64::MAX);
    if focus as usize >= tokens.len() {
        return Err(format!("{what}: focus {focus} is outside its window"));
    }
    Ok(json!({
        "act": field(e, "value", what)?,
        "seq": e.get("seq").cloned().unwrap_or(Value::Null),
        "pos": e.get("pos").cloned().unwrap_or(Value::Null),
        "row": e.get("row").cloned().unwrap_or(Value::Null),
        "center": focus,
        "tokens": tokens,
        "acts": acts,
    }))
}

fn examples(list: Option<&Value>, what: &str) -> Result<Vec<Value>, String> {
    list.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .enumerate()
                .map(|(j, e)| example_page(e, &format!("{what} example {j}")))
                .collect()
        })
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// One feature page from a record FEATURE, its logit effects and explanation.
fn feature_page(
    f: &Value,
    rows: u64,
    logits: Option<&Value>,
    expl: Option<&Value>,
) -> Result<Value, String> {
    let id = field(f, "feature", "record feature")?
        .as_u64()
        .ok_or("record feature: 'feature' is not an index")?;
    let what = format!("record feature {id}");
    let count = f.get("count").and_then(Value::as_u64).unwrap_or(0);
    let fired = f.get("fired").and_then(Value::as_bool).unwrap_or(count > 0) && count > 0;
    let quantiles: Vec<Value> = match f.get("intervals").and_then(Value::as_array) {
        Some(iv) => iv
            .iter()
            .enumerate()
            .map(|(j, q)| {
                Ok(json!({
                    "lo": q.get("lo").cloned().unwrap_or(Value::Null),
                    "hi": q.get("hi").cloned().unwrap_or(Value::Null),
                    "count": q.get("count").cloned().unwrap_or(Value::Null),
                    "examples": examples(q.get("samples"), &format!("{what} interval {j}"))?,
                }))
            })
            .collect::<Result<_, String>>()?,
        None => Vec::new(),
    };
    let logits = logits.map(|l| {
        let pairs = |k: &str| -> Vec<Value> {
            l.get(k)
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .map(|t| {
                            let text = t
                                .get("text")
                                .cloned()
                                .unwrap_or_else(|| json!(format!("[{}]", t["token"])));
                            json!([text, t.get("logit").cloned().unwrap_or(Value::Null)])
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        json!({"top": pairs("top"), "bottom": pairs("bottom"),
               "hist": l.get("histogram").cloned().unwrap_or(Value::Null)})
    });
    let explanation = expl.map(|e| {
        let score = |k: &str| e.get(k).and_then(|s| s.get("balanced_accuracy")).cloned();
        json!({
            "text": e.get("explanation").cloned().unwrap_or(Value::Null),
            "detection": score("detection").unwrap_or(Value::Null),
            "fuzzing": score("fuzzing").unwrap_or(Value::Null),
            "error": e.get("error").cloned().unwrap_or(Value::Null),
        })
    });
    Ok(json!({
        "id": id,
        "density": f.get("density").cloned().unwrap_or(json!(0.0)),
        "max_act": f.get("max").cloned().unwrap_or(json!(0.0)),
        "mean_act": f.get("mean").cloned().unwrap_or(Value::Null),
        "fired": if fired { count } else { 0 },
        "rows": rows,
        "hist": if fired { f.get("histogram").cloned().unwrap_or(Value::Null) } else { Value::Null },
        "top": if fired { examples(f.get("top"), &format!("{what} top"))? } else { Vec::new() },
        "quantiles": if fired { quantiles } else { Vec::new() },
        "logits": logits,
        "explanation": explanation,
    }))
}

/// Per-feature entries of a `{"features": [{"feature": i, ...}]}` file, by id.
fn by_feature(v: &Value, what: &str) -> Result<std::collections::HashMap<u64, Value>, String> {
    let list = field(v, "features", what)?
        .as_array()
        .ok_or_else(|| format!("{what}: 'features' is not a list"))?;
    list.iter()
        .map(|e| {
            let id = e
                .get("feature")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{what}: an entry has no 'feature' index"))?;
            Ok((id, e.clone()))
        })
        .collect()
}

/// A `saeplug record` folder (docs/DASHBOARD.md): its `index.json` (format
/// checked) and every FEATURE of its chunks in order, each with the chunk file it
/// came from. Chunk paths that leave the folder are refused.
pub(crate) fn read_record(dir: &Path) -> Result<(Value, Vec<(String, Value)>), String> {
    let index = read_json(&dir.join("index.json"))?;
    if index.get("format").and_then(Value::as_str) != Some("saeplug-features") {
        return Err(format!(
            "{}: not a saeplug record index (format 'saeplug-features')",
            dir.join("index.json").display()
        ));
    }
    let chunks = field(&index, "chunks", "record index")?
        .as_array()
        .ok_or("record index: 'chunks' is not a list")?;
    let mut features = Vec::new();
    for c in chunks {
        let name = c
            .as_str()
            .ok_or("record index: a chunk name is not a string")?;
        if name.contains("..") || name.starts_with('/') {
            return Err(format!(
                "record index: chunk path {name:?} leaves the folder"
            ));
        }
        let chunk = read_json(&dir.join(name))?;
        for f in field(&chunk, "features", name)?
            .as_array()
            .ok_or_else(|| format!("{name}: 'features' is not a list"))?
        {
            features.push((name.to_string(), f.clone()));
        }
    }
    Ok((index, features))
}

/// `saeplug dashboard`: build the site from a record folder and the optional
/// logit and explanation files.
pub fn run(a: DashboardArgs) -> Result<(), String> {
    let (index, features) = read_record(&a.record)?;
    let d_sae = index
        .pointer("/sae/d_sae")
        .and_then(Value::as_u64)
        .ok_or("record index: no sae.d_sae")?;
    let rows = index
        .pointer("/store/rows")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let logits = match &a.logits {
        Some(p) => {
            let v = read_json(p)?;
            if v.get("format").and_then(Value::as_str) != Some("saeplug-logits") {
                return Err(format!("{}: not a saeplug-llama logits file", p.display()));
            }
            Some(v)
        }
        None => None,
    };
    let logit_map = match &logits {
        Some(v) => by_feature(v, "logits")?,
        None => Default::default(),
    };
    let expl_map = match &a.explanations {
        Some(p) => by_feature(&read_json(p)?, &p.display().to_string())?,
        None => Default::default(),
    };
    let mut pages = Vec::new();
    for (name, f) in &features {
        let id = f.get("feature").and_then(Value::as_u64).unwrap_or(u64::MAX);
        if id >= d_sae {
            return Err(format!("{name}: feature {id} is outside the SAE's {d_sae}"));
        }
        pages.push(feature_page(
            f,
            rows,
            logit_map.get(&id),
            expl_map.get(&id),
        )?);
    }
    let sae = index
        .pointer("/sae/path")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let hook = index
        .pointer("/store/hook")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let model = index
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("no model");
    let title = format!("SAE {sae} ({d_sae} features) · {model} · {hook} · {rows} recorded tokens");
    let logit_note = logits.as_ref().map(|l| {
        let u = l.get("unembedding").cloned().unwrap_or(Value::Null);
        format!(
            "Logit effect of feature i on token t: W_dec[i] · diag(g) · W_U[t], W_U = {} ({}{}) dequantised by ggml, g = the final norm's gain{}; the norm's 1/rms scaling is left out.",
            u.get("tensor").and_then(Value::as_str).unwrap_or("?"),
            u.get("type").and_then(Value::as_str).unwrap_or("?"),
            if u.get("tied").and_then(Value::as_bool) == Some(true) { ", tied to the token embedding" } else { "" },
            if u.get("norm_gain_folded").and_then(Value::as_bool) == Some(true) { " folded in" } else { " (not folded: absent)" },
        )
    });
    let site = Site {
        title,
        logit_note,
        chunk_size: a.chunk as usize,
        d_sae: d_sae as usize,
    };
    write_site(&a.out, &site, &pages)?;
    eprintln!(
        "dashboard: {} feature pages in {} (open {}/index.html)",
        pages.len(),
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(i: usize, expl: Option<(&str, f64, f64)>) -> Value {
        json!({
            "id": i, "density": 0.01 * i as f64, "max_act": i as f64, "fired": i, "rows": 100,
            "hist": null, "top": [], "quantiles": [], "logits": null,
            "explanation": expl.map(|(t, d, z)| json!({"text": t, "detection": d, "fuzzing": z})),
        })
    }

    fn strip<'a>(s: &'a str, head: &str) -> &'a str {
        s.strip_prefix(head).unwrap().strip_suffix(");\n").unwrap()
    }

    #[test]
    fn chunks_and_index_are_script_wrapped_json() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Vec<Value> = (0..5)
            .map(|i| {
                page(
                    i,
                    (i == 3).then_some(("digits </script> \u{2028}", 0.8, 0.6)),
                )
            })
            .collect();
        let site = Site {
            title: "t".into(),
            logit_note: Some("gain folded".into()),
            chunk_size: 2,
            d_sae: 5,
        };
        write_site(dir.path(), &site, &fs).unwrap();
        let idx = std::fs::read_to_string(dir.path().join("data/index.js")).unwrap();
        let v: Value = serde_json::from_str(strip(&idx, "saeplugIndex(")).unwrap();
        assert_eq!(v["n_features"], 5);
        assert_eq!(
            v["chunk_files"],
            json!(["chunk-00000.js", "chunk-00001.js", "chunk-00002.js"])
        );
        assert_eq!(v["features"][3][3], "digits </script> \u{2028}");
        assert!((v["features"][3][4].as_f64().unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(v["features"][2][4], Value::Null);
        let c1 = std::fs::read_to_string(dir.path().join("data/chunk-00001.js")).unwrap();
        let c: Value = serde_json::from_str(strip(&c1, "saeplugChunk(1, ")).unwrap();
        assert_eq!(c[1]["id"], 3);
        assert!(dir.path().join("index.html").is_file() && dir.path().join("app.js").is_file());
        // Pages out of order are refused.
        let bad = vec![page(2, None), page(1, None)];
        assert!(write_site(dir.path(), &site, &bad).is_err());
        // A subset of the features (ids 1 and 4 of 5) is fine.
        write_site(dir.path(), &site, &[page(1, None), page(4, None)]).unwrap();
    }
    #[test]
    fn record_features_become_pages() {
        let ex = json!({"row": 7, "seq": 1, "pos": 3, "value": 2.5, "focus": 1,
                        "tokens": [10, 11, 12], "acts": [0.0, 2.5, 0.5]});
        let f = json!({"feature": 4, "fired": true, "count": 3, "density": 0.3, "mean": 1.0,
                       "max": 2.5, "histogram": {"lo": 0.0, "hi": 2.5, "counts": [1, 2]},
                       "top": [ex], "intervals": [{"lo": 0.0, "hi": 2.5, "count": 3, "samples": [ex]}]});
        let logits = json!({"feature": 4, "top": [{"token": 5, "text": " a", "logit": 1.5}],
                            "bottom": [{"token": 6, "logit": -1.0}], "histogram": null});
        let expl = json!({"feature": 4, "explanation": "x", "detection": {"balanced_accuracy": 0.75},
                          "fuzzing": {"balanced_accuracy": null}, "error": null});
        let p = feature_page(&f, 10, Some(&logits), Some(&expl)).unwrap();
        assert_eq!(p["id"], 4);
        assert_eq!(p["fired"], 3);
        assert_eq!(p["rows"], 10);
        // No vocabulary: token ids shown in brackets.
        assert_eq!(p["top"][0]["tokens"], json!(["[10]", "[11]", "[12]"]));
        assert_eq!(p["top"][0]["center"], 1);
        assert_eq!(p["top"][0]["act"], 2.5);
        assert_eq!(p["quantiles"][0]["examples"][0]["row"], 7);
        assert_eq!(p["logits"]["top"], json!([[" a", 1.5]]));
        assert_eq!(p["logits"]["bottom"], json!([["[6]", -1.0]]));
        assert_eq!(p["explanation"]["detection"], 0.75);
        assert_eq!(summary(&p)[4], 0.75);
        // Never fired: no examples or histogram, whatever the record holds.
        let dead = json!({"feature": 2, "fired": false, "count": 0, "density": 0.0, "max": 0.0,
                          "histogram": {"lo": 0.0, "hi": 0.0, "counts": [0]}, "top": [], "intervals": []});
        let p = feature_page(&dead, 10, None, None).unwrap();
        assert_eq!(
            (p["fired"].clone(), p["hist"].clone()),
            (json!(0), Value::Null)
        );
        // A window whose focus lies outside it, or whose lengths disagree, is refused.
        let mut bad = f.clone();
        bad["top"][0]["focus"] = json!(3);
        assert!(
            feature_page(&bad, 10, None, None)
                .unwrap_err()
                .contains("focus 3")
        );
        let mut bad = f.clone();
        bad["top"][0]["acts"] = json!([1.0]);
        assert!(
            feature_page(&bad, 10, None, None)
                .unwrap_err()
                .contains("3 tokens but 1")
        );
    }
}
