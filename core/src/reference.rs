//! Plain f64 loops straight from FORMATS.md: the oracle for every kernel. Slow on
//! purpose; shares no code with the backends.

use crate::sae::{Architecture, Normalization, Sae, TopKOrder};

/// Encoder matrix element (input dim `j`, feature `i`), whatever the layout.
fn w_enc(sae: &Sae, j: usize, i: usize) -> f64 {
    let w = sae.weights();
    let s = w.w_enc.as_slice();
    if w.w_enc_transposed {
        s[i * sae.d_in() + j] as f64
    } else {
        s[j * sae.d_sae() + i] as f64
    }
}

/// Normalised, centred input and (scale, shift) to undo the normalisation.
fn prep(sae: &Sae, x: &[f32]) -> (Vec<f64>, (f64, f64)) {
    let d = x.len();
    let mut v: Vec<f64> = x.iter().map(|&a| a as f64).collect();
    let mut dn = (1.0, 0.0);
    match sae.config().normalization {
        Normalization::None => {}
        Normalization::ConstantNormRescale => {
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let s = (d as f64).sqrt() / norm;
            v.iter_mut().for_each(|a| *a *= s);
            dn = (1.0 / s, 0.0);
        }
        Normalization::LayerNorm => {
            let mu = v.iter().sum::<f64>() / d as f64;
            let var = v.iter().map(|a| (a - mu) * (a - mu)).sum::<f64>() / (d as f64 - 1.0);
            let sd = var.sqrt();
            v.iter_mut().for_each(|a| *a = (*a - mu) / (sd + 1e-5));
            dn = (sd, mu);
        }
    }
    if sae.config().apply_b_dec_to_input {
        for (a, b) in v.iter_mut().zip(sae.weights().b_dec.as_slice()) {
            *a -= *b as f64;
        }
    }
    (v, dn)
}

fn norm_row(sae: &Sae, i: usize) -> f64 {
    let d = sae.d_in();
    sae.weights().w_dec.as_slice()[i * d..(i + 1) * d]
        .iter()
        .map(|&a| (a as f64) * (a as f64))
        .sum::<f64>()
        .sqrt()
}

/// Encode one row in f64; returns the dense code and the denormalisation.
pub fn encode_row(sae: &Sae, x: &[f32]) -> (Vec<f64>, (f64, f64)) {
    let (d, n) = (sae.d_in(), sae.d_sae());
    let (xc, dn) = prep(sae, x);
    let w = sae.weights();
    let b = |t: &crate::weights::Tensor, i: usize| t.as_slice()[i] as f64;
    let dot = |i: usize| (0..d).map(|j| xc[j] * w_enc(sae, j, i)).sum::<f64>();
    let mut f = vec![0.0f64; n];
    match sae.config().architecture {
        Architecture::Standard => {
            for (i, fi) in f.iter_mut().enumerate() {
                *fi = (dot(i) + b(&w.b_enc, i)).max(0.0);
            }
        }
        Architecture::JumpRelu => {
            let th = w.threshold.as_ref().expect("jumprelu has a threshold");
            for (i, fi) in f.iter_mut().enumerate() {
                let p = dot(i) + b(&w.b_enc, i);
                *fi = if p > b(th, i) { p.max(0.0) } else { 0.0 };
            }
        }
        Architecture::Gated => {
            let (rm, bm) = (
                w.r_mag.as_ref().expect("r_mag"),
                w.b_mag.as_ref().expect("b_mag"),
            );
            for (i, fi) in f.iter_mut().enumerate() {
                let gate = dot(i) + b(&w.b_enc, i) > 0.0;
                // x (W_enc ⊙ exp(r_mag)) + b_mag, column by column.
                let mag = (0..d)
                    .map(|j| xc[j] * w_enc(sae, j, i) * b(rm, i).exp())
                    .sum::<f64>()
                    + b(bm, i);
                *fi = if gate { mag.max(0.0) } else { 0.0 };
            }
        }
        Architecture::TopK {
            k,
            order,
            rescale_by_decoder_norm,
        } => {
            let mut p: Vec<f64> = (0..n).map(|i| dot(i) + b(&w.b_enc, i)).collect();
            if rescale_by_decoder_norm {
                for (i, v) in p.iter_mut().enumerate() {
                    *v *= norm_row(sae, i);
                }
            }
            match order {
                TopKOrder::GroupMax => {
                    let g = n / k;
                    for grp in 0..k {
                        let r = grp * g..(grp + 1) * g;
                        let best = r
                            .clone()
                            .max_by(|&a, &b2| {
                                p[a].max(0.0).total_cmp(&p[b2].max(0.0)).then(b2.cmp(&a))
                            })
                            .expect("non-empty group");
                        f[best] = p[best].max(0.0);
                    }
                }
                _ => {
                    let key = |v: f64| match order {
                        TopKOrder::ReluThenTopK => v.max(0.0),
                        TopKOrder::Signed => v.abs(),
                        _ => v,
                    };
                    let mut idx: Vec<usize> = (0..n).collect();
                    idx.sort_by(|&a, &b2| key(p[b2]).total_cmp(&key(p[a])).then(a.cmp(&b2)));
                    for &i in idx.iter().take(k) {
                        f[i] = if order == TopKOrder::Signed {
                            p[i]
                        } else {
                            p[i].max(0.0)
                        };
                    }
                }
            }
        }
    }
    (f, dn)
}

/// Decode one dense f64 code, applying the denormalisation.
pub fn decode_row(sae: &Sae, f: &[f64], dn: (f64, f64)) -> Vec<f64> {
    let d = sae.d_in();
    let w = sae.weights();
    let wd = w.w_dec.as_slice();
    let rescale = matches!(
        sae.config().architecture,
        Architecture::TopK {
            rescale_by_decoder_norm: true,
            ..
        }
    );
    (0..d)
        .map(|j| {
            let mut y = w.b_dec.as_slice()[j] as f64;
            for (i, &fi) in f.iter().enumerate() {
                if fi != 0.0 {
                    let c = if rescale { fi / norm_row(sae, i) } else { fi };
                    y += c * wd[i * d + j] as f64;
                }
            }
            y * dn.0 + dn.1
        })
        .collect()
}

/// Encode a batch: dense `[n, d_sae]`.
pub fn encode(sae: &Sae, x: &[f32]) -> Vec<f64> {
    x.chunks_exact(sae.d_in())
        .flat_map(|r| encode_row(sae, r).0)
        .collect()
}

/// Encode then decode a batch: `[n, d_in]`.
pub fn reconstruct(sae: &Sae, x: &[f32]) -> Vec<f64> {
    x.chunks_exact(sae.d_in())
        .flat_map(|r| {
            let (f, dn) = encode_row(sae, r);
            decode_row(sae, &f, dn)
        })
        .collect()
}
