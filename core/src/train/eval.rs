//! Evaluation of an SAE on stored activations (docs/TRAINING.md "Evaluation"):
//! L0, the centred FVU, dead and dense latents and the log10 feature-density
//! histogram, the same definitions as `saeplug-llama eval` (which adds the
//! engine's CE/KL with the SAE spliced in).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::sae::Sae;

use super::ActivationSource;

/// Width of a bin of [`EvalStats::histogram`], in decades.
///
/// ```
/// assert_eq!(saeplug::train::DENSITY_BIN_WIDTH, 0.1);
/// ```
pub const DENSITY_BIN_WIDTH: f64 = 0.1;

/// What [`evaluate`] measured over the rows it read.
///
/// ```
/// let s = saeplug::train::EvalStats::default();
/// assert_eq!(s.rows, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalStats {
    /// Rows evaluated.
    pub rows: u64,
    /// Mean number of latents with `f > 0` per row.
    pub l0: f64,
    /// Fraction of variance unexplained, centred: `Σ‖x − x̂‖² / Σ_d Σ_rows (x_d − mean_d)²`
    /// (explained variance = 1 − FVU).
    pub fvu: f64,
    /// Mean squared error per element.
    pub mse: f64,
    /// Latents that never fired on these rows.
    pub dead: usize,
    /// Latents firing on more than 10% of the rows.
    pub dense: usize,
    /// Rows on which each latent fired (`f_i > 0`), `d_sae` long.
    pub fired: Vec<u64>,
    /// Lower edge of the first histogram bin: `floor(log10(1 / rows))`.
    pub histogram_lo: f64,
    /// Live latents per 0.1-decade bin of log10 density, from `histogram_lo` to 0
    /// (the last bin holds density 1).
    pub histogram: Vec<u64>,
}

