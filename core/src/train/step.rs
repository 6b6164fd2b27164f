//! One forward and backward pass of an SAE in f32, built from the backend's
//! [`TrainOps`]: the encoder pre-activations are the only dense product; every
//! gradient is gathered over the active (and AuxK / ghost) latents only.

use super::{Arch, TrainConfig};
use crate::backend::SparseCodes;
use crate::backend::train_ops::TrainOps;
use crate::error::Result;

/// The trained tensors (also used for gradients and Adam moments). `w_enc_t` is
/// the encoder stored one row per latent (`[d_sae, d_in]`, SAELens's `W_enc`
/// transposed); `log_threshold` is empty except for JumpReLU.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Params {
    pub(crate) w_enc_t: Vec<f32>,
    pub(crate) b_enc: Vec<f32>,
    pub(crate) w_dec: Vec<f32>,
    pub(crate) b_dec: Vec<f32>,
    pub(crate) log_threshold: Vec<f32>,
}

impl Params {
    pub(crate) fn empty() -> Params {
        Params {
            w_enc_t: Vec::new(),
            b_enc: Vec::new(),
            w_dec: Vec::new(),
            b_dec: Vec::new(),
            log_threshold: Vec::new(),
        }
    }

    pub(crate) fn zeros_like(p: &Params) -> Params {
        Params {
            w_enc_t: vec![0.0; p.w_enc_t.len()],
            b_enc: vec![0.0; p.b_enc.len()],
            w_dec: vec![0.0; p.w_dec.len()],
            b_dec: vec![0.0; p.b_dec.len()],
            log_threshold: vec![0.0; p.log_threshold.len()],
        }
    }

    /// The tensors with their checkpoint names.
    pub(crate) fn named(&self) -> [(&'static str, &Vec<f32>); 5] {
        [
            ("w_enc_t", &self.w_enc_t),
            ("b_enc", &self.b_enc),
            ("w_dec", &self.w_dec),
            ("b_dec", &self.b_dec),
            ("log_threshold", &self.log_threshold),
        ]
    }

    pub(crate) fn named_mut(&mut self) -> [(&'static str, &mut Vec<f32>); 5] {
        [
            ("w_enc_t", &mut self.w_enc_t),
            ("b_enc", &mut self.b_enc),
            ("w_dec", &mut self.w_dec),
            ("b_dec", &mut self.b_dec),
            ("log_threshold", &mut self.log_threshold),
        ]
    }
}

/// What one pass measured (losses are those of the scaled activations).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pass {
    pub(crate) loss: f64,
    pub(crate) mse: f64,
    pub(crate) sparsity: f64,
    pub(crate) aux: f64,
    pub(crate) fvu: f64,
    pub(crate) l0: f64,
    /// Latents that fired on this batch.
    pub(crate) fired: Vec<bool>,
    /// BatchTopK: the smallest activation kept (threshold EMA input).
    pub(crate) min_kept: Option<f32>,
}

/// Decoder-gradient contributions (batch row, latent, coefficient) and the
/// `[B, d_in]` vectors they scale.
type DecTerm = (Vec<(u32, u32, f32)>, Vec<f32>);

/// Row `r`'s `k` largest of `h` among `cand` (ties: lower index first), ascending by index.
fn top_k(h: &[f32], cand: &mut Vec<u32>, k: usize) {
    let cmp = |a: &u32, b: &u32| h[*b as usize].total_cmp(&h[*a as usize]).then(a.cmp(b));
    if k == 0 {
        cand.clear();
    } else if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, cmp);
        cand.truncate(k);
    }
    cand.sort_unstable();
}

/// Entries (batch row, latent, value) grouped by latent: a CSR whose rows are
/// latents and whose indices are batch rows (stable: insertion order kept).
fn by_latent(entries: &[(u32, u32, f32)], d_sae: usize) -> SparseCodes {
    let mut counts = vec![0usize; d_sae + 1];
    for &(_, i, _) in entries {
        counts[i as usize + 1] += 1;
    }
    for i in 0..d_sae {
        counts[i + 1] += counts[i];
    }
    let offsets = counts.clone();
    let mut indices = vec![0u32; entries.len()];
    let mut values = vec![0.0f32; entries.len()];
    for &(b, i, v) in entries {
        let at = &mut counts[i as usize];
        indices[*at] = b;
        values[*at] = v;
        *at += 1;
    }
    SparseCodes {
        row_offsets: offsets,
        indices,
        values,
        d_sae: 0,
        denorm: Vec::new(),
    }
}

