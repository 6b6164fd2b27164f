//! The CPU GEMM: packed operands and a register-blocked micro-kernel per vector ISA
//! (AVX-512F, AVX2+FMA, NEON, portable Rust), picked at run time.
//!
//! `c[m, n] (+)= a[m, k] @ b[k, n]` is computed Goto/BLIS style:
//! - `b` is cut into column panels of `NR` columns (the micro-kernel's width); each
//!   panel is stored `[k][NR]` contiguously, either once per SAE ([`PackedB`], the
//!   encoder's weights, optionally as bf16) or a `KC`-row slice at a time from any
//!   strided matrix (changing operands, e.g. weights in training).
//! - `a` is packed per block of rows into micro-panels `[k][MR]`.
//! - the micro-kernel keeps an `MR x NR` tile of `c` in registers over a `KC` slice
//!   of `k`, streaming the `b` panel from memory once and re-reading it from L1 for
//!   every micro-panel of `a`.
//! - threads own disjoint ranges of column panels, so every thread streams its own
//!   part of `b` once; an epilogue (bias, activation) runs on each finished tile
//!   while it is still in L1.
//!
//! The ISA is the best the CPU has, unless `SAEPLUG_CPU_ISA` (`avx512`, `avx2`,
//! `neon`, `portable`) or [`crate::CpuBackend::with_isa`] forces a level.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
mod portable;
pub mod roofline;

use crate::error::{Error, Result};

/// A vector instruction-set level for the CPU kernels.
///
/// ```
/// use saeplug::backend::cpu::Isa;
/// let best = Isa::detected();
/// assert!(best.is_available());
/// assert!(Isa::available().contains(&Isa::Portable));
/// assert_eq!(Isa::parse(best.name()), Some(best));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust (auto-vectorised by the compiler for the build's baseline).
    Portable,
    /// 128-bit NEON (aarch64).
    Neon,
    /// 256-bit AVX2 with FMA (x86-64).
    Avx2,
    /// 512-bit AVX-512F (x86-64).
    Avx512,
}

/// The environment variable that forces an ISA level.
///
/// ```
/// assert_eq!(saeplug::backend::cpu::ISA_ENV, "SAEPLUG_CPU_ISA");
/// ```
pub const ISA_ENV: &str = "SAEPLUG_CPU_ISA";

impl Isa {
    /// Every level, slowest first.
    ///
    /// ```
    /// use saeplug::backend::cpu::Isa;
    /// assert_eq!(Isa::ALL.first(), Some(&Isa::Portable));
    /// ```
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// Its name, as [`Isa::parse`] and `SAEPLUG_CPU_ISA` take it.
    ///
    /// ```
    /// assert_eq!(saeplug::backend::cpu::Isa::Avx2.name(), "avx2");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The level named `s` (case-insensitive).
    ///
    /// ```
    /// use saeplug::backend::cpu::Isa;
    /// assert_eq!(Isa::parse("AVX512"), Some(Isa::Avx512));
    /// assert_eq!(Isa::parse("sse9"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Isa> {
        let s = s.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|i| i.name() == s)
    }

    /// Whether this CPU can run the level.
    ///
    /// ```
    /// assert!(saeplug::backend::cpu::Isa::Portable.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns, reason = "the arms present depend on the target")]
            _ => false,
        }
    }

    /// The levels this CPU can run, slowest first.
    ///
    /// ```
    /// let all = saeplug::backend::cpu::Isa::available();
    /// assert_eq!(all.last().copied(), Some(saeplug::backend::cpu::Isa::detected()));
    /// ```
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest level this CPU has (what runtime dispatch picks).
    ///
    /// ```
    /// let isa = saeplug::backend::cpu::Isa::detected();
    /// assert!(isa.is_available());
    /// ```
    pub fn detected() -> Isa {
        Isa::available().last().copied().unwrap_or(Isa::Portable)
    }

    /// The level `SAEPLUG_CPU_ISA` names, if set; an error when it names no level
    /// or one this CPU cannot run.
    ///
    /// ```
    /// // Unset in doc tests: nothing forced.
    /// # unsafe { std::env::remove_var("SAEPLUG_CPU_ISA") };
    /// assert_eq!(saeplug::backend::cpu::Isa::from_env().unwrap(), None);
    /// ```
    pub fn from_env() -> Result<Option<Isa>> {
        let Some(v) = std::env::var_os(ISA_ENV) else {
            return Ok(None);
        };
        let v = v.to_string_lossy();
        if v.trim().is_empty() {
            return Ok(None);
        }
        let isa = Isa::parse(&v).ok_or_else(|| {
            Error::invalid(format!(
                "{ISA_ENV}={v:?} names no CPU level; use one of {}",
                Isa::ALL.map(Isa::name).join(", ")
            ))
        })?;
        isa.check()?;
        Ok(Some(isa))
    }

    /// An error unless this CPU can run the level.
    pub(crate) fn check(self) -> Result<()> {
        if self.is_available() {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "this CPU cannot run the {} kernels (it has: {})",
                self.name(),
                Isa::available()
                    .into_iter()
                    .map(Isa::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// Columns of `b` per panel (the micro-kernel's width).
    pub(crate) fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 48,
            _ => 16,
        }
    }

    /// Rows of `a` per micro-kernel call, at most.
    fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 8,
            Isa::Avx2 | Isa::Neon => 6,
            Isa::Portable => 4,
        }
    }
}

