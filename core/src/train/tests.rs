//! Training maths against the f64 oracle (train/reference.rs) and finite
//! differences; determinism and resume.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops written like the maths"
)]

use super::reference::{self, P64};
use super::step::Params;
use super::{Arch, TrainConfig, Trainer};
use crate::CpuBackend;
use crate::backend::train_ops::TrainOps;
use crate::synthetic::Rng;

const D: usize = 6;
const DS: usize = 16;
const B: usize = 8;

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn p64(p: &Params) -> P64 {
    P64 {
        we: to64(&p.w_enc_t),
        be: to64(&p.b_enc),
        wd: to64(&p.w_dec),
        bd: to64(&p.b_dec),
        lt: to64(&p.log_threshold),
    }
}

fn params_of(g: &Params) -> [&Vec<f32>; 5] {
    [&g.w_enc_t, &g.b_enc, &g.w_dec, &g.b_dec, &g.log_threshold]
}

/// The variants every check runs over.
fn variants() -> Vec<(&'static str, TrainConfig, bool)> {
    let mut out = Vec::new();
    let base = |arch| {
        let mut c = TrainConfig::new(arch, D, DS);
        c.k = 3;
        c.batch_size = B;
        c.total_steps = 100;
        c.dead_window = 1;
        c.l1_coeff = 0.3;
        c
    };
    out.push(("standard", base(Arch::Standard), false));
    let mut g = base(Arch::Standard);
    g.ghost_grads = true;
    out.push(("standard+ghost", g, true));
    out.push(("topk", base(Arch::TopK), false));
    let mut rs = base(Arch::TopK);
    rs.rescale_acts_by_decoder_norm = true;
    out.push(("topk+rescale+auxk", rs.clone(), true));
    rs.arch = Arch::BatchTopK;
    out.push(("batchtopk+rescale", rs, false));
    out.push(("topk+auxk", base(Arch::TopK), true));
    out.push(("batchtopk+auxk", base(Arch::BatchTopK), true));
    let mut m = base(Arch::TopK);
    m.matryoshka = vec![4, 9];
    out.push(("topk+matryoshka+auxk", m, true));
    let mut m = base(Arch::BatchTopK);
    m.matryoshka = vec![5];
    out.push(("batchtopk+matryoshka", m, false));
    let mut j = base(Arch::JumpRelu);
    j.bandwidth = 0.3;
    out.push(("jumprelu", j, false));
    out
}

/// A trainer with random (not initial) parameters, some latents dead when asked.
fn setup(cfg: &TrainConfig, with_dead: bool, seed: u64) -> (Trainer, Vec<f32>) {
    let mut t = Trainer::new(cfg.clone()).unwrap();
    let mut rng = Rng::new(seed);
    t.p.w_enc_t = rng.normal_vec(DS * D, 0.4);
    t.p.w_dec = rng.normal_vec(DS * D, 0.4);
    t.p.b_enc = rng.normal_vec(DS, 0.1);
    t.p.b_dec = rng.normal_vec(D, 0.1);
    if cfg.arch == Arch::JumpRelu {
        t.p.log_threshold = (0..DS)
            .map(|_| (0.1 + 0.5 * rng.uniform() as f32).ln())
            .collect();
    }
    if with_dead {
        for i in (0..DS).step_by(3) {
            t.since_fired[i] = 1;
        }
    }
    let x = rng.normal_vec(B * D, 1.0);
    (t, x)
}

