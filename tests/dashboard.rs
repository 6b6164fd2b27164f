//! The feature dashboard end to end, in a real browser: SmolLM2 activations
//! captured by saeplug-llama, the SAELens smollm2-l6-topk SAE (2,304 features)
//! recorded over them (`saeplug record`), logit effects (`saeplug-llama logits`),
//! explanations and scores from `saeplug explain` against a scripted stand-in
//! endpoint on localhost (the real HTTP path), then `saeplug dashboard`, opened
//! from file:// in headless chromium through chromium-driver and selenium
//! (tests/dashboard_browser.py): no console errors; the chosen feature's first top
//! example, its highlighted token and value equal a numpy re-encoding of that
//! store row (tests/py/encode_row.py, 1e-4); search finds the feature by id and by
//! its explanation; a feature that never fired says so. `saeplug explain` against
//! an endpoint that is not there reports the error per feature and finishes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::llama::{build, corpus, llama_dir};
use common::{repo_root, run_ok, saeplug, scratch};
use serde_json::{Value, json};

/// A stand-in OpenAI-compatible endpoint: explainer prompts get an explanation
/// naming a word derived from the prompt (unique per feature), scorer prompts get
/// a list saying 1 for every example. Serves until the test ends.
fn stand_in_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let user = v["messages"][1]["content"].as_str().unwrap_or("");
            let content = if user.starts_with("Feature explanation:") {
                let n = user.matches("\nExample ").count();
                format!("[{}]", vec!["1"; n].join(", "))
            } else {
                // FNV-1a of the prompt: a word unique to this feature's examples.
                let h = user.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100000001b3)
                });
                format!(
                    "Looking at these...\n[EXPLANATION]: text marked as zq{:08x}",
                    h as u32
                )
            };
            let out = json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
                .to_string();
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                out.len()
            );
        }
    });
    url
}

