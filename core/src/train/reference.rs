//! The independent f64 oracle for training: dense loops over every latent (no
//! sparse bookkeeping), the loss with its detached quantities optionally frozen
//! (so finite differences see the same function the analytic gradient
//! differentiates), analytic gradients, and one full step (clip + Adam).

#![allow(
    clippy::needless_range_loop,
    reason = "index loops written like the maths"
)]

use super::{Arch, TrainConfig};

#[derive(Clone, Debug)]
pub(crate) struct P64 {
    pub(crate) we: Vec<f64>,
    pub(crate) be: Vec<f64>,
    pub(crate) wd: Vec<f64>,
    pub(crate) bd: Vec<f64>,
    pub(crate) lt: Vec<f64>,
}

impl P64 {
    pub(crate) fn tensors(&self) -> [&Vec<f64>; 5] {
        [&self.we, &self.be, &self.wd, &self.bd, &self.lt]
    }
    pub(crate) fn tensors_mut(&mut self) -> [&mut Vec<f64>; 5] {
        [
            &mut self.we,
            &mut self.be,
            &mut self.wd,
            &mut self.bd,
            &mut self.lt,
        ]
    }
    pub(crate) fn zeros(&self) -> P64 {
        let z = |v: &Vec<f64>| vec![0.0; v.len()];
        P64 {
            we: z(&self.we),
            be: z(&self.be),
            wd: z(&self.wd),
            bd: z(&self.bd),
            lt: z(&self.lt),
        }
    }
}

/// Detached quantities: the residual x − x̂ (AuxK, ghost), ghost scale and weight.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frozen {
    resid: Vec<f64>,
    ghost_s: Vec<f64>,
    ghost_w: Vec<f64>,
}

struct Fwd {
    xc: Vec<f64>,
    h: Vec<f64>,
    f: Vec<f64>,
    active: Vec<bool>,
    xhat: Vec<f64>,
    theta: Vec<f64>,
}

fn forward(cfg: &TrainConfig, p: &P64, x: &[f64]) -> Fwd {
    let (d, ds) = (cfg.d_in, cfg.d_sae);
    let nb = x.len() / d;
    let mut xc = x.to_vec();
    for b in 0..nb {
        for j in 0..d {
            xc[b * d + j] -= p.bd[j];
        }
    }
    let mut h = vec![0.0; nb * ds];
    for b in 0..nb {
        for i in 0..ds {
            let mut s = p.be[i];
            for j in 0..d {
                s += xc[b * d + j] * p.we[i * d + j];
            }
            h[b * ds + i] = s;
        }
    }
    let theta: Vec<f64> = p.lt.iter().map(|l| l.exp()).collect();
    let rk = ranking(cfg, p, &h);
    let mut active = vec![false; nb * ds];
    match cfg.arch {
        Arch::Standard => {
            for e in 0..nb * ds {
                active[e] = h[e] > 0.0;
            }
        }
        Arch::JumpRelu => {
            for e in 0..nb * ds {
                active[e] = h[e] > theta[e % ds];
            }
        }
        Arch::TopK => {
            for b in 0..nb {
                let mut idx: Vec<usize> = (0..ds).collect();
                idx.sort_by(|&a, &c| rk[b * ds + c].total_cmp(&rk[b * ds + a]).then(a.cmp(&c)));
                for &i in &idx[..cfg.k] {
                    active[b * ds + i] = rk[b * ds + i] > 0.0;
                }
            }
        }
        Arch::BatchTopK => {
            let mut idx: Vec<usize> = (0..nb * ds).collect();
            idx.sort_by(|&a, &c| rk[c].max(0.0).total_cmp(&rk[a].max(0.0)).then(a.cmp(&c)));
            for &e in &idx[..(cfg.k * nb).min(nb * ds)] {
                active[e] = rk[e] > 0.0;
            }
        }
    }
    let f: Vec<f64> = (0..nb * ds)
        .map(|e| if active[e] { h[e] } else { 0.0 })
        .collect();
    let mut xhat = vec![0.0; nb * d];
    for b in 0..nb {
        for j in 0..d {
            let mut s = p.bd[j];
            for i in 0..ds {
                s += f[b * ds + i] * p.wd[i * d + j];
            }
            xhat[b * d + j] = s;
        }
    }
    Fwd {
        xc,
        h,
        f,
        active,
        xhat,
        theta,
    }
}