#[test]
fn reference_gradients_match_finite_differences() {
    for (name, cfg, dead) in variants() {
        let (t, x) = setup(&cfg, dead, 11);
        let p = p64(&t.p);
        let mask = t.dead_mask();
        assert_eq!(mask.iter().any(|d| *d), dead, "{name}");
        let x64 = to64(&x);
        let lambda = f64::from(cfg.l1_coeff);
        let g = reference::grads(&cfg, &p, &mask, lambda, &x64);
        let (_, frozen) = reference::loss(&cfg, &p, &mask, lambda, &x64, None);
        let h = 1e-6;
        let mut checked = 0;
        // The threshold's gradient is a pseudo-gradient: checked against f32 below.
        for (k, gt) in g.tensors().into_iter().enumerate().take(4) {
            for e in 0..gt.len() {
                let f = |delta: f64| {
                    let mut q = p.clone();
                    q.tensors_mut()[k][e] += delta;
                    reference::loss(&cfg, &q, &mask, lambda, &x64, Some(&frozen)).0
                };
                let fd = (f(h) - f(-h)) / (2.0 * h);
                let an = gt[e];
                assert!(
                    (fd - an).abs() <= 1e-6 * (1.0 + an.abs()),
                    "{name}: tensor {k} element {e}: finite difference {fd} vs analytic {an}"
                );
                checked += 1;
            }
        }
        assert!(checked > 2 * DS * D, "{name}");
        // The variant exercises what it names.
        assert!(
            g.tensors()
                .iter()
                .take(4)
                .all(|v| v.iter().any(|x| *x != 0.0)),
            "{name}"
        );
    }
}

#[test]
fn f32_gradients_match_the_f64_reference() {
    let cpu = CpuBackend::new(2);
    for ((name, cfg, dead), dense) in variants()
        .into_iter()
        .flat_map(|v| [(v.clone(), false), (v, true)])
    {
        let (mut t, x) = setup(&cfg, dead, 12);
        t.force_dense = Some(dense);
        let (g32, pass) = t.gradients(&cpu, &x).unwrap();
        let lambda = f64::from(cfg.lambda_at(0));
        let mask = t.dead_mask();
        let g64 = reference::grads(&cfg, &p64(&t.p), &mask, lambda, &to64(&x));
        let (l64, _) = reference::loss(&cfg, &p64(&t.p), &mask, lambda, &to64(&x), None);
        assert!(
            (pass.loss - l64).abs() <= 1e-5 * (1.0 + l64.abs()),
            "{name}: loss {} vs {l64}",
            pass.loss
        );
        for (k, (a, b)) in params_of(&g32).into_iter().zip(g64.tensors()).enumerate() {
            let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (e, (x32, x64)) in a.iter().zip(b.iter()).enumerate() {
                assert!(
                    (f64::from(*x32) - x64).abs() <= 2e-5 * scale,
                    "{name} (dense {dense}): tensor {k} element {e}: f32 {x32} vs f64 {x64}"
                );
            }
        }
        if cfg.arch == Arch::JumpRelu {
            assert!(
                g32.log_threshold.iter().any(|v| *v != 0.0),
                "{name}: no window"
            );
        }
    }
}

#[test]
fn training_steps_match_the_f64_reference_steps() {
    // Three steps on different batches (Adam's first step moves each parameter by
    // about lr · sign(g); later steps weigh the gradients against each other).
    let cpu = CpuBackend::new(2);
    for ((name, mut cfg, dead), dense) in variants()
        .into_iter()
        .flat_map(|v| [(v.clone(), false), (v, true)])
    {
        cfg.total_steps = 3; // warm-up and decay both act
        cfg.decay_frac = 0.4;
        let (mut t, x) = setup(&cfg, dead, 13);
        t.force_dense = Some(dense);
        t.cfg.total_steps = 3;
        t.cfg.decay_frac = 0.4;
        let mut want = p64(&t.p);
        let start = want.clone();
        let mut mo = reference::Moments::zeros(&want);
        let mut rng = Rng::new(99);
        for s in 0..3u64 {
            let xb: Vec<f32> = if s == 0 {
                x.clone()
            } else {
                rng.normal_vec(B * D, 1.0)
            };
            let mask = t.dead_mask();
            reference::step(
                &cfg,
                &mut want,
                &mut mo,
                &mask,
                &to64(&xb),
                s,
                f64::from(cfg.lambda_at(s)),
                f64::from(cfg.lr_at(s)),
            );
            let stats = t.step(&cpu, &xb).unwrap();
            if s == 0 {
                assert!(stats.grad_norm > 1.0, "{name}: clipping is exercised");
            }
            for (k, (a, b)) in params_of(&t.p).into_iter().zip(want.tensors()).enumerate() {
                for (e, (x32, x64)) in a.iter().zip(b.iter()).enumerate() {
                    assert!(
                        (f64::from(*x32) - x64).abs() <= 1e-5,
                        "{name} (dense {dense}): step {s} tensor {k} element {e}: f32 {x32} vs f64 {x64}"
                    );
                }
            }
        }
        let moved: usize = params_of(&t.p)
            .into_iter()
            .zip(start.tensors())
            .map(|(a, b)| {
                a.iter()
                    .zip(b.iter())
                    .filter(|(n, o)| f64::from(**n) != **o)
                    .count()
            })
            .sum();
        assert!(moved > DS, "{name}: the steps moved {moved} parameters");
    }
}

