//! Every public item of the crate carries a runnable example in its rustdoc.
//!
//! The crate denies `missing_docs` and `unreachable_pub`, so every `pub` item in
//! `src/` is part of the public API and documented; this test scans the sources
//! and checks that each such item's doc block (and each method of a public
//! trait, and each public module's `//!` header) contains a code block. The
//! examples themselves run as doctests (`cargo test --doc`), so one that is
//! wrong fails there.
//!
//! Struct fields and enum variants are covered by their type's example.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `///` block directly above line `i` (attributes skipped).
fn doc_above(lines: &[&str], i: usize) -> String {
    let mut j = i;
    let mut doc = Vec::new();
    while j > 0 {
        j -= 1;
        let t = lines[j].trim_start();
        if t.starts_with("#[") || t.starts_with("#![") {
            continue;
        }
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d);
            continue;
        }
        break;
    }
    doc.reverse();
    doc.join("\n")
}

/// The `//!` header of a file.
fn module_doc(src: &str) -> String {
    src.lines()
        .map_while(|l| l.trim_start().strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

const ITEM: [&str; 8] = [
    "pub fn ",
    "pub unsafe fn ",
    "pub const fn ",
    "pub struct ",
    "pub enum ",
    "pub trait ",
    "pub const ",
    "pub type ",
];

#[test]
fn every_public_item_has_a_code_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut items = 0;
    let mut missing = Vec::new();
    // The core crate and the WGSL kernel crate.
    for src in [root.join("src"), root.join("../shaders/src")] {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        for f in &files {
            let text = std::fs::read_to_string(f).expect("read source");
            let rel = f.strip_prefix(&src).unwrap_or(f).display().to_string();
            // The reference oracle is a test-only module (feature `reference`).
            if rel == "reference.rs" {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let mut in_trait: Option<usize> = None;
            let mut in_tests = false;
            for (i, line) in lines.iter().enumerate() {
                let t = line.trim_start();
                let indent = line.len() - t.len();
                if t.starts_with("#[cfg(test)]") {
                    in_tests = true;
                }
                if in_tests {
                    continue;
                }
                if let Some(ti) = in_trait {
                    if indent == ti && t.starts_with('}') {
                        in_trait = None;
                    } else if indent == ti + 4 && t.starts_with("fn ") {
                        items += 1;
                        if !doc_above(&lines, i).contains("```") {
                            missing.push(format!("{rel}:{} trait method {}", i + 1, t));
                        }
                    }
                    continue;
                }
                if let Some(name) = t.strip_prefix("pub mod ") {
                    let name = name.trim_end_matches(';').trim_end_matches(" {").trim();
                    items += 1;
                    let dir = f.parent().unwrap_or(&src);
                    let dir = if f
                        .file_name()
                        .is_some_and(|n| n == "lib.rs" || n == "mod.rs")
                    {
                        dir.to_path_buf()
                    } else {
                        dir.join(f.file_stem().unwrap_or_default())
                    };
                    let doc = if t.ends_with(';') {
                        [
                            dir.join(format!("{name}.rs")),
                            dir.join(name).join("mod.rs"),
                        ]
                        .iter()
                        .find_map(|p| std::fs::read_to_string(p).ok())
                        .map(|s| module_doc(&s))
                        .unwrap_or_default()
                    } else {
                        doc_above(&lines, i)
                    };
                    if !doc.contains("```") {
                        missing.push(format!("{rel}:{} module {name}", i + 1));
                    }
                    continue;
                }
                if ITEM.iter().any(|p| t.starts_with(p)) {
                    items += 1;
                    if t.starts_with("pub trait ") {
                        in_trait = Some(indent);
                    }
                    if !doc_above(&lines, i).contains("```") {
                        let head: String = t.chars().take(60).collect();
                        missing.push(format!("{rel}:{} {head}", i + 1));
                    }
                }
            }
        }
    }
    assert!(items > 150, "scanned only {items} public items");
    assert!(
        missing.is_empty(),
        "{} of {items} public items have no example:\n{}",
        missing.len(),
        missing.join("\n")
    );
}
