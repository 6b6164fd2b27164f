//! scripts/install.sh, then C consumers built against the installed files with
//! CMake's find_package(saeplug) and with pkg-config.

mod common;

use std::process::Command;

use common::*;

#[test]
fn installed_library_builds_with_cmake_and_pkg_config() {
    let out = scratch("install");
    let prefix = out.join("prefix");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    run_ok(
        Command::new("bash")
            .arg(repo_root().join("scripts/install.sh"))
            .arg(&prefix)
            .env("SAEPLUG_PROFILE", profile),
    );
    for f in [
        "include/saeplug.h",
        "include/saeplug.hpp",
        "lib/libsaeplug.a",
        "lib/libsaeplug.so",
        "lib/pkgconfig/saeplug.pc",
        "lib/cmake/saeplug/saeplugConfig.cmake",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    // CMake consumer.
    let build = out.join("build");
    run_ok(
        Command::new("cmake")
            .arg("-S")
            .arg(repo_root().join("tests/cmake-consumer"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
    );
    run_ok(Command::new("cmake").arg("--build").arg(&build));
    // The consumer is tests/c/basic.c: run it on a fixture.
    let dir = saelens_fixtures().join("standard");
    let st = saeplug::weights::SafeTensors::open(&dir.join("io.safetensors")).unwrap();
    let mut args = vec![dir.display().to_string()];
    for name in ["x", "feature_acts", "recon"] {
        let p = out.join(format!("{name}.bin"));
        let b: Vec<u8> = st
            .tensor(name)
            .unwrap()
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&p, b).unwrap();
        args.push(p.display().to_string());
    }
    args.push(st.tensors["x"].shape[0].to_string());
    for exe in ["consumer_shared", "consumer_static"] {
        let o = run_ok(
            Command::new(build.join(exe))
                .args(&args)
                .env("LD_LIBRARY_PATH", prefix.join("lib")),
        );
        assert!(o.contains("all checks passed"), "{exe}: {o}");
    }
    // pkg-config consumer.
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "--static", "saeplug"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config is required (apt-get install pkg-config)");
    assert!(pc.status.success());
    let flags = String::from_utf8_lossy(&pc.stdout).into_owned();
    let exe = out.join("pc_consumer");
    run_ok(
        Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
            .arg(repo_root().join("tests/c/basic.c"))
            .args(flags.split_whitespace())
            .arg("-lm")
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
            .arg("-o")
            .arg(&exe),
    );
    assert!(run_ok(Command::new(&exe).args(&args)).contains("all checks passed"));
}