/// CSR of per-row entry lists.
fn csr(rows: &[Vec<(u32, f32)>], d_sae: usize) -> SparseCodes {
    let mut c = SparseCodes {
        row_offsets: vec![0],
        d_sae,
        ..Default::default()
    };
    for r in rows {
        for &(i, v) in r {
            c.indices.push(i);
            c.values.push(v);
        }
        c.row_offsets.push(c.indices.len());
    }
    c
}

/// `Σ_b rows of v` ([rows, d] summed over rows) added to `acc`.
fn add_col_sums(acc: &mut [f32], v: &[f32], d: usize) {
    for row in v.chunks_exact(d) {
        acc.iter_mut().zip(row).for_each(|(a, x)| *a += x);
    }
}

/// Loss and gradients for the scaled batch `xs` ([B, d_in]) with sparsity
/// coefficient `lambda` (already warmed up), dead latents `dead` and, for
/// BatchTopK, no state (the threshold only matters at inference).
#[cfg(test)]
#[allow(clippy::too_many_arguments, reason = "test entry point")]
pub(crate) fn forward_backward(
    ops: &dyn TrainOps,
    cfg: &TrainConfig,
    p: &Params,
    dead: &[bool],
    lambda: f32,
    xs: &[f32],
    dense: Option<bool>,
) -> Result<(Params, Pass)> {
    let mut g = Params::zeros_like(p);
    let mut h = Vec::new();
    let pass = forward_backward_into(ops, cfg, p, dead, lambda, xs, &mut h, &mut g, dense)?;
    Ok((g, pass))
}