/// How the encoder's weights are stored for the CPU kernels.
///
/// ```
/// use saeplug::backend::cpu::WeightStorage;
/// assert_eq!(WeightStorage::default(), WeightStorage::PackedF32);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WeightStorage {
    /// Repacked once per SAE into the micro-kernel's panel layout, f32 (one extra
    /// copy of W_enc in memory; built on the first encode).
    #[default]
    PackedF32,
    /// Read in place from the mapped file (zero-copy): panels are packed slice by
    /// slice on every call.
    ZeroCopy,
    /// Repacked once into panels of bf16 (round to nearest even): half the bytes
    /// streamed per token, products still accumulated in f32.
    PackedBf16,
}

/// A strided read-only matrix: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl MatRef<'_> {
    /// Every strided index is inside `data`.
    pub(crate) fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1).checked_mul(self.rs).and_then(|a| {
            (self.cols - 1)
                .checked_mul(self.cs)
                .and_then(|b| a.checked_add(b))
        });
        matches!(last, Some(l) if l < self.data.len())
    }

    #[inline]
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }
}

/// Panel storage: f32 or bf16 bits.
pub(crate) enum PanelData {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

/// `b` [k, n] packed once into `ceil(n / NR)` panels of `[k][NR]` (the last one
/// padded with zero columns), for one ISA's micro-kernel.
pub(crate) struct PackedB {
    pub isa: Isa,
    pub k: usize,
    pub n: usize,
    pub data: PanelData,
}

impl PackedB {
    /// Pack `b` for `isa`, as f32 or bf16. Runs on the calling thread's rayon pool.
    pub(crate) fn new(b: MatRef<'_>, isa: Isa, bf16: bool) -> Result<PackedB> {
        if !b.fits() {
            return Err(Error::invalid("internal: packed matrix out of bounds"));
        }
        let (k, n, nr) = (b.rows, b.cols, isa.nr());
        let panels = n.div_ceil(nr);
        let len = panels
            .checked_mul(nr)
            .and_then(|v| v.checked_mul(k))
            .ok_or_else(|| Error::invalid("packed weights too large"))?;
        use rayon::prelude::*;
        // Panel p, KC rows at a time, through the same slice packer the GEMM uses
        // (it reads transposed operands column by column).
        let fill = |p: usize, panel: &mut [f32]| {
            let j0 = p * nr;
            let w = nr.min(n - j0);
            for (s, dst) in panel.chunks_mut(KC * nr).enumerate() {
                let p0 = s * KC;
                pack_b_slice(b, p0, dst.len() / nr, j0, w, nr, dst);
            }
        };
        let data = if bf16 {
            let mut v = vec![0u16; len];
            if k > 0 {
                v.par_chunks_mut(k * nr).enumerate().for_each(|(p, panel)| {
                    let mut f = vec![0f32; k * nr];
                    fill(p, &mut f);
                    panel
                        .iter_mut()
                        .zip(&f)
                        .for_each(|(d, x)| *d = bf16_bits(*x));
                });
            }
            PanelData::Bf16(v)
        } else {
            let mut v = vec![0f32; len];
            if k > 0 {
                v.par_chunks_mut(k * nr)
                    .enumerate()
                    .for_each(|(p, panel)| fill(p, panel));
            }
            PanelData::F32(v)
        };
        Ok(PackedB { isa, k, n, data })
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        match &self.data {
            PanelData::F32(v) => v.len() * 4,
            PanelData::Bf16(v) => v.len() * 2,
        }
    }
}

/// bf16 bits of `x`, rounded to nearest even (NaN stays NaN).
pub(crate) fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// The f32 value of bf16 bits.
#[inline]
pub(crate) fn bf16_value(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// The right-hand operand of [`gemm`].
#[derive(Clone, Copy)]
pub(crate) enum BOperand<'a> {
    /// Any strided matrix, packed a `KC` slice at a time.
    Strided(MatRef<'a>),
    /// Packed once (its ISA must be the call's).
    Packed(&'a PackedB),
}

impl BOperand<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            BOperand::Strided(m) => (m.rows, m.cols),
            BOperand::Packed(p) => (p.k, p.n),
        }
    }
}