#[test]
fn schedules_warm_up_lambda_and_decay_lr() {
    let mut c = TrainConfig::new(Arch::Standard, 4, 8);
    c.total_steps = 100;
    c.l1_coeff = 2.0;
    c.lr = 1.0;
    assert_eq!(c.lambda_at(0), 2.0 / 5.0);
    assert_eq!(c.lambda_at(4), 2.0);
    assert_eq!(c.lambda_at(50), 2.0);
    assert_eq!(c.lr_at(79), 1.0);
    assert_eq!(c.lr_at(80), 1.0);
    assert_eq!(c.lr_at(90), 0.5);
    assert_eq!(c.lr_at(99), 0.05);
}

fn run(cfg: &TrainConfig, threads: usize, steps: u64, x: &[f32]) -> Trainer {
    let cpu = CpuBackend::new(threads);
    let mut t = Trainer::new(cfg.clone()).unwrap();
    t.set_scale_from(x);
    for s in 0..steps {
        let n = x.len() / cfg.d_in;
        let r0 = (s as usize * cfg.batch_size) % (n - cfg.batch_size);
        t.step(&cpu, &x[r0 * cfg.d_in..(r0 + cfg.batch_size) * cfg.d_in])
            .unwrap();
    }
    t
}

fn determinism_cfg(arch: Arch) -> TrainConfig {
    let mut c = TrainConfig::new(arch, 24, 96);
    c.k = 4;
    c.batch_size = 64;
    c.total_steps = 12;
    c.dead_window = 128;
    c.ghost_grads = arch == Arch::Standard;
    c.seed = 5;
    c
}

#[test]
fn fixed_seed_and_threads_give_bit_identical_weights() {
    let x = Rng::new(3).normal_vec(24 * 1000, 1.0);
    for arch in [Arch::Standard, Arch::TopK, Arch::BatchTopK, Arch::JumpRelu] {
        let cfg = determinism_cfg(arch);
        let a = run(&cfg, 2, 12, &x);
        let b = run(&cfg, 2, 12, &x);
        assert_eq!(a.p, b.p, "{arch:?}");
        assert_eq!(a.m, b.m, "{arch:?}");
        assert_eq!(a.topk_threshold.to_bits(), b.topk_threshold.to_bits());
        // A different seed gives different weights (the check can fail).
        let mut other = cfg.clone();
        other.seed = 6;
        assert_ne!(run(&other, 2, 12, &x).p, a.p, "{arch:?}");
    }
}

