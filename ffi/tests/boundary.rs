//! Every exported function runs inside the panic boundary: the body of each
//! `#[unsafe(no_mangle)]` fn in ffi/src is exactly one `ffi_boundary!` (status
//! returns) or `ffi_boundary_value!` (getters and frees) invocation, so a new
//! extern fn cannot slip by without one.

use std::path::PathBuf;

/// Index just past the brace that closes the one opening at `open`, skipping
/// string, char and comment contents.
fn matching_brace(src: &[u8], open: usize) -> usize {
    let (mut depth, mut i) = (0usize, open);
    while i < src.len() {
        match src[i] {
            b'"' => {
                i += 1;
                while src[i] != b'"' {
                    i += if src[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if src.get(i + 2) == Some(&b'\'') => i += 2,
            b'\'' if src.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while src[i] != b'\'' {
                    i += 1;
                }
            }
            b'/' if src.get(i + 1) == Some(&b'/') => {
                while src[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced braces from byte {open}");
}

/// Strip leading whitespace and `//` comment lines.
fn skip_trivia(s: &str) -> &str {
    let mut s = s.trim_start();
    while s.starts_with("//") {
        s = s[s.find('\n').map_or(s.len(), |n| n + 1)..].trim_start();
    }
    s
}

/// `(file, fn name, body)` of every `#[unsafe(no_mangle)]` fn under `dir`.
fn exported_fns(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        let mut from = 0;
        // The attribute on a line of its own (not a mention in a comment).
        while let Some(at) = src[from..].find("\n#[unsafe(no_mangle)]") {
            let at = from + at + 1;
            let sig = at + src[at..].find("fn ").expect("fn after no_mangle");
            let name: String = src[sig + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let open = sig + src[sig..].find('{').expect("body");
            let close = matching_brace(src.as_bytes(), open);
            out.push((file.clone(), name, src[open + 1..close - 1].to_string()));
            from = close;
        }
    }
    out
}

/// The exported fns whose body is not exactly one boundary invocation.
fn violations(fns: &[(String, String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, name, body) in fns {
        let b = skip_trivia(body);
        let Some(rest) = ["ffi_boundary! {", "ffi_boundary_value! {"]
            .iter()
            .find_map(|m| b.strip_prefix(m))
        else {
            bad.push(format!(
                "{file}: {name} does not start with ffi_boundary!/ffi_boundary_value!"
            ));
            continue;
        };
        // The invocation must be the whole body: nothing after its closing brace.
        let inner_open = b.len() - rest.len() - 1;
        let end = matching_brace(b.as_bytes(), inner_open);
        if !skip_trivia(&b[end..]).is_empty() {
            bad.push(format!("{file}: {name} has code outside its boundary"));
        }
    }
    bad
}

#[test]
fn every_exported_fn_body_is_one_boundary_invocation() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let fns = exported_fns(&src);
    let bad = violations(&fns);
    assert!(fns.len() >= 30, "found only {} exported fns", fns.len());
    assert!(
        bad.is_empty(),
        "outside the panic boundary:\n{}",
        bad.join("\n")
    );
    // The scan sees every function the header declares.
    let header = std::fs::read_to_string(src.join("../../include/saeplug.h")).unwrap();
    for (_, name, _) in &fns {
        assert!(
            header.contains(&format!(" {name}(")),
            "{name} not in the header"
        );
    }
}

#[test]
fn the_scan_catches_a_body_outside_the_boundary() {
    let dir = std::env::temp_dir().join(format!("saeplug-boundary-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("x.rs"),
        "//! #[unsafe(no_mangle)] in a comment\n#[unsafe(no_mangle)]\npub extern \"C\" fn good() -> u32 {\n    ffi_boundary_value! { 0; 1 }\n}\n\
         #[unsafe(no_mangle)]\npub extern \"C\" fn bad(p: *mut u8) {\n    if p.is_null() { return; }\n    \
         ffi_boundary_value! { (); let _ = \"}\"; }\n}\n",
    )
    .unwrap();
    let fns = exported_fns(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(fns.len(), 2);
    assert_eq!(violations(&fns[..1]), Vec::<String>::new());
    assert_eq!(violations(&fns[1..]).len(), 1, "{:?}", fns[1]);
    // Code after the invocation is caught too.
    let after = (
        "y.rs".into(),
        "after".into(),
        "ffi_boundary! { Ok(()) }\n    foo();".into(),
    );
    assert_eq!(violations(&[after]).len(), 1);
}