/// Applied to each finished tile of `c`, row segment by row segment:
/// `f(first_column, segment)`.
pub(crate) type Epilogue<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// Rows of `k` per packed slice: an `[KC][48]` f32 panel slice is 48 KiB (L1/L2);
/// 128, 256 and 384 measured 77%, 83% and 82% of the 1-thread AVX-512 peak.
const KC: usize = 256;
/// Bytes of packed `a` a thread keeps hot (L2) while it streams its `b` panels.
const A_BLOCK_BYTES: usize = 768 * 1024;
/// Up to this many rows, a row-major `b` read in place is streamed row by row
/// ([`gemv_rows`]) instead of being packed slice by slice.
const GEMV_ROWS: usize = 4;
/// Bytes of `c` a thread keeps hot (L2) across `k` slices in the slice-outer order.
const C_BLOCK_BYTES: usize = 512 * 1024;
/// Largest strided `b` (elements) packed whole for one call (256 MiB of f32).
const WHOLE_B_MAX: usize = 64 << 20;
/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_MIN: usize = 1 << 18;

/// A pointer to `c` shared by threads that write disjoint column ranges.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: threads given a `SharedOut` write only their own disjoint column panels of
// `c` (see `gemm`), and `gemm` waits for all of them before `c`'s borrow ends.
unsafe impl Send for SharedOut {}
// SAFETY: as above; no two threads touch the same element.
unsafe impl Sync for SharedOut {}

