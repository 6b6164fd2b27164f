//! include/saeplug.h must be exactly what cbindgen generates from this crate.
//! Regenerate with: SAEPLUG_BLESS=1 cargo test -p saeplug-ffi --test header

use std::path::PathBuf;

#[path = "support/header_docs.rs"]
mod header_docs;

#[test]
fn header_has_not_drifted() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // The C enums come from the same `u32_enum!` lists as their Rust twins and
    // `TryFrom<u32>`; cbindgen does not expand macros, so they are handed over here.
    config.after_includes = Some(format!("\n{}", saeplug_ffi::header_enums()));
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/saeplug.h");
    if std::env::var_os("SAEPLUG_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/saeplug.h");
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "include/saeplug.h is out of date with ffi/src. Regenerate it with\n    \
         SAEPLUG_BLESS=1 cargo test -p saeplug-ffi --test header\nand commit the result."
    );
}

#[test]
fn version_macros_match_the_library() {
    let h = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/saeplug.h"),
    )
    .expect("header");
    assert!(h.contains(&format!(
        "#define SAEPLUG_ABI_VERSION_MAJOR {}",
        saeplug_ffi::SAEPLUG_ABI_VERSION_MAJOR
    )));
    assert!(h.contains(&format!(
        "#define SAEPLUG_ABI_VERSION_MINOR {}",
        saeplug_ffi::SAEPLUG_ABI_VERSION_MINOR
    )));
}

/// Every function in the header documents what it returns, who owns what
/// (memory and lifetimes) and from which threads it may be called.
#[test]
fn every_function_documents_returns_memory_and_thread_safety() {
    let h = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/saeplug.h"),
    )
    .expect("header");
    let functions = header_docs::function_docs(&h);
    let mut missing = Vec::new();
    for (name, doc) in &functions {
        for word in ["Returns", "Memory", "Thread safety"] {
            if !doc.contains(word) {
                missing.push(format!("{name}: no '{word}'"));
            }
        }
    }
    assert!(
        functions.len() >= 30,
        "found only {} functions in the header",
        functions.len()
    );
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
}
