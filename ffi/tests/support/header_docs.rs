//! The functions of include/saeplug.h with their doc comments (shared by
//! ffi/tests/header.rs and tests/c_abi.rs through `#[path]`).

/// `(function name, doc comment text)` for every function declared in `header`.
pub fn function_docs(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = header;
    while let Some(open) = rest.find("/**") {
        let Some(close) = rest[open..].find("*/") else {
            break;
        };
        let doc = &rest[open..open + close];
        let after = &rest[open + close + 2..];
        let decl_end = after.find([';', '{']).unwrap_or(after.len());
        let decl = &after[..decl_end];
        rest = &after[decl_end..];
        // A function declaration: `... saeplug_name(` before the first `;`.
        let Some(paren) = decl.find('(') else {
            continue;
        };
        let Some(name) = decl[..paren].split_whitespace().last() else {
            continue;
        };
        let name = name.trim_start_matches('*');
        if name.starts_with("saeplug_") && !decl.contains("typedef") {
            out.push((name.to_string(), doc.to_string()));
        }
    }
    out
}