/// Evaluate `sae` on the first `max_rows` rows of `src` (0: all of them), read and
/// encoded `chunk` rows at a time on `backend`; sums in f64.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::train::{MatrixSource, evaluate};
/// let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 1)?;
/// let x = saeplug::synthetic::Rng::new(2).normal_vec(50 * 8, 1.0);
/// let src = MatrixSource::new(x, 8)?;
/// let s = evaluate(&saeplug::CpuBackend::new(1), &sae, &src, 0, 16)?;
/// assert_eq!(s.rows, 50);
/// assert_eq!(s.histogram.iter().sum::<u64>() as usize, 32 - s.dead);
/// # Ok(()) }
/// ```
pub fn evaluate(
    backend: &dyn Backend,
    sae: &Sae,
    src: &dyn ActivationSource,
    max_rows: usize,
    chunk: usize,
) -> Result<EvalStats> {
    let (d, m) = (sae.d_in(), sae.d_sae());
    if src.d_in() != d {
        return Err(Error::invalid(format!(
            "the activations have d_in {} but the SAE's d_in is {d}",
            src.d_in()
        )));
    }
    let n = if max_rows == 0 {
        src.n_rows()
    } else {
        max_rows.min(src.n_rows())
    };
    if n == 0 {
        return Err(Error::invalid("no rows to evaluate on"));
    }
    let chunk = chunk.clamp(1, n);
    let mut x = vec![0.0f32; chunk * d];
    let mut f = vec![0.0f32; chunk * m];
    let mut xh = vec![0.0f32; chunk * d];
    let (mut mean, mut m2) = (vec![0.0f64; d], vec![0.0f64; d]);
    let mut fired = vec![0u64; m];
    let (mut l0_sum, mut err_sum, mut seen) = (0.0f64, 0.0f64, 0u64);
    let mut at = 0;
    while at < n {
        let r = chunk.min(n - at);
        let (x, f, xh) = (&mut x[..r * d], &mut f[..r * m], &mut xh[..r * d]);
        src.rows(at, x)?;
        if let Some(p) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                row: at + p / d,
                col: p % d,
                value: x[p],
            });
        }
        let denorm = backend.encode(sae, x, f)?;
        backend.decode(sae, f, &denorm, xh)?;
        for ((xr, fr), hr) in x
            .chunks_exact(d)
            .zip(f.chunks_exact(m))
            .zip(xh.chunks_exact(d))
        {
            for (c, v) in fired.iter_mut().zip(fr) {
                if *v > 0.0 {
                    *c += 1;
                    l0_sum += 1.0;
                }
            }
            seen += 1;
            let inv = 1.0 / seen as f64;
            for j in 0..d {
                let (xv, hv) = (f64::from(xr[j]), f64::from(hr[j]));
                err_sum += (xv - hv) * (xv - hv);
                let delta = xv - mean[j];
                mean[j] += delta * inv;
                m2[j] += delta * (xv - mean[j]);
            }
        }
        at += r;
    }
    let rows = seen as f64;
    let var: f64 = m2.iter().sum();
    let dead = fired.iter().filter(|c| **c == 0).count();
    let dense = fired.iter().filter(|c| **c as f64 / rows > 0.1).count();
    let lo = (1.0 / rows).log10().floor();
    let bins = ((-lo / DENSITY_BIN_WIDTH).round() as usize).max(1);
    let mut histogram = vec![0u64; bins];
    for &c in fired.iter().filter(|c| **c > 0) {
        let b = (((c as f64 / rows).log10() - lo) / DENSITY_BIN_WIDTH).floor();
        histogram[(b.max(0.0) as usize).min(bins - 1)] += 1;
    }
    Ok(EvalStats {
        rows: seen,
        l0: l0_sum / rows,
        fvu: err_sum / var,
        mse: err_sum / (rows * d as f64),
        dead,
        dense,
        fired,
        histogram_lo: lo,
        histogram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::MatrixSource;

    /// An independent f64 evaluation of a ReLU SAE from its weights: two-pass
    /// mean and variance, the encoder and decoder as plain loops.
    #[test]
    fn matches_an_f64_reference() {
        let (d, m, n) = (12usize, 40usize, 203usize);
        let sae =
            crate::synthetic::random_sae(d, m, crate::Architecture::Standard, 5).expect("sae");
        let x = crate::synthetic::Rng::new(9).normal_vec(n * d, 1.5);
        let x: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % d) as f32 * 0.3)
            .collect();
        let src = MatrixSource::new(x.clone(), d).expect("src");
        let got = evaluate(&crate::CpuBackend::new(2), &sae, &src, 0, 17).expect("eval");
        let w = sae.weights();
        let (we, be, wd, bd) = (
            w.w_enc.as_slice(),
            w.b_enc.as_slice(),
            w.w_dec.as_slice(),
            w.b_dec.as_slice(),
        );
        assert!(!w.w_enc_transposed);
        let mut mean = vec![0.0f64; d];
        for r in x.chunks_exact(d) {
            for j in 0..d {
                mean[j] += f64::from(r[j]) / n as f64;
            }
        }
        let (mut err, mut var, mut l0) = (0.0f64, 0.0f64, 0.0f64);
        let mut fired = vec![0u64; m];
        for r in x.chunks_exact(d) {
            let xc: Vec<f64> = (0..d).map(|j| f64::from(r[j]) - f64::from(bd[j])).collect();
            let mut xh: Vec<f64> = bd.iter().map(|v| f64::from(*v)).collect();
            for i in 0..m {
                let h: f64 = f64::from(be[i])
                    + (0..d)
                        .map(|j| xc[j] * f64::from(we[j * m + i]))
                        .sum::<f64>();
                if h > 0.0 {
                    l0 += 1.0;
                    fired[i] += 1;
                    for j in 0..d {
                        xh[j] += h * f64::from(wd[i * d + j]);
                    }
                }
            }
            for j in 0..d {
                err += (f64::from(r[j]) - xh[j]).powi(2);
                var += (f64::from(r[j]) - mean[j]).powi(2);
            }
        }
        let fvu = err / var;
        assert!(
            (got.fvu - fvu).abs() < 1e-5 * fvu.max(1.0),
            "{} vs {fvu}",
            got.fvu
        );
        assert!(
            (got.l0 - l0 / n as f64).abs() < 1e-3,
            "{} vs {}",
            got.l0,
            l0
        );
        assert!(fvu > 0.01, "a trivial case: {fvu}");
        // Firing counts may differ only for pre-activations within f32 rounding of 0.
        let diff: u64 = got
            .fired
            .iter()
            .zip(&fired)
            .map(|(a, b)| a.abs_diff(*b))
            .sum();
        assert!(diff <= 2, "{:?} vs {fired:?}", got.fired);
        let dead = fired.iter().filter(|c| **c == 0).count();
        let dense = fired.iter().filter(|c| **c * 10 > n as u64).count();
        assert_eq!((got.dead, got.dense), (dead, dense));
        // 203 rows: bins of 0.1 decade from -3 to 0.
        assert_eq!((got.histogram_lo, got.histogram.len()), (-3.0, 30));
        let mut hist = [0u64; 30];
        for c in fired.iter().filter(|c| **c > 0) {
            let b = (((*c as f64 / n as f64).log10() + 3.0) / 0.1).floor() as usize;
            hist[b.min(29)] += 1;
        }
        assert_eq!(got.histogram, hist);
        // max_rows reads a prefix.
        let part = evaluate(&crate::CpuBackend::new(1), &sae, &src, 50, 1000).expect("eval");
        assert_eq!(part.rows, 50);
        assert!(
            evaluate(
                &crate::CpuBackend::new(1),
                &sae,
                &MatrixSource::new(vec![0.0; 5], 5).expect("m"),
                0,
                8
            )
            .is_err()
        );
    }
}
