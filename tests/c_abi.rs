//! Builds the C consumer in tests/c against include/saeplug.h, links the static and
//! the shared library, and runs it plain, under ASan+UBSan, and under valgrind.

mod common;
#[path = "../ffi/tests/support/header_docs.rs"]
mod header_docs;

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
    // The shared library's SONAME carries the ABI major: programs linked against
    // it load `libsaeplug.so.<major>`, which an install provides as the file
    // itself; here it is a symlink beside the build output.
    let header = std::fs::read_to_string(repo_root().join("include/saeplug.h")).unwrap();
    let major = header
        .lines()
        .find_map(|l| l.strip_prefix("#define SAEPLUG_ABI_VERSION_MAJOR "))
        .expect("the header defines SAEPLUG_ABI_VERSION_MAJOR");
    let soname = format!("libsaeplug.so.{major}");
    let dynamic = run_ok(
        Command::new("readelf")
            .arg("-d")
            .arg(dir.join("libsaeplug_ffi.so")),
    );
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "SONAME is not {soname}:\n{dynamic}"
    );
    let link = dir.join(&soname);
    if std::fs::read_link(&link).is_err() {
        let _ = std::fs::remove_file(&link);
        // Concurrent tests may race to create it: either creator wins.
        let _ = std::os::unix::fs::symlink("libsaeplug_ffi.so", &link);
    }
    assert!(link.is_file(), "{} missing", link.display());
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
const WARN_CXX: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"];

fn compile(out: &Path, name: &str, extra: &[&str], libs: &[String]) -> PathBuf {
    compile_c(out, name, "basic.c", extra, libs)
}

const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];

/// Compile tests/c/`src` against include/saeplug.h and `libs`.
fn compile_c(out: &Path, name: &str, src: &str, extra: &[&str], libs: &[String]) -> PathBuf {
    let exe = out.join(name);
    let mut c = Command::new("gcc");
    c.args(WARN)
        .arg(format!("-I{}", repo_root().join("include").display()))
        .arg(repo_root().join("tests/c").join(src))
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

/// tests/c/hardening.c on a CPU context under ASan/UBSan, and on a GPU context
/// (lavapipe in CI): enum codes and bounds refused with messages naming the
/// parameter, overlapping buffers refused, outputs and a hooked `x` untouched by
/// failing calls, and a GPU context's solve equal to a CPU context's.
#[test]
fn c_hardening_overlap_untouched_outputs_and_gpu_solve() {
    let libdir = ffi_libs();
    let out = scratch("c_hardening");
    let a = libdir.join("libsaeplug_ffi.a").display().to_string();
    let asan = compile_c(
        &out,
        "hardening_asan",
        "hardening.c",
        SANITIZE,
        std::slice::from_ref(&a),
    );
    let sae = saelens_fixtures().join("standard");
    let o = run_ok(
        Command::new(&asan)
            .arg(&sae)
            .arg("cpu")
            .env("ASAN_OPTIONS", "detect_leaks=1"),
    );
    assert!(o.contains("hardening (cpu): all checks passed"), "{o}");
    if gpu_or_fail(saeplug::WgpuOptions::default()).is_some() {
        let plain = compile_c(
            &out,
            "hardening",
            "hardening.c",
            &[],
            std::slice::from_ref(&a),
        );
        let o = run_ok(Command::new(&plain).arg(&sae).arg("gpu"));
        assert!(o.contains("hardening (gpu): all checks passed"), "{o}");
    }
}

/// A CPU-only library (`saeplug-ffi` without its `gpu` feature, built into its own
/// target folder) links into a C program that finds GPU contexts refused with
/// UNSUPPORTED, AUTO on the CPU, and the CPU context working.
#[test]
fn cpu_only_library_refuses_gpu_contexts() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("cpu-only");
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args([
            "build",
            "-q",
            "-p",
            "saeplug-ffi",
            "--no-default-features",
            "--target-dir",
        ])
        .arg(&target);
    run_ok(&mut c);
    let lib = target.join("debug/libsaeplug_ffi.a");
    // The CPU-only archive carries no wgpu code.
    let syms = run_ok(Command::new("nm").arg("-C").arg(&lib));
    assert!(
        !syms.contains("wgpu_core::"),
        "the CPU-only library links wgpu"
    );
    let out = scratch("c_cpu_only");
    let exe = compile_c(
        &out,
        "cpu_only",
        "cpu_only.c",
        SANITIZE,
        &[lib.display().to_string()],
    );
    let o = run_ok(
        Command::new(&exe)
            .arg(saelens_fixtures().join("standard"))
            .env("ASAN_OPTIONS", "detect_leaks=1"),
    );
    assert!(o.contains("cpu-only library: all checks passed"), "{o}");
}

