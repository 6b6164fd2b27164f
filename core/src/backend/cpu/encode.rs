//! CPU encode: normalise, subtract b_dec, one GEMM whose output pass adds the bias
//! and applies the activation (fused epilogue), then top-k selection per row.

use super::gemm::{MatRef, sgemm_epilogue, sgemm_packed};
use super::kernel::{Isa, PackedB, WeightStorage};
use super::{CpuBackend, par_rows};
use crate::backend::edits::check_finite_output;
use crate::backend::{CodeScale, Denorm, SparseCodes, check_len, preprocess, rows_of};
use crate::error::Result;
use crate::sae::{Architecture, EncLayout, Sae, TopKOrder};

/// W_enc packed once per SAE for one ISA and precision (kept in [`Sae::derived`]).
pub(crate) struct PackedWeights(pub(crate) PackedB);

/// W_enc as a strided `[d_in, d_sae]` view of the mapped file.
fn w_enc_view(sae: &Sae) -> MatRef<'_> {
    let (d, ds) = (sae.d_in(), sae.d_sae());
    let (rs, cs) = match sae.enc_layout {
        EncLayout::InBySae => (ds, 1),
        EncLayout::SaeByIn => (1, d),
    };
    MatRef {
        data: sae.weights().w_enc.as_slice(),
        rows: d,
        cols: ds,
        rs,
        cs,
    }
}

/// Weight matrix `which` (0: W_enc, 1: W_decᵀ) as `view`, packed for `cpu`'s ISA
/// (bf16 or f32), made on first use and cached on the SAE.
pub(crate) fn packed_weights(
    cpu: &CpuBackend,
    sae: &Sae,
    which: u64,
    view: MatRef<'_>,
    bf16: bool,
) -> Result<std::sync::Arc<PackedWeights>> {
    let isa: Isa = cpu.isa();
    let key = 0x5041_434b_0000_0000 | (which << 8) | ((isa as u64) << 1) | bf16 as u64;
    sae.derived(key, || {
        let p = cpu.install(|| PackedB::new(view, isa, bf16))?;
        let bytes = p.bytes();
        Ok((PackedWeights(p), bytes))
    })
}

/// `xc @ W_enc` into `pre` (`[n, d_sae]`), then `epilogue` on each finished tile.
fn encoder_gemm(
    cpu: &CpuBackend,
    sae: &Sae,
    xc: &[f32],
    pre: &mut [f32],
    epilogue: Option<super::kernel::Epilogue<'_>>,
) -> Result<()> {
    let d = sae.d_in();
    let n = xc.len() / d;
    let a = MatRef {
        data: xc,
        rows: n,
        cols: d,
        rs: d,
        cs: 1,
    };
    match cpu.weight_storage() {
        WeightStorage::ZeroCopy => sgemm_epilogue(cpu, a, w_enc_view(sae), pre, epilogue),
        s => {
            let bf16 = s == WeightStorage::PackedBf16;
            let p = packed_weights(cpu, sae, 0, w_enc_view(sae), bf16)?;
            sgemm_packed(cpu, a, &p.0, pre, epilogue)
        }
    }
}

/// The element-wise part of each architecture's activation, for columns
/// `j0..j0 + seg.len()` of one row of `xc @ W_enc` (in place). Top-k selection
/// needs whole rows and runs after the GEMM ([`topk_row`]).
fn activate_segment(sae: &Sae, j0: usize, seg: &mut [f32]) {
    let w = sae.weights();
    let j1 = j0 + seg.len();
    let b = &w.b_enc.as_slice()[j0..j1];
    match sae.config().architecture {
        Architecture::Standard => {
            for (v, b) in seg.iter_mut().zip(b) {
                *v = (*v + b).max(0.0);
            }
        }
        Architecture::JumpRelu => {
            let th = w
                .threshold
                .as_ref()
                .map_or(&[][..], |t| &t.as_slice()[j0..j1]);
            for ((v, b), t) in seg.iter_mut().zip(b).zip(th) {
                let p = *v + b;
                *v = if p > *t { p.max(0.0) } else { 0.0 };
            }
        }
        Architecture::Gated => {
            let er = &sae.exp_r_mag()[j0..j1];
            let bm = w.b_mag.as_ref().map_or(&[][..], |t| &t.as_slice()[j0..j1]);
            for (((v, bg), e), bm) in seg.iter_mut().zip(b).zip(er).zip(bm) {
                let gate = *v + bg > 0.0;
                let mag = (*v * e + bm).max(0.0);
                *v = if gate { mag } else { 0.0 };
            }
        }
        Architecture::TopK { .. } => {
            for (v, b) in seg.iter_mut().zip(b) {
                *v += b;
            }
            if let Some(norms) = CodeScale::of(sae).norms() {
                // Codes in SAE units (`CodeScale`): the pre-activation times ||d_i||.
                seg.iter_mut()
                    .zip(&norms[j0..j1])
                    .for_each(|(v, n)| *v *= n);
            }
        }
    }
}

