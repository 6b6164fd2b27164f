//! Shared helpers for the cross-crate tests.
#![allow(
    dead_code,
    unused_macros,
    reason = "each test binary uses a different subset"
)]

pub mod llama;

use std::path::PathBuf;

use saeplug::synthetic::{Rng, sparse_data};
use saeplug::weights::SafeTensors;
use saeplug::{Architecture, Sae, TopKOrder};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `../shared/fixtures/saelens` beside the repository (or `$SAEPLUG_FIXTURES`).
/// Panics (fails the test) when absent: fixtures are never skipped.
pub fn saelens_fixtures() -> PathBuf {
    let root = std::env::var_os("SAEPLUG_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/fixtures"));
    let p = root.join("saelens");
    assert!(
        p.is_dir(),
        "SAELens fixtures not found at {} (set SAEPLUG_FIXTURES)",
        p.display()
    );
    p
}

/// The fixture cases present.
pub fn fixture_cases() -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(saelens_fixtures())
        .expect("read fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    assert!(
        v.len() >= 5,
        "expected at least 5 fixture cases, found {}",
        v.len()
    );
    v
}

/// Fixture io tensors: x, feature_acts, recon (all f32, flattened).
pub struct FixtureIo {
    pub n: usize,
    pub x: Vec<f32>,
    pub feature_acts: Vec<f32>,
    pub recon: Vec<f32>,
}

pub fn fixture_io(dir: &std::path::Path) -> FixtureIo {
    let st = SafeTensors::open(&dir.join("io.safetensors")).expect("open io.safetensors");
    let get = |n: &str| st.tensor(n).expect(n).as_slice().to_vec();
    let n = st.tensors["x"].shape[0];
    FixtureIo {
        n,
        x: get("x"),
        feature_acts: get("feature_acts"),
        recon: get("recon"),
    }
}

/// Max |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Max |a - b| against an f64 reference.
pub fn max_abs_diff64(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let p = repo_root()
        .join("target/test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create scratch dir");
    p
}

/// The wgpu backend, or a failed test when there is no adapter — unless
/// `SAEPLUG_ALLOW_NO_GPU=1`, in which case `None` (the caller returns, loudly).
pub fn gpu_or_fail(opts: saeplug::WgpuOptions) -> Option<saeplug::WgpuBackend> {
    match saeplug::WgpuBackend::new(opts) {
        Ok(b) => {
            let i = b.adapter_info();
            eprintln!(
                "wgpu adapter: {} ({:?}, {:?})",
                i.name, i.device_type, i.backend
            );
            Some(b)
        }
        Err(e) if std::env::var("SAEPLUG_ALLOW_NO_GPU").as_deref() == Ok("1") => {
            eprintln!(
                "NO GPU ADAPTER ({e}); SAEPLUG_ALLOW_NO_GPU=1 set, this GPU test checks nothing"
            );
            None
        }
        Err(e) => panic!(
            "no GPU adapter: {e}\n(install mesa-vulkan-drivers libvulkan1, or set SAEPLUG_ALLOW_NO_GPU=1)"
        ),
    }
}

/// Run a command; fail the test with its output unless it succeeds. Returns
/// stdout followed by stderr.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd:?} failed ({}):\n{out}", o.status);
    out
}

/// A copy of `sae` (owned tensors) whose encoder is replaced by `w_enc`, stored
/// `[d_sae, d_in]` when `transposed`, else `[d_in, d_sae]`.
pub fn with_encoder(
    sae: &saeplug::Sae,
    w_enc: saeplug::weights::Tensor,
    transposed: bool,
) -> saeplug::Sae {
    use saeplug::weights::Tensor;
    let w = sae.weights();
    let own =
        |t: &Tensor| Tensor::owned(t.name(), t.shape().to_vec(), t.as_slice().to_vec()).unwrap();
    let weights = saeplug::SaeWeights {
        w_enc,
        w_enc_transposed: transposed,
        b_enc: own(&w.b_enc),
        w_dec: own(&w.w_dec),
        b_dec: own(&w.b_dec),
        threshold: w.threshold.as_ref().map(own),
        r_mag: w.r_mag.as_ref().map(own),
        b_mag: w.b_mag.as_ref().map(own),
    };
    saeplug::Sae::from_parts(sae.config().clone(), weights).unwrap()
}