/// `c[m, n] = (accumulate ? c : 0) + a @ b`, `c` dense row-major, then `epilogue`
/// on every element, on `threads` threads of the current rayon pool.
pub(crate) fn gemm(
    isa: Isa,
    a: MatRef<'_>,
    b: BOperand<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let (m, k) = (a.rows, a.cols);
    let (bk, n) = b.dims();
    let shape_ok = bk == k
        && m.checked_mul(n) == Some(c.len())
        && a.fits()
        && match b {
            BOperand::Strided(s) => s.fits(),
            BOperand::Packed(p) => {
                p.isa == isa
                    && match &p.data {
                        PanelData::F32(v) => v.len() == n.div_ceil(isa.nr()) * isa.nr() * k,
                        PanelData::Bf16(v) => v.len() == n.div_ceil(isa.nr()) * isa.nr() * k,
                    }
            }
        };
    if !shape_ok {
        return Err(Error::invalid(format!(
            "internal GEMM shape mismatch: a {}x{}, b {}x{}, c {}",
            a.rows,
            a.cols,
            bk,
            n,
            c.len()
        )));
    }
    isa.check()?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        if let Some(e) = epilogue {
            c.chunks_exact_mut(n).for_each(|row| e(0, row));
        }
        return Ok(());
    }
    let nr = isa.nr();
    let panels = n.div_ceil(nr);
    let work = m.saturating_mul(n).saturating_mul(k);
    let threads = if work < PARALLEL_MIN {
        1
    } else {
        threads.clamp(1, panels)
    };
    let ctx = Ctx {
        isa,
        a,
        b,
        m,
        n,
        k,
        accumulate,
        epilogue,
    };
    if let BOperand::Strided(bs) = b
        && m <= GEMV_ROWS
        && bs.cs == 1
    {
        return gemv_rows(a, bs, c, accumulate, threads, epilogue);
    }
    // Two loop orders. Panel-outer: a block of rows of `a` over the whole `k`
    // stays in L2 while each `b` panel streams once per block and each `c` tile
    // stays in L1 across the `k` slices (short `k`: encoders). Slice-outer: for
    // long `k` (decoders) such a block would hold too few rows and `b` would
    // stream once per handful of rows, so `k` is cut into slices outermost and the
    // block of `c` each thread owns stays in L2 across them.
    let mr = isa.mr();
    let full_k_rows = A_BLOCK_BYTES / (4 * k);
    let cols = panels.div_ceil(threads) * nr;
    let (order, rows_per_block) = if full_k_rows >= m.min(64) {
        (Order::PanelOuter, full_k_rows.max(mr) / mr * mr)
    } else {
        let rows = (C_BLOCK_BYTES / (4 * cols)).clamp(mr, m.max(mr));
        (Order::SliceOuter, rows / mr * mr)
    };
    // A strided `b` met by several row blocks would be repacked once per block:
    // pack it whole, once, instead (training's products: thousands of rows).
    let whole_b;
    let mut ctx = ctx;
    if let BOperand::Strided(bs) = b
        && m > rows_per_block
        && k.saturating_mul(n) <= WHOLE_B_MAX
    {
        whole_b = PackedB::new(bs, isa, false)?;
        ctx.b = BOperand::Packed(&whole_b);
    }
    // Pack `a` once per call (shared by every thread).
    let packed_a = pack_a(&ctx, rows_per_block);
    let out = SharedOut(c.as_mut_ptr());
    if threads == 1 {
        return run_panels(&ctx, &packed_a, out, 0..panels, order);
    }
    let mut results: Vec<Result<()>> = (0..threads).map(|_| Ok(())).collect();
    let (ctx, packed_a) = (&ctx, &packed_a);
    rayon::scope(|s| {
        for (t, slot) in results.iter_mut().enumerate() {
            let range = panels * t / threads..panels * (t + 1) / threads;
            s.spawn(move |_| *slot = run_panels(ctx, packed_a, out, range, order));
        }
    });
    results.into_iter().collect()
}

/// The loop order of [`run_panels`] (see [`gemm`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    PanelOuter,
    SliceOuter,
}

