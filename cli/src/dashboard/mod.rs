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

use std::path::Path;

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
}