/// [`forward_backward`] into caller-kept buffers (`h` resized; `g` shaped like `p`,
/// overwritten), so a training loop does not fault in fresh pages every step.
/// `dense` forces the dense (GEMM) or sparse (gather) products; `None` picks by
/// the batch's code density.
#[allow(
    clippy::too_many_arguments,
    reason = "the pass's inputs and its two buffers"
)]
pub(crate) fn forward_backward_into(
    ops: &dyn TrainOps,
    cfg: &TrainConfig,
    p: &Params,
    dead: &[bool],
    lambda: f32,
    xs: &[f32],
    h: &mut Vec<f32>,
    g: &mut Params,
    dense: Option<bool>,
) -> Result<Pass> {
    let (d, ds) = (cfg.d_in, cfg.d_sae);
    let nb = xs.len() / d;
    let bf = nb as f32;
    for (_, t) in g.named_mut() {
        t.fill(0.0);
    }
    let mut pass = Pass {
        fired: vec![false; ds],
        ..Default::default()
    };
    // Encoder: h = (x - b_dec) W_enc + b_enc, the one dense GEMM.
    let mut xc = xs.to_vec();
    for row in xc.chunks_exact_mut(d) {
        row.iter_mut().zip(&p.b_dec).for_each(|(x, b)| *x -= b);
    }
    h.resize(nb * ds, 0.0);
    ops.affine_t(&xc, &p.w_enc_t, &p.b_enc, d, &mut h[..])?;
    let h: &[f32] = &h[..];
    let hrow = |b: usize| &h[b * ds..(b + 1) * ds];
    let theta: Vec<f32> = p.log_threshold.iter().map(|l| l.exp()).collect();

    let norms: Vec<f32> = p
        .w_dec
        .chunks_exact(d)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    // TopK/BatchTopK with `rescale_acts_by_decoder_norm` rank h_i·‖W_i‖ (SAELens):
    // the codes h_i·‖W_i‖ are decoded with W_i/‖W_i‖, i.e. x̂ = Σ h_i W_i, so only
    // the selection (and the BatchTopK threshold's units) change.
    let ranked: Option<Vec<f32>> = (cfg.rescale_acts_by_decoder_norm
        && matches!(cfg.arch, Arch::TopK | Arch::BatchTopK))
    .then(|| {
        h.chunks_exact(ds)
            .flat_map(|row| row.iter().zip(&norms).map(|(v, n)| v * n))
            .collect()
    });
    let rk: &[f32] = ranked.as_deref().unwrap_or(h);
    // Activation: per row (latent, f) for the active latents, ascending.
    let mut act: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nb];
    match cfg.arch {
        Arch::Standard => {
            for (b, a) in act.iter_mut().enumerate() {
                a.extend(
                    hrow(b)
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v > 0.0)
                        .map(|(i, v)| (i as u32, *v)),
                );
            }
        }
        Arch::JumpRelu => {
            for (b, a) in act.iter_mut().enumerate() {
                a.extend(
                    hrow(b)
                        .iter()
                        .zip(&theta)
                        .enumerate()
                        .filter(|(_, (v, t))| *v > *t)
                        .map(|(i, (v, _))| (i as u32, *v)),
                );
            }
        }
        Arch::TopK => {
            let k = cfg.k;
            let mut sel = vec![0u32; nb * k];
            ops.top_k_rows(rk, ds, k, &mut sel)?;
            for (b, a) in act.iter_mut().enumerate() {
                let (hr, rr) = (hrow(b), &rk[b * ds..(b + 1) * ds]);
                a.extend(
                    sel[b * k..(b + 1) * k]
                        .iter()
                        .filter(|&&i| rr[i as usize] > 0.0)
                        .map(|&i| (i, hr[i as usize])),
                );
            }
        }
        Arch::BatchTopK => {
            // Top k·B of ReLU(h) over the flattened batch (ties to the lower flat
            // index); zeros dropped. The cut is selected on a copy of the values.
            let want = (cfg.k * nb).min(nb * ds);
            let mut vals: Vec<f32> = rk.iter().map(|v| v.max(0.0)).collect();
            let (_, kth, _) = vals.select_nth_unstable_by(want - 1, |a, b| b.total_cmp(a));
            let kth = *kth;
            drop(vals);
            let above = rk.iter().filter(|v| v.max(0.0) > kth).count();
            let mut ties = want - above;
            let mut min_kept: Option<f32> = None;
            for (e, &v) in rk.iter().enumerate() {
                let r = v.max(0.0);
                let take = r > kth
                    || (r == kth && ties > 0 && {
                        ties -= 1;
                        true
                    });
                if take && v > 0.0 {
                    act[e / ds].push(((e % ds) as u32, h[e]));
                    min_kept = Some(min_kept.map_or(v, |m: f32| m.min(v)));
                }
            }
            pass.min_kept = min_kept;
        }
    }
    let act_c = csr(&act, ds);
    // Codes denser than 1/32 (a ReLU SAE early in training) take dense GEMMs.
    let dense = dense.unwrap_or(act_c.indices.len() * 32 > nb * ds);
    let f_dense = dense.then(|| {
        let mut f = vec![0.0f32; nb * ds];
        for (b, a) in act.iter().enumerate() {
            for &(i, v) in a {
                f[b * ds + i as usize] = v;
            }
        }
        f
    });
    for &i in &act_c.indices {
        pass.fired[i as usize] = true;
    }
    pass.l0 = act_c.indices.len() as f64 / nb as f64;

    // Decode and the reconstruction loss.
    let mut xhat = vec![0.0f32; nb * d];
    for row in xhat.chunks_exact_mut(d) {
        row.copy_from_slice(&p.b_dec);
    }
    match &f_dense {
        Some(f) => ops.matmul(f, ds, false, &p.w_dec, &mut xhat, true)?,
        None => ops.gather_add(&act_c, &p.w_dec, d, &mut xhat)?,
    }
    let mut gx = vec![0.0f32; nb * d];
    let mut sse = 0.0f64;
    for ((gv, &xh), &x) in gx.iter_mut().zip(&xhat).zip(xs) {
        let r = xh - x;
        sse += f64::from(r) * f64::from(r);
        *gv = 2.0 / bf * r;
    }
    pass.mse = sse / nb as f64;
    let mut mean = vec![0.0f64; d];
    for row in xs.chunks_exact(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &x)| *m += f64::from(x));
    }
    mean.iter_mut().for_each(|m| *m /= nb as f64);
    let var: f64 = xs
        .chunks_exact(d)
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&x, m)| (f64::from(x) - m).powi(2))
                .sum::<f64>()
        })
        .sum();
    pass.fvu = if var > 0.0 { sse / var } else { 0.0 };

    // Gradient reaching each active latent's f.
    let mut gf = vec![0.0f32; act_c.indices.len()];
    if dense {
        let mut gd = vec![0.0f32; nb * ds];
        ops.affine_t(&gx, &p.w_dec, &vec![0.0; ds], d, &mut gd)?;
        let mut e = 0;
        for (b, a) in act.iter().enumerate() {
            for &(i, _) in a {
                gf[e] = gd[b * ds + i as usize];
                e += 1;
            }
        }
    } else {
        ops.row_dots(&act_c, &p.w_dec, &gx, d, &mut gf)?;
    }
    add_col_sums(&mut g.b_dec, &gx, d);
    // Decoder terms: (entries by latent, the residual-gradient vectors they scale).
    let mut dec_terms: Vec<DecTerm> = Vec::new();
    let act_entries = |filter: &dyn Fn(u32) -> bool| -> Vec<(u32, u32, f32)> {
        let mut v = Vec::new();
        for (b, a) in act.iter().enumerate() {
            for &(i, f) in a {
                if filter(i) {
                    v.push((b as u32, i, f));
                }
            }
        }
        v
    };
    let mut enc: Vec<(u32, u32, f32)> = Vec::new();

    match cfg.arch {
        Arch::Standard => {
            // λ · mean_B Σ f_i ‖W_i‖.
            let mut fsum = vec![0.0f32; ds];
            let mut sp = 0.0f64;
            for (b, a) in act.iter().enumerate() {
                let _ = b;
                for &(i, f) in a {
                    fsum[i as usize] += f;
                    sp += f64::from(f) * f64::from(norms[i as usize]);
                }
            }
            pass.sparsity = f64::from(lambda) * sp / nb as f64;
            for (e, &i) in act_c.indices.iter().enumerate() {
                gf[e] += lambda * norms[i as usize] / bf;
            }
            for i in 0..ds {
                if fsum[i] != 0.0 && norms[i] > 0.0 {
                    let c = lambda * fsum[i] / bf / norms[i];
                    let (w, gw) = (
                        &p.w_dec[i * d..(i + 1) * d],
                        &mut g.w_dec[i * d..(i + 1) * d],
                    );
                    gw.iter_mut().zip(w).for_each(|(g, w)| *g += c * w);
                }
            }
            let n_dead = dead.iter().filter(|x| **x).count();
            if cfg.ghost_grads && n_dead > 0 {
                pass.aux = ghost(ops, p, dead, h, xs, &xhat, d, ds, &mut enc, &mut dec_terms)?;
            }
        }
        Arch::JumpRelu => {
            // Step L0: λ · mean_B Σ H(h − θ); pseudo-gradients on the rectangle window.
            pass.sparsity = f64::from(lambda) * pass.l0;
            let eps = cfg.bandwidth;
            let mut win: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nb];
            for (b, w) in win.iter_mut().enumerate() {
                for (i, (&v, &t)) in hrow(b).iter().zip(&theta).enumerate() {
                    let u = (v - t) / eps;
                    if u > -0.5 && u < 0.5 {
                        w.push((i as u32, 0.0));
                    }
                }
            }
            let win_c = csr(&win, ds);
            let mut gfw = vec![0.0f32; win_c.indices.len()];
            ops.row_dots(&win_c, &p.w_dec, &gx, d, &mut gfw)?;
            for (e, &i) in win_c.indices.iter().enumerate() {
                let t = theta[i as usize];
                let gt = gfw[e] * (-t / eps) - lambda / bf / eps;
                g.log_threshold[i as usize] += gt * t;
            }
        }
        Arch::TopK | Arch::BatchTopK => {
            // Matryoshka: nested prefixes reconstruct on their own too.
            for &w in &cfg.matryoshka {
                let w = w as u32;
                let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nb];
                let mut pos: Vec<usize> = Vec::new();
                let mut e = 0;
                for (b, a) in act.iter().enumerate() {
                    for &(i, f) in a {
                        if i < w {
                            rows[b].push((i, f));
                            pos.push(e);
                        }
                        e += 1;
                    }
                }
                let sub = csr(&rows, ds);
                let mut xw = vec![0.0f32; nb * d];
                for row in xw.chunks_exact_mut(d) {
                    row.copy_from_slice(&p.b_dec);
                }
                ops.gather_add(&sub, &p.w_dec, d, &mut xw)?;
                let mut s = 0.0f64;
                for (v, &x) in xw.iter_mut().zip(xs) {
                    let r = *v - x;
                    s += f64::from(r) * f64::from(r);
                    *v = 2.0 / bf * r;
                }
                pass.aux += s / nb as f64;
                let mut gs = vec![0.0f32; sub.indices.len()];
                ops.row_dots(&sub, &p.w_dec, &xw, d, &mut gs)?;
                for (j, &e) in pos.iter().enumerate() {
                    gf[e] += gs[j];
                }
                add_col_sums(&mut g.b_dec, &xw, d);
                dec_terms.push((act_entries(&|i| i < w), xw));
            }
            let n_dead = dead.iter().filter(|x| **x).count();
            if cfg.aux_coeff > 0.0 && n_dead > 0 {
                pass.aux += auxk(
                    ops,
                    cfg,
                    p,
                    dead,
                    n_dead,
                    h,
                    rk,
                    xs,
                    &xhat,
                    g,
                    &mut enc,
                    &mut dec_terms,
                )?;
            }
        }
    }
    // The main term's decoder contributions and the active latents' encoder gradients
    // (∂f/∂h = 1 on the active set for every architecture).
    match &f_dense {
        Some(f) => ops.matmul(f, nb, true, &gx, &mut g.w_dec, true)?,
        None => dec_terms.push((act_entries(&|_| true), gx)),
    }
    let mut main_enc = Vec::with_capacity(gf.len() + enc.len());
    let mut e = 0;
    for (b, a) in act.iter().enumerate() {
        for &(i, _) in a {
            main_enc.push((b as u32, i, gf[e]));
            e += 1;
        }
    }
    main_enc.extend(enc);

    // Scatter: dW_dec[i] = Σ coeff · vec[b]; dW_enc^T[i] = Σ g_h · (x − b_dec)[b].
    for (entries, vecs) in &dec_terms {
        let c = by_latent(entries, ds);
        ops.gather_add(&c, vecs, d, &mut g.w_dec)?;
    }
    if dense {
        let mut gh = vec![0.0f32; nb * ds];
        for &(b, i, v) in &main_enc {
            gh[b as usize * ds + i as usize] += v;
        }
        ops.matmul(&gh, nb, true, &xc, &mut g.w_enc_t, false)?;
        for row in gh.chunks_exact(ds) {
            g.b_enc.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
    } else {
        let c = by_latent(&main_enc, ds);
        ops.gather_add(&c, &xc, d, &mut g.w_enc_t)?;
        for i in 0..ds {
            let (a, z) = (c.row_offsets[i], c.row_offsets[i + 1]);
            g.b_enc[i] = c.values[a..z].iter().sum();
        }
    }
    // h depends on b_dec through x − b_dec: −Σ_i db_enc[i] · W_enc^T[i].
    let nz: Vec<(u32, f32)> = g
        .b_enc
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, v)| (i as u32, -*v))
        .collect();
    ops.gather_add(&csr(&[nz], ds), &p.w_enc_t, d, &mut g.b_dec)?;
    pass.loss = pass.mse + pass.sparsity + pass.aux;
    Ok(pass)
}