/// `c = (accumulate ? c : 0) + a @ b` for a few rows of `a` and a row-major `b`
/// read in place: each thread owns a range of columns and streams the rows of `b`
/// over it once (bandwidth-bound: one pass over `b`, no packing).
fn gemv_rows(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let per = n.div_ceil(threads.max(1)).next_multiple_of(16);
    let ranges: Vec<(usize, usize)> = (0..n)
        .step_by(per)
        .map(|j0| (j0, per.min(n - j0)))
        .collect();
    let mut parts: Vec<Vec<f32>> = ranges.iter().map(|(_, w)| vec![0f32; m * w]).collect();
    let work = |(j0, w): (usize, usize), part: &mut [f32]| {
        for p in 0..k {
            let brow = &b.data[p * b.rs + j0..p * b.rs + j0 + w];
            for (r, crow) in part.chunks_exact_mut(w).enumerate() {
                let s = a.at(r, p);
                if s != 0.0 {
                    crow.iter_mut().zip(brow).for_each(|(o, v)| *o += s * v);
                }
            }
        }
    };
    if ranges.len() == 1 {
        work(ranges[0], &mut parts[0]);
    } else {
        rayon::scope(|sc| {
            for (range, part) in ranges.iter().zip(parts.iter_mut()) {
                sc.spawn(move |_| work(*range, part));
            }
        });
    }
    for ((j0, w), part) in ranges.iter().zip(&parts) {
        for (r, src) in part.chunks_exact(*w).enumerate() {
            let dst = &mut c[r * n + j0..r * n + j0 + w];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
            if let Some(e) = epilogue {
                e(*j0, dst);
            }
        }
    }
    Ok(())
}

struct Ctx<'a> {
    isa: Isa,
    a: MatRef<'a>,
    b: BOperand<'a>,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    epilogue: Option<Epilogue<'a>>,
}

/// A micro-panel of packed `a`: (first row, rows, offset into the data).
type MicroPanel = (usize, usize, usize);

/// `a` packed by row blocks: each block is a list of micro-panels `[k][mr]`.
struct PackedA {
    /// (first row, rows, micro-panels).
    blocks: Vec<(usize, usize, Vec<MicroPanel>)>,
    data: Vec<f32>,
}

/// Micro-panel heights for `rows` rows: as many full `mr` as fit, then halves.
fn split_rows(rows: usize, mr: usize) -> Vec<usize> {
    let mut out = vec![mr; rows / mr];
    let mut left = rows % mr;
    let mut h = mr;
    while left > 0 {
        h = (h / 2).max(1);
        while left >= h {
            out.push(h);
            left -= h;
        }
    }
    out
}

fn pack_a(ctx: &Ctx<'_>, rows_per_block: usize) -> PackedA {
    let (m, k) = (ctx.m, ctx.k);
    let mr = ctx.isa.mr();
    let mut data = vec![0f32; m * k];
    let mut blocks = Vec::new();
    let mut off = 0;
    let mut r0 = 0;
    while r0 < m {
        let rows = rows_per_block.min(m - r0);
        let mut panels = Vec::new();
        let mut r = r0;
        for h in split_rows(rows, mr) {
            let dst = &mut data[off..off + h * k];
            for p in 0..k {
                for i in 0..h {
                    dst[p * h + i] = ctx.a.at(r + i, p);
                }
            }
            panels.push((r, h, off));
            off += h * k;
            r += h;
        }
        blocks.push((r0, rows, panels));
        r0 += rows;
    }
    PackedA { blocks, data }
}

