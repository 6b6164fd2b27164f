//! One training step on the wgpu backend equals the same step on the CPU backend
//! (issue 12: "the GPU step equals the CPU step on lavapipe to 1e-4"), for every
//! architecture and option, with the dense and the sparse products.

use super::{Arch, TrainConfig, Trainer};
use crate::backend::train_ops::TrainOps;
use crate::synthetic::Rng;
use crate::{CpuBackend, WgpuBackend, WgpuOptions};

const D: usize = 24;
const DS: usize = 96;
const B: usize = 40;

/// The backend, or `None` (loudly) without an adapter when
/// `SAEPLUG_ALLOW_NO_GPU=1`; otherwise a missing adapter fails the test.
fn gpu(opts: WgpuOptions) -> Option<WgpuBackend> {
    match WgpuBackend::new(opts) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("SAEPLUG_ALLOW_NO_GPU").as_deref() == Ok("1") => {
            eprintln!("NO GPU ADAPTER ({e}); SAEPLUG_ALLOW_NO_GPU=1 set, this test checks nothing");
            None
        }
        Err(e) => panic!("no GPU adapter: {e} (or set SAEPLUG_ALLOW_NO_GPU=1)"),
    }
}

/// Every architecture and option: (name, config, with dead latents).
fn variants() -> Vec<(&'static str, TrainConfig, bool)> {
    let base = |arch| {
        let mut c = TrainConfig::new(arch, D, DS);
        c.k = 6;
        c.batch_size = B;
        c.total_steps = 4;
        c.decay_frac = 0.5;
        c.dead_window = 1;
        c.l1_coeff = 0.3;
        c.lr = 1e-2; // steps well above rounding: a 1% error in an update fails
        c
    };
    let mut out = vec![("standard", base(Arch::Standard), false)];
    let mut g = base(Arch::Standard);
    g.ghost_grads = true;
    out.push(("standard+ghost", g, true));
    out.push(("topk", base(Arch::TopK), false));
    out.push(("topk+auxk", base(Arch::TopK), true));
    let mut rs = base(Arch::TopK);
    rs.rescale_acts_by_decoder_norm = true;
    out.push(("topk+rescale+auxk", rs, true));
    out.push(("batchtopk+auxk", base(Arch::BatchTopK), true));
    let mut m = base(Arch::TopK);
    m.matryoshka = vec![16, 48];
    out.push(("topk+matryoshka+auxk", m, true));
    let mut m = base(Arch::BatchTopK);
    m.matryoshka = vec![32];
    out.push(("batchtopk+matryoshka", m, false));
    let mut j = base(Arch::JumpRelu);
    j.bandwidth = 0.3;
    out.push(("jumprelu", j, false));
    out
}

/// A trainer at random (not initial) parameters, every third latent dead when asked.
fn setup(cfg: &TrainConfig, with_dead: bool, seed: u64) -> Trainer {
    let mut t = Trainer::new(cfg.clone()).unwrap();
    let mut rng = Rng::new(seed);
    t.p.w_enc_t = rng.normal_vec(DS * D, 0.3);
    t.p.w_dec = rng.normal_vec(DS * D, 0.3);
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
    t
}

/// Largest |a - b| over a tensor, relative to the tensor's scale (at least 1).
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs() / scale))
        .fold(0.0, f64::max)
}

#[test]
#[cfg_attr(miri, ignore = "wgpu calls into the Vulkan driver")]
fn gpu_training_steps_equal_cpu_steps() {
    // Whole tensors (resident between steps), and a 4 KiB binding cap that splits
    // every weight into chunks and Adam into passes (nothing resident).
    for cap in [None, Some(4096)] {
        let Some(g) = gpu(WgpuOptions {
            max_chunk_bytes: cap,
            ..Default::default()
        }) else {
            return;
        };
        steps_equal(&g, cap);
    }
}

fn steps_equal(g: &WgpuBackend, cap: Option<u64>) {
    let cpu = CpuBackend::new(2);
    let ops: [&dyn TrainOps; 2] = [&cpu, g];
    for (name, cfg, dead) in variants() {
        for dense in [false, true] {
            let mut t = [setup(&cfg, dead, 5), setup(&cfg, dead, 5)];
            for tt in &mut t {
                tt.force_dense = Some(dense);
            }
            let mut rng = Rng::new(17);
            let mut worst = 0.0f64;
            for s in 0..3 {
                let x = rng.normal_vec(B * D, 1.0);
                if s == 2 {
                    // Parameters changed in place behind the backend's back (same
                    // address and length): the device copies Adam left must not be used.
                    for tt in &mut t {
                        tt.p.w_dec.iter_mut().for_each(|w| *w *= 1.25);
                        tt.p.b_enc[0] += 0.5;
                    }
                }
                let stats: Vec<_> = t
                    .iter_mut()
                    .zip(ops)
                    .map(|(tt, o)| tt.step(o, &x).unwrap())
                    .collect();
                let what = format!("{name} (dense {dense}, cap {cap:?}) step {s}");
                if s == 0 {
                    assert!(stats[0].grad_norm > 1.0, "{what}: clipping is exercised");
                }
                let rl = (stats[0].loss - stats[1].loss).abs() / stats[0].loss.abs().max(1.0);
                assert!(
                    rl <= 1e-4,
                    "{what}: loss cpu {} gpu {}",
                    stats[0].loss,
                    stats[1].loss
                );
                assert_eq!(stats[0].l0, stats[1].l0, "{what}: L0");
                let rg = (stats[0].grad_norm - stats[1].grad_norm).abs() / stats[0].grad_norm;
                assert!(rg <= 1e-4, "{what}: gradient norm {rg}");
                for ((n, a), (_, b)) in t[1].p.named().iter().zip(t[0].p.named()) {
                    let e = rel_diff(a, b);
                    worst = worst.max(e);
                    assert!(e <= 1e-4, "{what}: {n} differs by {e:e} (relative)");
                }
                for ((n, a), (_, b)) in t[1].m.named().iter().zip(t[0].m.named()) {
                    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
                    let e = a
                        .iter()
                        .zip(b.iter())
                        .map(|(x, y)| (x - y).abs() / scale)
                        .fold(0.0, f32::max);
                    assert!(e <= 1e-4, "{what}: Adam moment of {n} differs by {e:e}");
                }
                assert_eq!(t[0].since_fired, t[1].since_fired, "{what}: dead counters");
                let th = (t[0].topk_threshold - t[1].topk_threshold).abs();
                assert!(th <= 1e-4, "{what}: BatchTopK threshold differs by {th}");
            }
            eprintln!(
                "{name} (dense {dense}, cap {cap:?}): 3 steps, largest relative difference {worst:.2e}"
            );
            // Steps after the first bind the parameters Adam left on the device
            // (under the cap only the small bias vectors fit one pass).
            assert!(
                g.resident_hits() > 0,
                "{name}: no resident parameter was used"
            );
            // The steps moved the parameters (the comparison is not vacuous).
            let start = setup(&cfg, dead, 5);
            let moved = t[1]
                .p
                .w_dec
                .iter()
                .zip(&start.p.w_dec)
                .filter(|(a, b)| a != b)
                .count();
            assert!(
                moved > D,
                "{name}: the GPU steps moved {moved} decoder weights"
            );
        }
    }
}