/// What TopK/BatchTopK rank: h, or h_i·‖W_dec,i‖ with `rescale_acts_by_decoder_norm`.
fn ranking(cfg: &TrainConfig, p: &P64, h: &[f64]) -> Vec<f64> {
    let (d, ds) = (cfg.d_in, cfg.d_sae);
    let on = cfg.rescale_acts_by_decoder_norm && matches!(cfg.arch, Arch::TopK | Arch::BatchTopK);
    (0..h.len())
        .map(|e| {
            let i = e % ds;
            let n = if on {
                (0..d).map(|j| sq(p.wd[i * d + j])).sum::<f64>().sqrt()
            } else {
                1.0
            };
            h[e] * n
        })
        .collect()
}

fn aux_selection(cfg: &TrainConfig, dead: &[bool], h: &[f64], b: usize) -> Vec<usize> {
    let ds = cfg.d_sae;
    let n_dead = dead.iter().filter(|x| **x).count();
    let k_aux = (cfg.d_in / 2).min(n_dead);
    let mut idx: Vec<usize> = (0..ds).filter(|&i| dead[i]).collect();
    idx.sort_by(|&a, &c| h[b * ds + c].total_cmp(&h[b * ds + a]).then(a.cmp(&c)));
    idx.truncate(k_aux);
    idx
}

fn aux_scale(cfg: &TrainConfig, dead: &[bool]) -> f64 {
    let n_dead = dead.iter().filter(|x| **x).count() as f64;
    let half = (cfg.d_in / 2) as f64;
    if half == 0.0 {
        1.0
    } else {
        (n_dead / half).min(1.0)
    }
}

fn uses_aux(cfg: &TrainConfig, dead: &[bool]) -> bool {
    matches!(cfg.arch, Arch::TopK | Arch::BatchTopK)
        && cfg.aux_coeff > 0.0
        && dead.iter().any(|x| *x)
}

fn uses_ghost(cfg: &TrainConfig, dead: &[bool]) -> bool {
    cfg.arch == Arch::Standard && cfg.ghost_grads && dead.iter().any(|x| *x)
}

fn sq(v: f64) -> f64 {
    v * v
}

/// The loss; detached quantities from `frozen` when given, else computed (and returned).
pub(crate) fn loss(
    cfg: &TrainConfig,
    p: &P64,
    dead: &[bool],
    lambda: f64,
    x: &[f64],
    frozen: Option<&Frozen>,
) -> (f64, Frozen) {
    let (d, ds) = (cfg.d_in, cfg.d_sae);
    let nb = x.len() / d;
    let bf = nb as f64;
    let fw = forward(cfg, p, x);
    let mut l = (0..nb * d).map(|e| sq(fw.xhat[e] - x[e])).sum::<f64>() / bf;
    let resid: Vec<f64> = match frozen {
        Some(fr) => fr.resid.clone(),
        None => (0..nb * d).map(|e| x[e] - fw.xhat[e]).collect(),
    };
    let mut fz = Frozen {
        resid: resid.clone(),
        ..Default::default()
    };
    let norms: Vec<f64> = (0..ds)
        .map(|i| (0..d).map(|j| sq(p.wd[i * d + j])).sum::<f64>().sqrt())
        .collect();
    match cfg.arch {
        Arch::Standard => {
            let s: f64 = (0..nb * ds).map(|e| fw.f[e] * norms[e % ds]).sum();
            l += lambda * s / bf;
        }
        Arch::JumpRelu => {
            let n = fw.active.iter().filter(|a| **a).count() as f64;
            l += lambda * n / bf;
        }
        _ => {
            for &w in &cfg.matryoshka {
                for b in 0..nb {
                    for j in 0..d {
                        let mut s = p.bd[j];
                        for i in 0..w {
                            s += fw.f[b * ds + i] * p.wd[i * d + j];
                        }
                        l += sq(s - x[b * d + j]) / bf;
                    }
                }
            }
        }
    }
    if uses_aux(cfg, dead) {
        let c = f64::from(cfg.aux_coeff) * aux_scale(cfg, dead);
        for b in 0..nb {
            let sel = aux_selection(cfg, dead, &ranking(cfg, p, &fw.h), b);
            for j in 0..d {
                let mut s = p.bd[j];
                for &i in &sel {
                    s += fw.h[b * ds + i] * p.wd[i * d + j];
                }
                l += c * sq(s - resid[b * d + j]) / bf;
            }
        }
    }
    if uses_ghost(cfg, dead) {
        for b in 0..nb {
            let mut g = vec![0.0; d];
            for i in (0..ds).filter(|&i| dead[i]) {
                for j in 0..d {
                    g[j] += fw.h[b * ds + i].exp() * p.wd[i * d + j];
                }
            }
            let r = &resid[b * d..(b + 1) * d];
            let s = match frozen {
                Some(fr) => fr.ghost_s[b],
                None => {
                    let nr = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let ng = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                    nr / (2.0 * ng + 1e-6)
                }
            };
            let mg: f64 = (0..d).map(|j| sq(s * g[j] - r[j])).sum();
            let w = match frozen {
                Some(fr) => fr.ghost_w[b],
                None => {
                    let mx: f64 = (0..d).map(|j| sq(fw.xhat[b * d + j] - x[b * d + j])).sum();
                    mx / (mg + 1e-6)
                }
            };
            fz.ghost_s.push(s);
            fz.ghost_w.push(w);
            l += w * mg / bf;
        }
    }
    (l, fz)
}