/// The panels `range` of `c`, all rows: for each row block, for each panel, for
/// each `KC` slice, every micro-panel of `a` against the panel slice.
fn run_panels(
    ctx: &Ctx<'_>,
    pa: &PackedA,
    out: SharedOut,
    range: std::ops::Range<usize>,
    order: Order,
) -> Result<()> {
    let (isa, n, k) = (ctx.isa, ctx.n, ctx.k);
    let nr = isa.nr();
    // A `[KC][NR]` slice of a strided `b` (zero-padded past column n).
    let mut bbuf = match ctx.b {
        BOperand::Strided(_) => vec![0f32; KC * nr],
        BOperand::Packed(_) => Vec::new(),
    };
    let mut tile = vec![0f32; isa.mr() * nr];
    let slices: Vec<usize> = (0..k).step_by(KC).collect();
    let pairs: Vec<(usize, usize)> = match order {
        Order::PanelOuter => range
            .clone()
            .flat_map(|p| slices.iter().map(move |&p0| (p, p0)))
            .collect(),
        Order::SliceOuter => slices
            .iter()
            .flat_map(|&p0| range.clone().map(move |p| (p, p0)))
            .collect(),
    };
    for (_, _, panels) in &pa.blocks {
        for &(p, p0) in &pairs {
            let j0 = p * nr;
            let w = nr.min(n - j0);
            {
                let kc = KC.min(k - p0);
                let first = p0 == 0;
                let last = p0 + kc == k;
                let bslice = match ctx.b {
                    BOperand::Strided(b) => {
                        pack_b_slice(b, p0, kc, j0, w, nr, &mut bbuf);
                        BSlice::F32(&bbuf[..kc * nr])
                    }
                    BOperand::Packed(pb) => {
                        let s = (p * k + p0) * nr;
                        match &pb.data {
                            PanelData::F32(v) => BSlice::F32(&v[s..s + kc * nr]),
                            PanelData::Bf16(v) => BSlice::Bf16(&v[s..s + kc * nr]),
                        }
                    }
                };
                for &(r, h, off) in panels {
                    let aslice = &pa.data[off + p0 * h..off + (p0 + kc) * h];
                    let add = ctx.accumulate || !first;
                    let epilogue = if last { ctx.epilogue } else { None };
                    if w == nr {
                        // SAFETY: rows r..r+h and columns j0..j0+nr of `c` (row-major,
                        // n columns, m rows) lie inside `c` (the caller checked
                        // m*n == c.len(); r+h <= m, j0+nr <= n) and belong to this
                        // thread alone: threads own disjoint panel ranges and `gemm`
                        // joins them before `c`'s borrow ends.
                        unsafe {
                            let c0 = out.0.add(r * n + j0);
                            tile_kernel(isa, h, kc, aslice, bslice, c0, n, add);
                            finish_rows(out, n, r, h, j0, w, epilogue);
                        }
                    } else {
                        // SAFETY: `tile` holds h rows of nr floats, ours alone.
                        unsafe {
                            tile_kernel(isa, h, kc, aslice, bslice, tile.as_mut_ptr(), nr, false)
                        };
                        // SAFETY: as above, for the w < nr columns of the last panel.
                        unsafe { write_tile(out, n, r, h, j0, w, &tile, nr, add) };
                        // SAFETY: as above.
                        unsafe { finish_rows(out, n, r, h, j0, w, epilogue) };
                    }
                }
            }
        }
    }
    Ok(())
}

/// Copy rows p0..p0+kc, columns j0..j0+w of `b` into `dst` as `[kc][nr]`,
/// zero-padded past `w`.
fn pack_b_slice(
    b: MatRef<'_>,
    p0: usize,
    kc: usize,
    j0: usize,
    w: usize,
    nr: usize,
    dst: &mut [f32],
) {
    if b.cs == 1 {
        for (r, row) in dst.chunks_exact_mut(nr).take(kc).enumerate() {
            let s = (p0 + r) * b.rs + j0;
            row[..w].copy_from_slice(&b.data[s..s + w]);
            row[w..].fill(0.0);
        }
    } else if b.rs == 1 {
        // A transposed operand: each column is contiguous in memory; read it
        // in order and scatter it down the slice.
        dst[..kc * nr].fill(0.0);
        for j in 0..w {
            let s = (j0 + j) * b.cs + p0;
            for (r, v) in b.data[s..s + kc].iter().enumerate() {
                dst[r * nr + j] = *v;
            }
        }
    } else {
        for (r, row) in dst.chunks_exact_mut(nr).take(kc).enumerate() {
            for (j, d) in row[..w].iter_mut().enumerate() {
                *d = b.at(p0 + r, j0 + j);
            }
            row[w..].fill(0.0);
        }
    }
}

