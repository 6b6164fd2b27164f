//! The layering rules of DESIGN.md, checked on the source: no import cycle between
//! the crate's components, backends never reach up into the algorithm modules,
//! the two backends never import each other, and loaders never import `sae.rs`.
//!
//! A component is a file module, except that `backend/cpu/*`, `backend/wgpu/*`,
//! the other `backend/*` files, `format/*` and `weights/*` each count as one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a source file, e.g. `backend::cpu::encode`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

fn component(module: &[String]) -> String {
    match module {
        [b, sub, ..] if b == "backend" && (sub == "cpu" || sub == "wgpu") => {
            format!("backend::{sub}")
        }
        [top, ..] if top == "backend" || top == "format" || top == "weights" => top.clone(),
        // The trainer is one algorithm component; its tests may drive the CPU backend.
        [t, sub, ..] if t == "train" && sub != "tests" => t.clone(),
        [] => "lib".into(),
        parts => parts.join("::"),
    }
}

/// Code without comments and string literals (doc examples name other modules freely).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let mut in_str = false;
        let mut prev = ' ';
        for ch in line.chars() {
            if ch == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(ch);
            }
            prev = ch;
        }
        out.push('\n');
    }
    out
}

/// Components referenced by `file` through `crate::…` and `super::…` paths.
fn references(src: &Path, file: &Path, text: &str) -> BTreeSet<String> {
    let module = module_of(src, file);
    let mut refs = BTreeSet::new();
    let code = code_only(text);
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let path = ident(&code[i + "crate::".len()..]);
        refs.insert(component(&path));
        // `use crate::{a, b}` names several modules.
        if code[i + "crate::".len()..].starts_with('{') {
            let end = code[i..].find('}').map_or(code.len(), |e| i + e);
            for part in code[i + "crate::{".len()..end].split(',') {
                refs.insert(component(&ident(part.trim())));
            }
        }
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with("::") {
            continue; // super::super is counted from its first segment
        }
        // `super` of module a::b::c is a::b (file modules and mod.rs alike).
        let mut base = module.clone();
        let mut rest = &code[i..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        base.extend(ident(rest));
        refs.insert(component(&base));
    }
    refs.remove("lib");
    refs.remove("");
    refs
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        if f.file_name().is_some_and(|n| n == "lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        let from = component(&module_of(&src, &f));
        let refs = references(&src, &f, &text);
        let e = g.entry(from.clone()).or_default();
        e.extend(refs.into_iter().filter(|r| *r != from));
    }
    g
}

#[test]
fn components_form_no_cycle() {
    let g = graph();
    // Depth-first search for a back edge; report the cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(p) = stack.iter().position(|s| s == n) {
            let mut c = stack[p..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, &g, &mut stack, &mut done) {
            panic!("import cycle: {}\n(graph: {g:#?})", c.join(" -> "));
        }
    }
}

#[test]
fn backends_never_reach_up_or_sideways() {
    let g = graph();
    let algorithms = [
        "solve",
        "steer",
        "hook",
        "sweep",
        "cvec",
        "decompose",
        "record",
        "record::contexts",
        "train",
    ];
    for b in ["backend", "backend::cpu", "backend::wgpu"] {
        let refs = g.get(b).cloned().unwrap_or_default();
        for a in algorithms {
            assert!(!refs.contains(a), "{b} imports the algorithm module {a}");
        }
    }
    let cpu = g.get("backend::cpu").cloned().unwrap_or_default();
    let gpu = g.get("backend::wgpu").cloned().unwrap_or_default();
    assert!(
        !cpu.contains("backend::wgpu"),
        "the CPU backend imports the wgpu backend"
    );
    assert!(
        !gpu.contains("backend::cpu"),
        "the wgpu backend imports the CPU backend"
    );
    for (name, refs) in &g {
        if algorithms.contains(&name.as_str()) {
            for conc in ["backend::cpu", "backend::wgpu"] {
                assert!(
                    !refs.contains(conc),
                    "{name} names the concrete backend {conc}"
                );
            }
        }
    }
}

#[test]
fn loaders_never_import_the_sae() {
    let g = graph();
    for l in ["format", "weights", "store"] {
        let refs = g.get(l).cloned().unwrap_or_default();
        assert!(!refs.contains("sae"), "{l} imports sae.rs: {refs:?}");
    }
}

#[test]
fn the_checker_sees_edges() {
    // The graph is not trivially empty: known edges are found.
    let g = graph();
    assert!(g["backend::cpu"].contains("backend"), "{g:#?}");
    assert!(g["hook"].contains("backend"), "{g:#?}");
    assert!(g["train"].contains("backend"), "{g:#?}");
}