/// Analytic gradients of [`loss`] (JumpReLU's threshold: the paper's pseudo-gradient).
pub(crate) fn grads(cfg: &TrainConfig, p: &P64, dead: &[bool], lambda: f64, x: &[f64]) -> P64 {
    let (d, ds) = (cfg.d_in, cfg.d_sae);
    let nb = x.len() / d;
    let bf = nb as f64;
    let fw = forward(cfg, p, x);
    let (_, fz) = loss(cfg, p, dead, lambda, x, None);
    let mut g = p.zeros();
    let gx: Vec<f64> = (0..nb * d)
        .map(|e| 2.0 / bf * (fw.xhat[e] - x[e]))
        .collect();
    // Gradient w.r.t. f for every (b, i), dense.
    let mut gf = vec![0.0; nb * ds];
    for b in 0..nb {
        for i in 0..ds {
            gf[b * ds + i] = (0..d).map(|j| gx[b * d + j] * p.wd[i * d + j]).sum();
        }
    }
    let mut gh = vec![0.0; nb * ds];
    let dec = |g: &mut P64, b: usize, i: usize, c: f64, v: &[f64]| {
        for j in 0..d {
            g.wd[i * d + j] += c * v[b * d + j];
        }
    };
    for b in 0..nb {
        for i in 0..ds {
            dec(&mut g, b, i, fw.f[b * ds + i], &gx);
        }
        for j in 0..d {
            g.bd[j] += gx[b * d + j];
        }
    }
    match cfg.arch {
        Arch::Standard => {
            for i in 0..ds {
                let n = (0..d).map(|j| sq(p.wd[i * d + j])).sum::<f64>().sqrt();
                let fs: f64 = (0..nb).map(|b| fw.f[b * ds + i]).sum();
                for j in 0..d {
                    g.wd[i * d + j] += lambda * fs / bf * p.wd[i * d + j] / n;
                }
                for b in 0..nb {
                    gf[b * ds + i] += lambda * n / bf;
                }
            }
        }
        Arch::JumpRelu => {
            let eps = f64::from(cfg.bandwidth);
            for b in 0..nb {
                for i in 0..ds {
                    let t = fw.theta[i];
                    let u = (fw.h[b * ds + i] - t) / eps;
                    if u > -0.5 && u < 0.5 {
                        let gt = gf[b * ds + i] * (-t / eps) - lambda / bf / eps;
                        g.lt[i] += gt * t;
                    }
                }
            }
        }
        _ => {
            for &w in &cfg.matryoshka {
                let mut gw = vec![0.0; nb * d];
                for b in 0..nb {
                    for j in 0..d {
                        let mut s = p.bd[j];
                        for i in 0..w {
                            s += fw.f[b * ds + i] * p.wd[i * d + j];
                        }
                        gw[b * d + j] = 2.0 / bf * (s - x[b * d + j]);
                    }
                }
                for b in 0..nb {
                    for i in 0..w {
                        gf[b * ds + i] +=
                            (0..d).map(|j| gw[b * d + j] * p.wd[i * d + j]).sum::<f64>();
                        dec(&mut g, b, i, fw.f[b * ds + i], &gw);
                    }
                    for j in 0..d {
                        g.bd[j] += gw[b * d + j];
                    }
                }
            }
        }
    }
    for e in 0..nb * ds {
        if fw.active[e] {
            gh[e] += gf[e];
        }
    }
    if uses_aux(cfg, dead) {
        let c = f64::from(cfg.aux_coeff) * aux_scale(cfg, dead);
        for b in 0..nb {
            let sel = aux_selection(cfg, dead, &ranking(cfg, p, &fw.h), b);
            let mut rec: Vec<f64> = p.bd.clone();
            for &i in &sel {
                for j in 0..d {
                    rec[j] += fw.h[b * ds + i] * p.wd[i * d + j];
                }
            }
            let mut v = vec![0.0; nb * d];
            for j in 0..d {
                v[b * d + j] = 2.0 * c / bf * (rec[j] - fz.resid[b * d + j]);
                g.bd[j] += v[b * d + j];
            }
            for &i in &sel {
                gh[b * ds + i] += (0..d).map(|j| v[b * d + j] * p.wd[i * d + j]).sum::<f64>();
                dec(&mut g, b, i, fw.h[b * ds + i], &v);
            }
        }
    }
    if uses_ghost(cfg, dead) {
        for b in 0..nb {
            let (s, w) = (fz.ghost_s[b], fz.ghost_w[b]);
            let mut gg = vec![0.0; d];
            for i in (0..ds).filter(|&i| dead[i]) {
                for j in 0..d {
                    gg[j] += fw.h[b * ds + i].exp() * p.wd[i * d + j];
                }
            }
            let mut v = vec![0.0; nb * d];
            for j in 0..d {
                v[b * d + j] = s * 2.0 * w / bf * (s * gg[j] - fz.resid[b * d + j]);
            }
            for i in (0..ds).filter(|&i| dead[i]) {
                let ex = fw.h[b * ds + i].exp();
                gh[b * ds + i] += ex * (0..d).map(|j| v[b * d + j] * p.wd[i * d + j]).sum::<f64>();
                dec(&mut g, b, i, ex, &v);
            }
        }
    }
    for i in 0..ds {
        for b in 0..nb {
            let c = gh[b * ds + i];
            g.be[i] += c;
            for j in 0..d {
                g.we[i * d + j] += c * fw.xc[b * d + j];
                g.bd[j] -= c * p.we[i * d + j];
            }
        }
    }
    g
}