/// Add or store an `h x w` tile (row stride `nr`) into `c` at (r, j0).
///
/// # Safety
/// The tile's rows and columns must lie inside `c` (`n` columns) and no other
/// thread may access them during the call.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; all plain scalars"
)]
unsafe fn write_tile(
    out: SharedOut,
    n: usize,
    r: usize,
    h: usize,
    j0: usize,
    w: usize,
    tile: &[f32],
    nr: usize,
    add: bool,
) {
    for i in 0..h {
        // SAFETY: per the function's contract this row segment is in bounds and
        // exclusively ours for the duration of the call.
        let seg = unsafe { std::slice::from_raw_parts_mut(out.0.add((r + i) * n + j0), w) };
        let src = &tile[i * nr..i * nr + w];
        if add {
            seg.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            seg.copy_from_slice(src);
        }
    }
}

/// The epilogue on rows r..r+h, columns j0..j0+w of `c` (`n` columns).
///
/// # Safety
/// As [`write_tile`].
unsafe fn finish_rows(
    out: SharedOut,
    n: usize,
    r: usize,
    h: usize,
    j0: usize,
    w: usize,
    epilogue: Option<Epilogue<'_>>,
) {
    let Some(e) = epilogue else { return };
    for i in 0..h {
        // SAFETY: per the function's contract this row segment is in bounds and
        // exclusively ours for the duration of the call.
        let seg = unsafe { std::slice::from_raw_parts_mut(out.0.add((r + i) * n + j0), w) };
        e(j0, seg);
    }
}

/// A `[kc][NR]` slice of `b`.
#[derive(Clone, Copy)]
pub(crate) enum BSlice<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

impl BSlice<'_> {
    /// Elements held (either precision).
    pub(crate) fn len(&self) -> usize {
        match self {
            BSlice::F32(v) => v.len(),
            BSlice::Bf16(v) => v.len(),
        }
    }
}

