//! `SAEPLUG_CPU_ISA` forces each ISA level the CPU supports: a child process per
//! level (the variable is read when a backend starts) reports the level its
//! default backend picked and checks an encode against the f64 reference.

mod common;

use saeplug::backend::cpu::{ISA_ENV, Isa};
use saeplug::{Architecture, Backend, CpuBackend};

const CHILD: &str = "SAEPLUG_ISA_TEST_CHILD";

#[test]
fn child_reports_its_isa() {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful when spawned by the test below
    }
    let cpu = CpuBackend::try_new(2).expect("forced ISA accepted");
    let sae = saeplug::synthetic::random_sae(40, 300, Architecture::Standard, 5).unwrap();
    let x = common::inputs(&sae, 9, 6);
    let mut f = vec![0.0; 9 * 300];
    cpu.encode(&sae, &x, &mut f).unwrap();
    let want = saeplug::reference::encode(&sae, &x);
    let err = common::max_abs_diff64(&f, &want);
    assert!(err < 1e-4, "encode err {err}");
    println!("ISA={}", cpu.isa().name());
}

#[test]
fn the_environment_variable_forces_each_available_level() {
    let exe = std::env::current_exe().unwrap();
    for isa in Isa::available() {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_reports_its_isa",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env(ISA_ENV, isa.name())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{isa:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("ISA={}", isa.name())),
            "{isa:?} not picked: {text}"
        );
    }
}

#[test]
fn unknown_or_unavailable_levels_are_refused_by_name() {
    let exe = std::env::current_exe().unwrap();
    let mut bad = vec!["sse9".to_string()];
    bad.extend(
        Isa::ALL
            .into_iter()
            .filter(|i| !i.is_available())
            .map(|i| i.name().to_string()),
    );
    for value in bad {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_reports_its_isa",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env(ISA_ENV, &value)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{value} accepted: {all}");
        assert!(all.contains(&value), "error does not name {value}: {all}");
    }
    // In-process: an unavailable level is an error naming what the CPU has.
    for isa in Isa::ALL {
        let r = CpuBackend::new(1).with_isa(isa);
        assert_eq!(r.is_ok(), isa.is_available(), "{isa:?}");
    }
}

#[test]
fn runtime_dispatch_picks_the_fastest_level_present() {
    // The order of levels is the speed order; the default backend (nothing forced)
    // runs the last available one.
    if std::env::var_os(ISA_ENV).is_some() {
        return; // a forced level is the point of that run
    }
    let best = *Isa::available().last().unwrap();
    assert_eq!(Isa::detected(), best);
    assert_eq!(CpuBackend::new(1).isa(), best);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(best, Isa::Avx512);
    }
}