#[test]
fn resume_from_a_checkpoint_is_bit_identical() {
    let x = Rng::new(4).normal_vec(24 * 1000, 1.0);
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Standard, Arch::TopK, Arch::BatchTopK, Arch::JumpRelu] {
        let cfg = determinism_cfg(arch);
        let straight = run(&cfg, 2, 12, &x);
        let half = run(&cfg, 2, 6, &x);
        let path = dir.path().join(format!("{}.ckpt", arch.name()));
        half.save_checkpoint(&path).unwrap();
        let mut resumed = Trainer::load_checkpoint(&path).unwrap();
        assert_eq!(resumed.steps_done(), 6);
        let cpu = CpuBackend::new(2);
        for s in 6..12u64 {
            let r0 = (s as usize * cfg.batch_size) % (1000 - cfg.batch_size);
            resumed
                .step(&cpu, &x[r0 * 24..(r0 + cfg.batch_size) * 24])
                .unwrap();
        }
        assert_eq!(resumed.p, straight.p, "{arch:?}");
        assert_eq!(resumed.v, straight.v, "{arch:?}");
        assert_eq!(resumed.since_fired, straight.since_fired, "{arch:?}");
        assert_eq!(
            resumed.topk_threshold.to_bits(),
            straight.topk_threshold.to_bits()
        );
    }
}

#[test]
fn saved_sae_encodes_like_the_trained_model() {
    let x = Rng::new(8).normal_vec(24 * 1000, 3.0);
    let dir = tempfile::tempdir().unwrap();
    let cpu = CpuBackend::new(2);
    for (arch, rescale) in [
        (Arch::Standard, false),
        (Arch::TopK, true),
        (Arch::TopK, false),
        (Arch::BatchTopK, true),
        (Arch::BatchTopK, false),
        (Arch::JumpRelu, false),
    ] {
        let mut cfg = determinism_cfg(arch);
        cfg.lr = 1e-2;
        cfg.rescale_acts_by_decoder_norm = rescale;
        let t = run(&cfg, 2, 12, &x);
        assert!(t.scale() != 1.0);
        let out = dir.path().join(format!("{}-{rescale}", arch.name()));
        t.save_saelens(&out).unwrap();
        let sae = crate::Sae::open(&out).unwrap();
        if rescale {
            // Saved as SAELens saves a rescaling TopK: unit decoder rows.
            assert!(sae.decoder_norms().iter().all(|n| (n - 1.0).abs() < 1e-5));
        }
        let rows = &x[..24 * 50];
        let want = t.encode(&cpu, rows).unwrap();
        let mut got = vec![0.0; 50 * 96];
        crate::Backend::encode(&cpu, &sae, rows, &mut got).unwrap();
        let nz = want.iter().filter(|v| **v != 0.0).count();
        assert!(nz > 50, "{arch:?}: {nz} active");
        for (e, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{arch:?}: element {e}: loaded {a} vs trained {b}"
            );
        }
    }
}

#[test]
fn non_finite_batches_and_bad_configs_are_refused() {
    let cpu = CpuBackend::new(1);
    let mut t = Trainer::new(TrainConfig::new(Arch::TopK, 4, 8)).unwrap();
    let before = t.p.clone();
    let err = t.step(&cpu, &[1.0, 2.0, 3.0, 4.0, 0.0, f32::INFINITY, 0.0, 0.0]);
    assert!(err.unwrap_err().to_string().contains("row 1"));
    assert_eq!(t.p, before);
    assert_eq!(t.steps_done(), 0);
    assert!(t.step(&cpu, &[1.0; 5]).is_err());
    let mut c = TrainConfig::new(Arch::TopK, 4, 8);
    c.k = 9;
    assert!(Trainer::new(c).is_err());
    let mut c = TrainConfig::new(Arch::JumpRelu, 4, 8);
    c.matryoshka = vec![4];
    assert!(Trainer::new(c).is_err());
    let mut c = TrainConfig::new(Arch::TopK, 4, 8);
    c.matryoshka = vec![6, 4];
    assert!(Trainer::new(c).is_err());
    let _ = cpu.sum_squares(&[]);
}

/// Counts the dense products a step asks for.
struct Counting {
    cpu: CpuBackend,
    affine: std::sync::atomic::AtomicUsize,
    matmul: std::sync::atomic::AtomicUsize,
}