/// Keep the top-k of `row` (pre-activations) per `order`, zero the rest, in place.
pub(crate) fn topk_row(row: &mut [f32], k: usize, order: TopKOrder, scratch: &mut Vec<u32>) {
    let n = row.len();
    match order {
        TopKOrder::GroupMax => {
            let g = n / k;
            for grp in row.chunks_exact_mut(g) {
                let (mut bi, mut bv) = (0, f32::NEG_INFINITY);
                for (i, v) in grp.iter().enumerate() {
                    if *v > bv {
                        (bi, bv) = (i, *v);
                    }
                }
                grp.fill(0.0);
                grp[bi] = bv.max(0.0);
            }
            return;
        }
        TopKOrder::ReluThenTopK => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        TopKOrder::TopKThenRelu | TopKOrder::Signed => {}
    }
    if k == 0 {
        row.fill(0.0);
        return;
    }
    if k >= n {
        if order == TopKOrder::TopKThenRelu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        return;
    }
    let key = |v: f32| -> f32 {
        if order == TopKOrder::Signed {
            v.abs()
        } else {
            v
        }
    };
    // Descending by key; ties broken by the lower index first.
    let cmp = |a: &u32, b: &u32| {
        key(row[*b as usize])
            .total_cmp(&key(row[*a as usize]))
            .then(a.cmp(b))
    };
    // One pass keeping candidates above the running k-th largest key: every
    // `cap` candidates shrink to the best k, and the k-th becomes the bar. A later
    // element equal to the bar loses the tie (higher index), so only strictly
    // larger keys enter.
    let cap = 4 * k.max(16);
    scratch.clear();
    let mut bar: Option<f32> = None;
    for (i, v) in row.iter().enumerate() {
        let kv = key(*v);
        if bar.is_some_and(|b| kv.total_cmp(&b) != std::cmp::Ordering::Greater) {
            continue;
        }
        scratch.push(i as u32);
        if scratch.len() == cap {
            scratch.select_nth_unstable_by(k - 1, cmp);
            scratch.truncate(k);
            bar = Some(key(row[scratch[k - 1] as usize]));
        }
    }
    if scratch.len() > k {
        scratch.select_nth_unstable_by(k - 1, cmp);
        scratch.truncate(k);
    }
    let kept: Vec<(u32, f32)> = scratch[..k]
        .iter()
        .map(|&i| {
            let v = row[i as usize];
            let v = if order == TopKOrder::TopKThenRelu {
                v.max(0.0)
            } else {
                v
            };
            (i, v)
        })
        .collect();
    row.fill(0.0);
    for (i, v) in kept {
        row[i as usize] = v;
    }
}

pub(super) fn encode_dense(
    cpu: &CpuBackend,
    sae: &Sae,
    x: &[f32],
    out: &mut [f32],
) -> Result<Vec<Denorm>> {
    let n = rows_of(sae, x)?;
    let ds = sae.d_sae();
    check_len("encode output", out.len(), n * ds)?;
    let (xc, denorm) = preprocess(sae, x, n)?;
    // Warm the lazily computed tables before threads race to them.
    let _ = (CodeScale::of(sae).norms(), sae.exp_r_mag());
    let epilogue = |j0: usize, seg: &mut [f32]| activate_segment(sae, j0, seg);
    encoder_gemm(cpu, sae, &xc, out, Some(&epilogue))?;
    if let Architecture::TopK { k, order, .. } = sae.config().architecture {
        par_rows(cpu, out, ds, |_, rows| {
            let mut scratch = Vec::new();
            for row in rows.chunks_exact_mut(ds) {
                topk_row(row, k, order, &mut scratch);
            }
        });
    }
    check_finite_output("encoded features", out, ds)?;
    Ok(denorm)
}

pub(super) fn encode_sparse(cpu: &CpuBackend, sae: &Sae, x: &[f32]) -> Result<SparseCodes> {
    let ds = sae.d_sae();
    let n = rows_of(sae, x)?;
    let mut dense = vec![0.0f32; n * ds];
    let denorm = encode_dense(cpu, sae, x, &mut dense)?;
    Ok(SparseCodes::from_dense(&dense, ds, denorm))
}