/// Every architecture and top-k order the backends implement, for a `d_sae`
/// divisible by 9: top-k with k = 9 in each order (decoder-norm rescaling on the
/// first), top-k with k = d_sae, and group-max with 9 groups.
pub fn archs(d_sae: usize) -> Vec<Architecture> {
    assert_eq!(d_sae % 9, 0, "group-max needs d_sae divisible by k = 9");
    let topk = |k, order, rescale| Architecture::TopK {
        k,
        order,
        rescale_by_decoder_norm: rescale,
    };
    vec![
        Architecture::Standard,
        Architecture::JumpRelu,
        Architecture::Gated,
        topk(9, TopKOrder::TopKThenRelu, true),
        topk(9, TopKOrder::ReluThenTopK, false),
        topk(9, TopKOrder::Signed, false),
        topk(d_sae, TopKOrder::TopKThenRelu, false),
        topk(9, TopKOrder::GroupMax, false),
    ]
}

/// `rows` inputs for `sae`: planted sparse features plus N(0, 0.3) noise (so some
/// pre-activations are negative and the reconstruction error is not small).
pub fn inputs(sae: &Sae, rows: usize, seed: u64) -> Vec<f32> {
    let mut x = sparse_data(sae, rows, 5, 0.05, seed);
    let noise = Rng::new(seed + 100).normal_vec(x.len(), 0.3);
    x.iter_mut().zip(noise).for_each(|(a, b)| *a += b);
    x
}

/// The same SAE with `W_enc` stored `[d_sae, d_in]` (nn.Linear / sparsify layout).
pub fn transposed(sae: &Sae) -> Sae {
    let w = sae.weights();
    let (d, n) = (sae.d_in(), sae.d_sae());
    let src = w.w_enc.as_slice();
    let mut t = vec![0.0; d * n];
    for j in 0..d {
        for i in 0..n {
            t[i * d + j] = src[j * n + i];
        }
    }
    with_encoder(
        sae,
        saeplug::weights::Tensor::owned("encoder.weight", vec![n, d], t).unwrap(),
        true,
    )
}

/// Every f32 CPU kernel variant this machine runs: each available ISA level with
/// the encoder packed once and read in place (zero-copy), on two threads.
#[allow(dead_code, reason = "each test binary uses a different subset")]
pub fn cpu_variants() -> Vec<(String, saeplug::CpuBackend)> {
    use saeplug::backend::cpu::{Isa, WeightStorage};
    let mut out = Vec::new();
    for isa in Isa::available() {
        for storage in [WeightStorage::PackedF32, WeightStorage::ZeroCopy] {
            let cpu = saeplug::CpuBackend::new(2)
                .with_isa(isa)
                .expect("available ISA")
                .with_weight_storage(storage);
            out.push((format!("{}/{storage:?}", isa.name()), cpu));
        }
    }
    out
}

/// One test body, every backend: `backend_test!(body, body_cpu, body_wgpu)` emits
/// `#[test] fn body_cpu` (runs `body(&dyn Backend)` on the CPU backend with 1, 2
/// and 3 threads, then on every f32 kernel variant of [`cpu_variants`]) and `#[test] fn body_wgpu` (on the wgpu backend opened with the
/// optional fourth argument, a `WgpuOptions`; fails without an adapter unless
/// `SAEPLUG_ALLOW_NO_GPU=1`, see [`gpu_or_fail`]).
macro_rules! backend_test {
    ($body:ident, $cpu:ident, $wgpu:ident) => {
        backend_test!($body, $cpu, $wgpu, saeplug::WgpuOptions::default());
    };
    ($body:ident, $cpu:ident, $wgpu:ident, $opts:expr) => {
        #[test]
        fn $cpu() {
            for threads in [1, 2, 3] {
                $body(&saeplug::CpuBackend::new(threads));
            }
            for (_, cpu) in $crate::common::cpu_variants() {
                $body(&cpu);
            }
        }

        #[test]
        fn $wgpu() {
            if let Some(gpu) = $crate::common::gpu_or_fail($opts) {
                $body(&gpu);
            }
        }
    };
}
#[allow(unused_imports, reason = "each test binary uses a different subset")]
pub(crate) use backend_test;

/// The `saeplug` CLI of this build profile, built first (a child process runs it).
pub fn saeplug() -> std::process::Command {
    use std::process::Command;
    let exe = repo_root().join(if cfg!(debug_assertions) {
        "target/debug/saeplug"
    } else {
        "target/release/saeplug"
    });
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args(["build", "-q", "-p", "saeplug-cli"]);
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    assert!(c.status().unwrap().success(), "building the CLI failed");
    Command::new(exe)
}