impl TrainOps for Counting {
    fn affine_t(
        &self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        d: usize,
        o: &mut [f32],
    ) -> crate::Result<()> {
        self.affine
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cpu.affine_t(x, w, b, d, o)
    }
    fn matmul(
        &self,
        a: &[f32],
        k: usize,
        t: bool,
        b: &[f32],
        o: &mut [f32],
        acc: bool,
    ) -> crate::Result<()> {
        self.matmul
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cpu.matmul(a, k, t, b, o, acc)
    }
    fn gather_add(
        &self,
        c: &crate::SparseCodes,
        m: &[f32],
        d: usize,
        o: &mut [f32],
    ) -> crate::Result<()> {
        self.cpu.gather_add(c, m, d, o)
    }
    fn row_dots(
        &self,
        c: &crate::SparseCodes,
        m: &[f32],
        v: &[f32],
        d: usize,
        o: &mut [f32],
    ) -> crate::Result<()> {
        self.cpu.row_dots(c, m, v, d, o)
    }
    fn top_k_rows(&self, h: &[f32], w: usize, k: usize, o: &mut [u32]) -> crate::Result<()> {
        self.cpu.top_k_rows(h, w, k, o)
    }
    fn adam(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        s: &crate::backend::train_ops::AdamStep,
    ) -> crate::Result<()> {
        self.cpu.adam(p, g, m, v, s)
    }
    fn sum_squares(&self, x: &[f32]) -> f64 {
        self.cpu.sum_squares(x)
    }
}

#[test]
fn topk_backward_is_sparse_with_one_dense_gemm() {
    // d_sae 512, k 8, batch 64: only the encoder's forward is dense; latents that
    // were neither selected nor AuxK-selected get exactly zero gradient.
    for dead in [false, true] {
        let mut cfg = TrainConfig::new(Arch::TopK, 24, 512);
        cfg.k = 8;
        cfg.dead_window = 1;
        let mut t = Trainer::new(cfg).unwrap();
        if dead {
            for i in 0..256 {
                t.since_fired[i] = 1;
            }
        }
        let x = Rng::new(2).normal_vec(64 * 24, 1.0);
        let ops = Counting {
            cpu: CpuBackend::new(2),
            affine: 0.into(),
            matmul: 0.into(),
        };
        let (g, pass) = t.gradients(&ops, &x).unwrap();
        assert_eq!(ops.affine.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(ops.matmul.load(std::sync::atomic::Ordering::SeqCst), 0);
        let fired = pass.fired.iter().filter(|f| **f).count();
        let touched = (0..512)
            .filter(|&i| {
                g.w_enc_t[i * 24..(i + 1) * 24].iter().any(|v| *v != 0.0)
                    || g.w_dec[i * 24..(i + 1) * 24].iter().any(|v| *v != 0.0)
                    || g.b_enc[i] != 0.0
            })
            .count();
        for i in (0..512).filter(|&i| !(pass.fired[i] || (dead && i < 256))) {
            assert!(g.w_enc_t[i * 24..(i + 1) * 24].iter().all(|v| *v == 0.0));
            assert!(g.w_dec[i * 24..(i + 1) * 24].iter().all(|v| *v == 0.0));
            assert_eq!(g.b_enc[i], 0.0);
        }
        assert!(
            touched >= fired && touched < 512,
            "{touched} of 512 latents touched"
        );
        if !dead {
            assert_eq!(touched, fired);
        }
    }
    // A dense ReLU batch takes the GEMM path.
    let t = Trainer::new(TrainConfig::new(Arch::Standard, 24, 64)).unwrap();
    let ops = Counting {
        cpu: CpuBackend::new(1),
        affine: 0.into(),
        matmul: 0.into(),
    };
    t.gradients(&ops, &Rng::new(3).normal_vec(32 * 24, 1.0))
        .unwrap();
    assert!(ops.matmul.load(std::sync::atomic::Ordering::SeqCst) >= 3);
}