/// Adam moments of the f64 reference.
#[derive(Clone, Debug)]
pub(crate) struct Moments {
    pub(crate) m: P64,
    pub(crate) v: P64,
}

impl Moments {
    pub(crate) fn zeros(p: &P64) -> Moments {
        Moments {
            m: p.zeros(),
            v: p.zeros(),
        }
    }
}

/// One step: gradients, clip to the global norm, Adam at step `t` (from 0).
#[allow(
    clippy::too_many_arguments,
    reason = "the oracle spells out every input"
)]
pub(crate) fn step(
    cfg: &TrainConfig,
    p: &mut P64,
    mo: &mut Moments,
    dead: &[bool],
    x: &[f64],
    t: u64,
    lambda: f64,
    lr: f64,
) {
    let g = grads(cfg, p, dead, lambda, x);
    let norm = g
        .tensors()
        .iter()
        .flat_map(|v| v.iter())
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    let clip = (f64::from(cfg.clip_norm) / (norm + 1e-6)).min(1.0);
    let (b1, b2, eps) = (
        f64::from(cfg.beta1),
        f64::from(cfg.beta2),
        f64::from(cfg.adam_eps),
    );
    let tt = (t + 1) as i32;
    let Moments { m, v } = mo;
    for (((po, gv), mv), vv) in p
        .tensors_mut()
        .into_iter()
        .zip(g.tensors())
        .zip(m.tensors_mut())
        .zip(v.tensors_mut())
    {
        for e in 0..po.len() {
            let gi = gv[e] * clip;
            mv[e] = b1 * mv[e] + (1.0 - b1) * gi;
            vv[e] = b2 * vv[e] + (1.0 - b2) * gi * gi;
            let mh = mv[e] / (1.0 - b1.powi(tt));
            let vh = vv[e] / (1.0 - b2.powi(tt));
            po[e] -= lr * mh / (vh.sqrt() + eps);
        }
    }
}