/// AuxK: the top `min(d_in/2, n_dead)` dead pre-activations (no ReLU) reconstruct
/// the residual `x − x̂` (detached). Returns the loss; adds the gradients.
#[allow(clippy::too_many_arguments, reason = "one call site, the pass's state")]
fn auxk(
    ops: &dyn TrainOps,
    cfg: &TrainConfig,
    p: &Params,
    dead: &[bool],
    n_dead: usize,
    h: &[f32],
    rk: &[f32],
    xs: &[f32],
    xhat: &[f32],
    g: &mut Params,
    enc: &mut Vec<(u32, u32, f32)>,
    dec_terms: &mut Vec<DecTerm>,
) -> Result<f64> {
    let (d, ds) = (cfg.d_in, cfg.d_sae);
    let nb = xs.len() / d;
    let half = d / 2;
    let k_aux = half.min(n_dead);
    let scale = if half == 0 {
        1.0
    } else {
        (n_dead as f32 / half as f32).min(1.0)
    };
    let dead_ids: Vec<u32> = (0..ds as u32).filter(|&i| dead[i as usize]).collect();
    let mut rows = vec![Vec::new(); nb];
    let mut cand = Vec::with_capacity(dead_ids.len());
    for (b, r) in rows.iter_mut().enumerate() {
        let hr = &h[b * ds..(b + 1) * ds];
        cand.clear();
        cand.extend_from_slice(&dead_ids);
        top_k(&rk[b * ds..(b + 1) * ds], &mut cand, k_aux);
        r.extend(cand.iter().map(|&i| (i, hr[i as usize])));
    }
    let c = csr(&rows, ds);
    let mut rec = vec![0.0f32; nb * d];
    for row in rec.chunks_exact_mut(d) {
        row.copy_from_slice(&p.b_dec);
    }
    ops.gather_add(&c, &p.w_dec, d, &mut rec)?;
    let coef = cfg.aux_coeff * scale;
    let mut s = 0.0f64;
    for ((v, &xh), &x) in rec.iter_mut().zip(xhat).zip(xs) {
        let r = *v - (x - xh);
        s += f64::from(r) * f64::from(r);
        *v = 2.0 * coef / nb as f32 * r;
    }
    let mut ga = vec![0.0f32; c.indices.len()];
    ops.row_dots(&c, &p.w_dec, &rec, d, &mut ga)?;
    let mut e = 0;
    let mut dec = Vec::with_capacity(c.indices.len());
    for (b, r) in rows.iter().enumerate() {
        for &(i, a) in r {
            enc.push((b as u32, i, ga[e]));
            dec.push((b as u32, i, a));
            e += 1;
        }
    }
    add_col_sums(&mut g.b_dec, &rec, d);
    dec_terms.push((dec, rec));
    Ok(f64::from(coef) * s / nb as f64)
}