/// `c[h][NR] (+)= a-panel[kc][h]ᵀ @ b[kc][NR]` with the ISA's micro-kernel.
///
/// # Safety
/// `c` must be valid for reads and writes of `h` rows of NR floats, `ldc` apart,
/// that no other thread accesses during the call.
#[allow(clippy::too_many_arguments, reason = "the micro-kernel signature")]
unsafe fn tile_kernel(
    isa: Isa,
    h: usize,
    kc: usize,
    a: &[f32],
    b: BSlice<'_>,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    // SAFETY: every arm forwards the caller's contract on `c` unchanged.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::tile(h, kc, a, b, c, ldc, add),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::tile(h, kc, a, b, c, ldc, add),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => neon::tile(h, kc, a, b, c, ldc, add),
            _ => portable::tile_nr(isa.nr(), h, kc, a, b, c, ldc, add),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 reference of `a @ b`.
    fn reference(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f64> {
        let mut c = vec![0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|p| a.at(i, p) as f64 * b.at(p, j) as f64)
                    .sum();
            }
        }
        c
    }

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::synthetic::Rng::new(seed);
        rng.normal_vec(len, 1.0)
    }

    #[test]
    fn every_isa_matches_f64_on_odd_shapes_strides_and_threads() {
        for isa in Isa::available() {
            for &(m, k, n) in &[
                (1, 1, 1),
                (1, 300, 97),
                (3, 129, 50),
                (7, 17, 49),
                (9, 256, 96),
                (13, 5, 200),
                (64, 130, 333),
                // Long k: the slice-outer loop order.
                (70, 4000, 100),
                // Several row blocks: a strided b packed whole once.
                (700, 300, 50),
            ] {
                let av = data(m * k, 1);
                let bv = data(k * n, 2);
                let a = MatRef {
                    data: &av,
                    rows: m,
                    cols: k,
                    rs: k,
                    cs: 1,
                };
                for transposed in [false, true] {
                    let b = if transposed {
                        MatRef {
                            data: &bv,
                            rows: k,
                            cols: n,
                            rs: 1,
                            cs: k,
                        }
                    } else {
                        MatRef {
                            data: &bv,
                            rows: k,
                            cols: n,
                            rs: n,
                            cs: 1,
                        }
                    };
                    let want = reference(a, b);
                    let packed = PackedB::new(b, isa, false).expect("pack");
                    for (operand, threads) in [
                        (BOperand::Strided(b), 1),
                        (BOperand::Strided(b), 3),
                        (BOperand::Packed(&packed), 2),
                    ] {
                        let mut c = vec![0.5f32; m * n];
                        gemm(isa, a, operand, &mut c, true, threads, None).expect("gemm");
                        for (g, w) in c.iter().zip(&want) {
                            let tol = 1e-4 * (k as f64).sqrt().max(1.0);
                            assert!(
                                (*g as f64 - 0.5 - w).abs() < tol,
                                "{isa:?} {m}x{k}x{n} t{transposed}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_panels_equal_the_f64_product_of_rounded_weights() {
        let (m, k, n) = (5, 70, 100);
        let av = data(m * k, 3);
        let bv = data(k * n, 4);
        let a = MatRef {
            data: &av,
            rows: m,
            cols: k,
            rs: k,
            cs: 1,
        };
        let b = MatRef {
            data: &bv,
            rows: k,
            cols: n,
            rs: n,
            cs: 1,
        };
        let rounded: Vec<f32> = bv.iter().map(|v| bf16_value(bf16_bits(*v))).collect();
        let want = reference(
            a,
            MatRef {
                data: &rounded,
                ..b
            },
        );
        for isa in Isa::available() {
            let p = PackedB::new(b, isa, true).expect("pack");
            let mut c = vec![0f32; m * n];
            gemm(isa, a, BOperand::Packed(&p), &mut c, false, 2, None).expect("gemm");
            for (g, w) in c.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-3, "{isa:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn epilogue_sees_every_element_once_with_its_column() {
        let (m, k, n) = (10, 300, 130);
        let av = data(m * k, 5);
        let bv = data(k * n, 6);
        let a = MatRef {
            data: &av,
            rows: m,
            cols: k,
            rs: k,
            cs: 1,
        };
        let b = MatRef {
            data: &bv,
            rows: k,
            cols: n,
            rs: n,
            cs: 1,
        };
        let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
        let epi = |j0: usize, seg: &mut [f32]| {
            seg.iter_mut()
                .zip(&bias[j0..])
                .for_each(|(v, b)| *v = (*v + b).max(0.0))
        };
        let want = reference(a, b);
        for isa in Isa::available() {
            let mut c = vec![0f32; m * n];
            gemm(isa, a, BOperand::Strided(b), &mut c, false, 2, Some(&epi)).expect("gemm");
            for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                let w = (w + (i % n) as f64).max(0.0);
                assert!((*g as f64 - w).abs() < 1e-3, "{isa:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn dispatch_picks_the_fastest_level_present() {
        let avail = Isa::available();
        assert_eq!(Isa::detected(), *avail.iter().max().expect("portable"));
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                assert_eq!(Isa::detected(), Isa::Avx512);
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                assert_eq!(Isa::detected(), Isa::Avx2);
            }
        }
        for isa in Isa::ALL {
            assert_eq!(isa.check().is_ok(), avail.contains(&isa));
        }
    }

    #[test]
    fn split_rows_covers_every_row_with_kernel_sizes() {
        for mr in [4, 6, 8] {
            for rows in 0..40 {
                let s = split_rows(rows, mr);
                assert_eq!(s.iter().sum::<usize>(), rows);
                assert!(s.iter().all(|h| *h >= 1 && *h <= mr));
            }
        }
    }
}