fn browser(site: &Path, feature: u64, shot: &Path) -> Value {
    let out = run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/dashboard_browser.py"))
            .arg(site)
            .arg(feature.to_string())
            .arg(shot),
    );
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn dashboard_in_a_real_browser() {
    let Some(dir) = llama_dir() else { return };
    let out = scratch("dashboard");
    let exe = build(&dir, &out);
    let model = dir.join("model.gguf");
    let sae = repo_root().join("../shared/fixtures/smollm2-l6-topk");
    let store = out.join("store");
    run_ok(
        Command::new(&exe)
            .args(["capture", "-m"])
            .arg(&model)
            .args([
                "--layer", "6", "--ctx", "64", "--tokens", "3000", "-t", "2", "--out",
            ])
            .arg(&store)
            .arg(corpus()),
    );
    let rec = out.join("rec");
    run_ok(
        saeplug()
            .args(["record", "--sae"])
            .arg(&sae)
            .arg("--store")
            .arg(&store)
            .arg("--model")
            .arg(&model)
            .args(["--top", "10", "--context", "6", "--out"])
            .arg(&rec),
    );
    // The feature the test looks at: the one that fired most among those with a
    // density under 5% (a denser one fires in every window, leaving no
    // non-activating examples to score with; lowest id on ties), and one that
    // never fired.
    let index = common::llama::json(&rec.join("index.json"));
    let feats = index["features"].as_array().unwrap();
    assert_eq!(feats.len(), 2304);
    let chosen = feats
        .iter()
        .filter(|f| f["density"].as_f64().unwrap() < 0.05)
        .max_by(|a, b| {
            a["count"]
                .as_u64()
                .cmp(&b["count"].as_u64())
                .then(b["feature"].as_u64().cmp(&a["feature"].as_u64()))
        })
        .unwrap()["feature"]
        .as_u64()
        .unwrap();
    let dead = feats
        .iter()
        .find(|f| f["count"] == 0)
        .expect("some feature never fired on 3000 tokens")["feature"]
        .as_u64()
        .unwrap();
    let other = feats
        .iter()
        .find(|f| f["count"].as_u64() > Some(0) && f["feature"] != chosen)
        .unwrap()["feature"]
        .as_u64()
        .unwrap();
    let chunk = index["chunk_size"].as_u64().unwrap();
    let page = common::llama::json(&rec.join(format!("features/chunk-{:05}.json", chosen / chunk)));
    let rf = &page["features"][(chosen % chunk) as usize];
    assert_eq!(rf["feature"], chosen);
    let top = &rf["top"][0];

    // Logit effects for the chosen feature and a few others.
    let logits = out.join("logits.json");
    run_ok(
        Command::new(&exe)
            .args(["logits", "--sae"])
            .arg(&sae)
            .arg("-m")
            .arg(&model)
            .args(["--features", &format!("0,1,{chosen},{dead}"), "--out"])
            .arg(&logits),
    );
    // Explanations and scores through the stand-in endpoint.
    let expl = out.join("explanations.json");
    let url = stand_in_endpoint();
    run_ok(
        saeplug()
            .args(["explain", "--record"])
            .arg(&rec)
            .arg("--sae")
            .arg(&sae)
            .arg("--store")
            .arg(&store)
            .args([
                "--endpoint",
                &url,
                "--features",
                &format!("{chosen},{dead},0"),
            ])
            .args(["--negative-pool", "200", "--score-examples", "8", "--out"])
            .arg(&expl),
    );
    let e = common::llama::json(&expl);
    let by_id = |id: u64| {
        e["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == id)
            .unwrap()
            .clone()
    };
    let ec = by_id(chosen);
    let text = ec["explanation"]
        .as_str()
        .expect("an explanation")
        .to_string();
    // The stand-in says 1 to everything: TPR 1, TNR 0, balanced accuracy 0.5.
    assert_eq!(ec["detection"]["balanced_accuracy"], 0.5, "{ec}");
    assert_eq!(ec["detection"]["tpr"], 1.0);
    assert_eq!(ec["fuzzing"]["tnr"], 0.0);
    assert!(
        by_id(dead)["error"]
            .as_str()
            .unwrap()
            .contains("never fired")
    );

    let site = out.join("site");
    run_ok(
        saeplug()
            .args(["dashboard", "--record"])
            .arg(&rec)
            .arg("--logits")
            .arg(&logits)
            .arg("--explanations")
            .arg(&expl)
            .arg("--out")
            .arg(&site),
    );
    let shot = out.join("dashboard.png");
    let b = browser(&site, chosen, &shot);
    assert_eq!(b["console"], json!([]), "console messages: {b}");
    assert_eq!(b["page_id"], chosen);
    assert_eq!(b["search_id"][0], chosen.to_string(), "{b}");
    assert_eq!(b["first_seq"], top["seq"]);
    assert_eq!(b["first_pos"], top["pos"]);
    let focus = top["focus"].as_u64().unwrap() as usize;
    assert_eq!(b["center_text"], top["text"][focus]);
    assert_eq!(b["center_highlighted"], true);
    // The value shown equals an independent numpy re-encoding of that store row.
    let reference: f64 = run_ok(
        Command::new("python3")
            .arg(repo_root().join("tests/py/encode_row.py"))
            .arg(&sae)
            .arg(&store)
            .arg("train")
            .arg(top["row"].to_string())
            .arg(chosen.to_string()),
    )
    .trim()
    .parse()
    .unwrap();
    let shown = b["center_value"].as_f64().unwrap();
    assert!(reference > 0.0);
    assert!(
        (shown - reference).abs() <= 1e-4 * reference.abs().max(1.0),
        "page shows {shown}, numpy gives {reference}"
    );
    assert_eq!(b["first_value"].as_f64().unwrap(), shown);
    assert_eq!(b["explanation"], text);
    let word = b["search_word"].as_str().unwrap();
    assert!(word.starts_with("zq"), "{b}");
    assert_eq!(b["search_word_ids"], json!([chosen.to_string()]), "{b}");
    assert_eq!(b["top_logit_tokens"].as_array().unwrap().len(), 10);
    std::fs::copy(&shot, out.join("kept.png")).ok();

    // A feature that never fired says so.
    let d = browser(&site, dead, &out.join("dead.png"));
    assert_eq!(d["console"], json!([]), "{d}");
    assert_eq!(d["never_fired_notice"], true, "{d}");
    assert_eq!(d["top_examples"], 0);

    // An endpoint that is not there: an error per feature, and the run finishes.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad = out.join("bad.json");
    run_ok(
        saeplug()
            .args(["explain", "--record"])
            .arg(&rec)
            .arg("--sae")
            .arg(&sae)
            .arg("--store")
            .arg(&store)
            .args(["--endpoint", &format!("http://127.0.0.1:{port}/v1")])
            .args([
                "--features",
                &format!("{chosen},{other}"),
                "--timeout",
                "5",
                "--out",
            ])
            .arg(&bad),
    );
    let bad = common::llama::json(&bad);
    assert_eq!(bad["features"].as_array().unwrap().len(), 2);
    for f in bad["features"].as_array().unwrap() {
        let err = f["error"].as_str().unwrap_or("");
        assert!(
            err.contains("explainer") && err.contains(&port.to_string()),
            "{f}"
        );
    }
}