#[test]
fn cpp_wrapper_consumer_with_sanitizers() {
    let libdir = ffi_libs();
    let out = scratch("cpp");
    let exe = out.join("basic_cpp");
    run_ok(
        Command::new("g++")
            .args(WARN_CXX)
            .arg("-g")
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
            .args(WARN_CXX)
            .arg("-fsyntax-only")
            .arg(&inc)
            .arg(&cpp),
    );
}

/// Every function in include/saeplug.h carries a C example in its comment; each
/// is extracted, compiled as C99 with -Wall -Wextra -Werror -pedantic and run
/// under ASan+UBSan (leak checking on) against a SAELens fixture
/// (d_in 64, d_sae 256) with a CPU context: the header's examples cannot rot.
#[test]
fn header_examples_compile_and_run() {
    let header = std::fs::read_to_string(repo_root().join("include/saeplug.h")).unwrap();
    let functions = header_docs::function_docs(&header);
    let mut examples: Vec<(String, String)> = Vec::new();
    for (name, doc) in &functions {
        let body: Vec<&str> = doc
            .lines()
            .map(|l| l.trim_start().trim_start_matches('*'))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .skip_while(|l| *l != "```c")
            .skip(1)
            .take_while(|l| *l != "```")
            .collect();
        assert!(!body.is_empty(), "{name} has no ```c example in the header");
        examples.push((name.to_string(), body.join("\n")));
    }
    assert!(functions.len() >= 30 && examples.len() == functions.len());
    let mut src = String::from(
        r#"#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "saeplug.h"

#define CHECK(call) do { \
    saeplug_status st_ = (call); \
    if (st_ != SAEPLUG_STATUS_OK) { \
        char m_[512]; \
        saeplug_last_error_message(m_, sizeof m_); \
        fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, \
                saeplug_status_str(st_), m_); \
        exit(1); \
    } \
} while (0)
"#,
    );
    for (name, body) in &examples {
        src.push_str(&format!(
            "\nstatic void example_{name}(const char *sae_dir, const char *tmp_dir,\n    \
             saeplug_sae *sae, saeplug_ctx *ctx) {{\n    \
             (void)sae_dir; (void)tmp_dir; (void)sae; (void)ctx;\n    {{\n{body}\n    }}\n}}\n"
        ));
    }
    src.push_str(
        "\nint main(int argc, char **argv) {\n    saeplug_sae *sae = NULL;\n    \
         saeplug_ctx *ctx = NULL;\n    if (argc != 3) return 2;\n    \
         CHECK(saeplug_sae_open(argv[1], &sae));\n    \
         CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 0, &ctx));\n",
    );
    for (name, _) in &examples {
        src.push_str(&format!(
            "    example_{name}(argv[1], argv[2], sae, ctx);\n    printf(\"example {name}: ok\\n\");\n"
        ));
    }
    src.push_str("    saeplug_ctx_free(ctx);\n    saeplug_sae_free(sae);\n    return 0;\n}\n");
    let out = scratch("header_examples");
    let c = out.join("examples.c");
    std::fs::write(&c, &src).unwrap();
    let lib = ffi_libs().join("libsaeplug_ffi.a");
    let exe = out.join("examples");
    run_ok(
        Command::new("gcc")
            .args(WARN)
            .args([
                "-fsanitize=address,undefined",
                "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=all",
            ])
            .arg(format!("-I{}", repo_root().join("include").display()))
            .arg(&c)
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&exe),
    );
    let o = run_ok(
        Command::new(&exe)
            .arg(saelens_fixtures().join("standard"))
            .arg(&out)
            .env("ASAN_OPTIONS", "detect_leaks=1"),
    );
    for (name, _) in &examples {
        assert!(o.contains(&format!("example {name}: ok")), "{name}: {o}");
    }
}
