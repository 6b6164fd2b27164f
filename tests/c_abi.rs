//! Builds the C consumer in tests/c against include/saeplug.h, links the static and
//! the shared library, and runs it plain, under ASan+UBSan, and under valgrind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use saeplug::weights::SafeTensors;

/// Build saeplug-ffi's static and shared libraries with the profile of this test.
fn ffi_libs() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let release = !cfg!(debug_assertions);
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args(["build", "-q", "-p", "saeplug-ffi"]);
    if release {
        c.arg("--release");
    }
    run_ok(&mut c);
    let dir = target.join(if release { "release" } else { "debug" });
    for f in ["libsaeplug_ffi.a", "libsaeplug_ffi.so"] {
        assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
    }
    dir
}

fn write_bin(path: &Path, v: &[f32]) {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, b).unwrap();
}

/// (sae dir, x, feats, recon, n) for a fixture case, dumped as raw f32.
fn fixture_args(case: &str, out: &Path) -> Vec<String> {
    let dir = saelens_fixtures().join(case);
    let st = SafeTensors::open(&dir.join("io.safetensors")).unwrap();
    let n = st.tensors["x"].shape[0];
    let mut args = vec![dir.display().to_string()];
    for name in ["x", "feature_acts", "recon"] {
        let p = out.join(format!("{case}-{name}.bin"));
        write_bin(&p, st.tensor(name).unwrap().as_slice());
        args.push(p.display().to_string());
    }
    args.push(n.to_string());
    args
}

const WARN: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];

fn compile(out: &Path, name: &str, extra: &[&str], libs: &[String]) -> PathBuf {
    let exe = out.join(name);
    let mut c = Command::new("gcc");
    c.args(WARN)
        .arg(format!("-I{}", repo_root().join("include").display()))
        .arg(repo_root().join("tests/c/basic.c"))
        .args(extra)
        .args(libs)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe);
    run_ok(&mut c);
    exe
}

#[test]
fn c_consumer_static_shared_sanitizers_valgrind() {
    let libdir = ffi_libs();
    let out = scratch("c_abi");
    let a = libdir.join("libsaeplug_ffi.a").display().to_string();
    let so_flags = vec![
        format!("-L{}", libdir.display()),
        "-lsaeplug_ffi".to_string(),
        format!("-Wl,-rpath,{}", libdir.display()),
    ];
    let stat = compile(&out, "basic_static", &[], std::slice::from_ref(&a));
    let shared = compile(&out, "basic_shared", &[], &so_flags);
    let asan = compile(
        &out,
        "basic_asan",
        &[
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ],
        std::slice::from_ref(&a),
    );
    for case in ["standard", "topk", "gated", "jumprelu"] {
        let args = fixture_args(case, &out);
        for exe in [&stat, &shared, &asan] {
            let o = run_ok(
                Command::new(exe)
                    .args(&args)
                    .env("ASAN_OPTIONS", "detect_leaks=1"),
            );
            assert!(
                o.contains("all checks passed"),
                "{case} {}: {o}",
                exe.display()
            );
        }
    }
    // The same program on a GPU context (lavapipe in CI).
    if gpu_or_fail(saeplug::WgpuOptions::default()).is_some() {
        for case in ["standard", "topk", "gated", "jumprelu"] {
            let mut args = fixture_args(case, &out);
            args.push("gpu".into());
            let o = run_ok(Command::new(&stat).args(&args));
            assert!(o.contains("(gpu): all checks passed"), "{case} gpu: {o}");
        }
    }
    // valgrind on the shared-library build: no invalid reads/writes, no definite leaks.
    let args = fixture_args("standard", &out);
    let have_valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if !have_valgrind && std::env::var_os("SAEPLUG_ALLOW_NO_VALGRIND").is_some() {
        eprintln!("valgrind not installed; SAEPLUG_ALLOW_NO_VALGRIND set, skipping that part");
        return;
    }
    assert!(
        have_valgrind,
        "valgrind is required (apt-get install valgrind), or set SAEPLUG_ALLOW_NO_VALGRIND=1"
    );
    let o = run_ok(
        Command::new("valgrind")
            .args([
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--quiet",
            ])
            .arg(&shared)
            .args(&args),
    );
    assert!(o.contains("all checks passed"), "{o}");
}

#[test]
fn cpp_wrapper_consumer_with_sanitizers() {
    let libdir = ffi_libs();
    let out = scratch("cpp");
    let exe = out.join("basic_cpp");
    run_ok(
        Command::new("g++")
            .args([
                "-std=c++17",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-g",
            ])
            .args([
                "-fsanitize=address,undefined",
                "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=all",
            ])
            .arg(format!("-I{}", repo_root().join("include").display()))
            .arg(format!("-I{}", repo_root().join("bindings/cxx").display()))
            .arg(repo_root().join("tests/cpp/basic.cc"))
            .arg(libdir.join("libsaeplug_ffi.a"))
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&exe),
    );
    for case in ["standard", "gated"] {
        let o = run_ok(Command::new(&exe).args(fixture_args(case, &out)));
        assert!(o.contains("c++ consumer: all checks passed"), "{case}: {o}");
    }
}

#[test]
fn cxx_bridge_consumer_with_sanitizers() {
    let release = !cfg!(debug_assertions);
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args(["build", "-q", "-p", "saeplug-cxx"]);
    if release {
        c.arg("--release");
    }
    run_ok(&mut c);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let lib = target
        .join(if release { "release" } else { "debug" })
        .join("libsaeplug_cxx.a");
    let out = scratch("cxx");
    let exe = out.join("bridge");
    run_ok(
        Command::new("g++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-g"])
            .args([
                "-fsanitize=address,undefined",
                "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=all",
            ])
            .arg(format!("-I{}", target.join("cxxbridge").display()))
            .arg(repo_root().join("tests/cpp/bridge.cc"))
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&exe),
    );
    for case in ["standard", "topk"] {
        let o = run_ok(Command::new(&exe).args(fixture_args(case, &out)));
        assert!(
            o.contains("cxx bridge consumer: all checks passed"),
            "{case}: {o}"
        );
    }
}

#[test]
fn header_compiles_as_c99_and_cpp17_and_twice() {
    let out = scratch("header");
    let inc = format!("-I{}", repo_root().join("include").display());
    let src = out.join("twice.c");
    std::fs::write(
        &src,
        "#include \"saeplug.h\"\n#include \"saeplug.h\"\nint main(void) { return (int)SAEPLUG_STATUS_OK; }\n",
    )
    .unwrap();
    run_ok(
        Command::new("gcc")
            .args(WARN)
            .arg(&inc)
            .args(["-fsyntax-only"])
            .arg(&src),
    );
    let cpp = out.join("twice.cc");
    std::fs::copy(&src, &cpp).unwrap();
    run_ok(
        Command::new("g++")
            .args([
                "-std=c++17",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
            ])
            .arg(&inc)
            .arg(&cpp),
    );
}