/// Ghost grads (Anthropic, Jan 2024) for the dead latents of a standard SAE.
/// Returns the loss; adds the gradients.
#[allow(clippy::too_many_arguments, reason = "one call site, the pass's state")]
fn ghost(
    ops: &dyn TrainOps,
    p: &Params,
    dead: &[bool],
    h: &[f32],
    xs: &[f32],
    xhat: &[f32],
    d: usize,
    ds: usize,
    enc: &mut Vec<(u32, u32, f32)>,
    dec_terms: &mut Vec<DecTerm>,
) -> Result<f64> {
    let nb = xs.len() / d;
    let dead_ids: Vec<u32> = (0..ds as u32).filter(|&i| dead[i as usize]).collect();
    let rows: Vec<Vec<(u32, f32)>> = (0..nb)
        .map(|b| {
            dead_ids
                .iter()
                .map(|&i| (i, h[b * ds + i as usize].exp()))
                .collect()
        })
        .collect();
    let c = csr(&rows, ds);
    let mut gv = vec![0.0f32; nb * d];
    ops.gather_add(&c, &p.w_dec, d, &mut gv)?;
    let mut loss = 0.0f64;
    for b in 0..nb {
        let (x, xh) = (&xs[b * d..(b + 1) * d], &xhat[b * d..(b + 1) * d]);
        let gb = &mut gv[b * d..(b + 1) * d];
        let r = |j: usize| x[j] - xh[j];
        let nr = (0..d).map(|j| r(j) * r(j)).sum::<f32>().sqrt();
        let ng = gb.iter().map(|v| v * v).sum::<f32>().sqrt();
        let s = nr / (2.0 * ng + 1e-6);
        let mg: f32 = (0..d).map(|j| (s * gb[j] - r(j)).powi(2)).sum();
        let mx: f32 = (0..d).map(|j| (xh[j] - x[j]).powi(2)).sum();
        let w = mx / (mg + 1e-6);
        loss += f64::from(w) * f64::from(mg);
        // ∂L/∂g_b = s · (2w/B) · (s·g_b − r_b)
        let c2 = s * 2.0 * w / nb as f32;
        for (j, v) in gb.iter_mut().enumerate() {
            *v = c2 * (s * *v - r(j));
        }
    }
    let mut dots = vec![0.0f32; c.indices.len()];
    ops.row_dots(&c, &p.w_dec, &gv, d, &mut dots)?;
    let mut e = 0;
    let mut dec = Vec::with_capacity(c.indices.len());
    for (b, r) in rows.iter().enumerate() {
        for &(i, ex) in r {
            enc.push((b as u32, i, ex * dots[e]));
            dec.push((b as u32, i, ex));
            e += 1;
        }
    }
    dec_terms.push((dec, gv));
    Ok(loss / nb as f64)
}
