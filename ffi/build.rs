//! The shared library's SONAME carries the ABI major version
//! (`libsaeplug.so.<SAEPLUG_ABI_VERSION_MAJOR>`), so a host linked against one
//! major never loads another (STYLE.md §2.10). The major is read from src/lib.rs,
//! the one place it is defined.

fn main() {
    println!("cargo:rerun-if-changed=src/lib.rs");
    let lib = std::fs::read_to_string("src/lib.rs").expect("read ffi/src/lib.rs");
    let major: u32 = lib
        .lines()
        .find_map(|l| l.strip_prefix("pub const SAEPLUG_ABI_VERSION_MAJOR: u32 = "))
        .and_then(|v| v.trim_end_matches(';').trim().parse().ok())
        .expect("ffi/src/lib.rs defines `pub const SAEPLUG_ABI_VERSION_MAJOR: u32 = N;`");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsaeplug.so.{major}");
    }
}
