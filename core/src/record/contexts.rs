//! Feature dashboards' statistics, streamed over any number of rows in bounded
//! memory: per feature the top-N activating rows, samples from 10 activation
//! intervals, a 50-bin activation histogram, density, mean and max, and for every
//! kept example the feature's values on the ±N rows around it (so a page can show
//! values on hover without running the SAE again).
//!
//! Two passes over the same rows in the same order (the interval and histogram
//! bounds are relative to each feature's maximum, which is known only after the
//! first pass):
//!
//! 1. counts, sums, min and max, and the top-N rows ordered by value (descending),
//!    ties broken by the lower row index, which makes the result independent of
//!    how the rows are batched;
//! 2. the histogram and the interval samples. The range `[lo, max]` (`lo` = 0, or
//!    the smallest value when a feature has negative values) is cut into equal
//!    intervals, as SAEDashboard's "interval" groups do (equal width relative to
//!    the max, not equal-count quantiles); each interval keeps a uniform sample
//!    without replacement of its rows: the `per_interval` rows with the smallest
//!    seeded hash key (bottom-k sampling, a reservoir whose result does not depend
//!    on the order of the rows).
//!
//! A value `v` falls in bin `min(floor((v - lo) / (max - lo) * bins), bins - 1)`,
//! computed in f64 (all in the last bin when `max == lo`).
//!
//! Memory is `d_sae × (top_n + intervals × per_interval) × (2 × context + 1)`
//! floats plus `d_sae × hist_bins` counters, whatever the number of rows.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::{Backend, CpuBackend, record::contexts::{ContextRecorder, RecordOptions}};
//! let sae = saeplug::synthetic::random_sae(8, 32, saeplug::Architecture::Standard, 3)?;
//! let x = saeplug::synthetic::Rng::new(1).normal_vec(100 * 8, 1.0); // 100 rows
//! let codes = CpuBackend::new(1).encode_sparse(&sae, &x)?;
//! let mut rec = ContextRecorder::new(sae.d_sae(), RecordOptions::default())?;
//! while rec.needs_pass() {
//!     for start in (0..100).step_by(25) {
//!         let batch = CpuBackend::new(1).encode_sparse(&sae, &x[start * 8..(start + 25) * 8])?;
//!         rec.observe(&batch, start as u64)?;
//!     }
//!     rec.finish_pass()?;
//! }
//! let f = rec.feature(0);
//! assert_eq!(f.histogram.iter().sum::<u64>(), f.count);
//! # let _ = codes;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;

use crate::backend::SparseCodes;
use crate::error::{Error, Result};
use crate::store::{ActivationStore, Split};

/// What a [`ContextRecorder`] keeps per feature.
///
/// ```
/// let o = saeplug::record::contexts::RecordOptions::default();
/// assert_eq!((o.top_n, o.intervals, o.per_interval, o.hist_bins, o.context), (20, 10, 5, 50, 8));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    /// Top activating rows kept per feature.
    pub top_n: usize,
    /// Equal-width activation intervals over `[lo, max]` (0: no second pass
    /// for samples; the histogram still needs one when `hist_bins > 0`).
    pub intervals: usize,
    /// Rows sampled per interval.
    pub per_interval: usize,
    /// Histogram bins over `[lo, max]`.
    pub hist_bins: usize,
    /// Rows kept on each side of an example (the feature's values there).
    pub context: usize,
    /// Seed of the interval sampling.
    pub seed: u64,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            top_n: 20,
            intervals: 10,
            per_interval: 5,
            hist_bins: 50,
            context: 8,
            seed: 0,
        }
    }
}

/// One kept row of a feature.
///
/// ```
/// let e = saeplug::record::contexts::Example { row: 7, value: 2.5, window: vec![0.0, 2.5, 0.0] };
/// assert_eq!(e.window[1], e.value); // context 1: the row is in the middle
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Row index (as given to [`ContextRecorder::observe`]).
    pub row: u64,
    /// The feature's activation there.
    pub value: f32,
    /// The feature's activation on rows `row - context ..= row + context`
    /// (0 where a row does not exist or the feature did not fire).
    pub window: Vec<f32>,
}

/// One activation interval of a feature: its bounds, how many rows fell in it
/// and the sampled ones.
///
/// ```
/// let i = saeplug::record::contexts::Interval { lo: 0.0, hi: 1.0, count: 0, samples: vec![] };
/// assert!(i.samples.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// Lower bound (inclusive).
    pub lo: f32,
    /// Upper bound (exclusive, except the last interval, which holds the max).
    pub hi: f32,
    /// Rows whose value fell in it.
    pub count: u64,
    /// Sampled rows (by ascending hash key: a uniform random order).
    pub samples: Vec<Example>,
}

/// Everything recorded about one feature.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
/// let mut rec = ContextRecorder::new(2, RecordOptions::default())?;
/// while rec.needs_pass() {
///     rec.observe(&SparseCodes::from_dense(&[0.0, 1.0, 0.0, 3.0], 2, Vec::new()), 0)?;
///     rec.finish_pass()?;
/// }
/// let (dead, live) = (rec.feature(0), rec.feature(1));
/// assert_eq!((dead.count, dead.density, dead.top.len()), (0, 0.0, 0)); // never fired
/// assert_eq!((live.count, live.max, live.density), (2, 3.0, 1.0));
/// assert_eq!(live.top.iter().map(|e| e.row).collect::<Vec<_>>(), [1, 0]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSummary {
    /// Rows where the feature fired (non-zero).
    pub count: u64,
    /// `count / rows`.
    pub density: f64,
    /// Mean activation over the rows where it fired (0 when it never fired).
    pub mean: f64,
    /// Largest activation (0 when it never fired).
    pub max: f32,
    /// Lower end of the histogram and interval range: 0, or the smallest value
    /// when it is negative.
    pub lo: f32,
    /// Top rows, strongest first (ties: lower row first).
    pub top: Vec<Example>,
    /// Histogram counts over `[lo, max]` in equal bins (empty without a second pass).
    pub histogram: Vec<u64>,
    /// Intervals over `[lo, max]` (empty without a second pass).
    pub intervals: Vec<Interval>,
}

/// Which pass a recorder is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    First,
    Second,
    Done,
}

/// An example still waiting for the rows after it.
#[derive(Clone, Copy, Debug)]
struct Pending {
    id: u64,
    feature: u32,
    row: u64,
}

/// A kept example with its identity (for filling its window later) and its
/// sampling key (interval samples only).
#[derive(Clone, Debug)]
struct Kept {
    id: u64,
    key: u64,
    ex: Example,
}

/// Streaming per-feature statistics with context values (see the
/// [module documentation](self)).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
/// let opts = RecordOptions { top_n: 1, context: 1, ..RecordOptions::default() };
/// let mut rec = ContextRecorder::new(1, opts)?;
/// let codes = SparseCodes::from_dense(&[0.5, 4.0, 1.0, 0.0], 1, Vec::new());
/// while rec.needs_pass() {
///     rec.observe(&codes, 10)?; // rows 10..14
///     rec.finish_pass()?;
/// }
/// let top = &rec.feature(0).top[0];
/// assert_eq!((top.row, top.window.as_slice()), (11, &[0.5, 4.0, 1.0][..]));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ContextRecorder {
    d_sae: usize,
    opts: RecordOptions,
    pass: Pass,
    rows: [u64; 2],
    count: Vec<u64>,
    count2: Vec<u64>,
    sum: Vec<f64>,
    min: Vec<f32>,
    max: Vec<f32>,
    top: Vec<Vec<Kept>>,
    hist: Vec<u64>,
    icount: Vec<u64>,
    /// `d_sae * intervals` lists, ascending by key.
    samples: Vec<Vec<Kept>>,
    /// The last `context` rows seen: (row, indices, values).
    recent: VecDeque<(u64, Vec<u32>, Vec<f32>)>,
    pending: Vec<Pending>,
    next_id: u64,
    /// Last row fed in the current pass.
    last_row: Option<u64>,
    /// The second pass ran to its end.
    second_done: bool,
}

/// A 64-bit mix (SplitMix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampling key of (feature, row) under `seed`: a deterministic hash.
///
/// ```
/// use saeplug::record::contexts::sample_key;
/// assert_eq!(sample_key(1, 2, 3), sample_key(1, 2, 3));
/// assert_ne!(sample_key(1, 2, 3), sample_key(2, 2, 3));
/// ```
pub fn sample_key(seed: u64, feature: u32, row: u64) -> u64 {
    mix(mix(seed ^ 0x9E37_79B9_7F4A_7C15)
        ^ mix(row.wrapping_add(0x2545_F491_4F6C_DD1D))
        ^ (feature as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// The bin of `v` among `bins` equal bins over `[lo, hi]` (see the module documentation).
///
/// ```
/// use saeplug::record::contexts::bin_of;
/// assert_eq!(bin_of(0.0, 0.0, 1.0, 10), 0);
/// assert_eq!(bin_of(0.55, 0.0, 1.0, 10), 5);
/// assert_eq!(bin_of(1.0, 0.0, 1.0, 10), 9); // the max is in the last bin
/// assert_eq!(bin_of(3.0, 3.0, 3.0, 10), 9); // empty range: the last bin
/// ```
pub fn bin_of(v: f32, lo: f32, hi: f32, bins: usize) -> usize {
    let last = bins.saturating_sub(1);
    let w = hi as f64 - lo as f64;
    if w <= 0.0 {
        return last;
    }
    let b = ((v as f64 - lo as f64) / w * bins as f64).floor();
    if b < 0.0 { 0 } else { (b as usize).min(last) }
}

/// Is `(v, row)` ranked before `(w, row2)` (higher value, then lower row)?
fn before(v: f32, row: u64, w: f32, row2: u64) -> bool {
    v > w || (v == w && row < row2)
}

impl ContextRecorder {
    /// A recorder for `d_sae` features.
    ///
    /// ```
    /// use saeplug::record::contexts::{ContextRecorder, RecordOptions};
    /// assert!(ContextRecorder::new(16384, RecordOptions::default()).is_ok());
    /// let huge = RecordOptions { context: 1 << 40, ..RecordOptions::default() };
    /// assert!(ContextRecorder::new(4, huge).is_err());
    /// ```
    pub fn new(d_sae: usize, opts: RecordOptions) -> Result<Self> {
        if d_sae == 0 || d_sae > u32::MAX as usize {
            return Err(Error::invalid(format!("d_sae {d_sae} is out of range")));
        }
        if opts.context > 4096 || opts.top_n > 1 << 16 || opts.per_interval > 1 << 16 {
            return Err(Error::invalid(format!(
                "record options out of range (context {} <= 4096, top_n {} and per_interval {} <= 65536)",
                opts.context, opts.top_n, opts.per_interval
            )));
        }
        if opts.intervals > 1000 || opts.hist_bins > 100_000 {
            return Err(Error::invalid(format!(
                "record options out of range (intervals {} <= 1000, hist_bins {} <= 100000)",
                opts.intervals, opts.hist_bins
            )));
        }
        let cells = |k: usize| {
            d_sae
                .checked_mul(k)
                .ok_or_else(|| Error::invalid(format!("{d_sae} x {k} cells overflow")))
        };
        Ok(ContextRecorder {
            pass: Pass::First,
            rows: [0; 2],
            count: vec![0; d_sae],
            count2: vec![0; d_sae],
            sum: vec![0.0; d_sae],
            min: vec![0.0; d_sae],
            max: vec![0.0; d_sae],
            top: vec![Vec::new(); d_sae],
            hist: vec![0; cells(opts.hist_bins)?],
            icount: vec![0; cells(opts.intervals)?],
            samples: vec![Vec::new(); cells(opts.intervals)?],
            recent: VecDeque::new(),
            pending: Vec::new(),
            next_id: 0,
            last_row: None,
            second_done: false,
            d_sae,
            opts,
        })
    }

    /// True while another pass over the rows is wanted (feed them all to
    /// [`ContextRecorder::observe`], then call [`ContextRecorder::finish_pass`]).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::record::contexts::{ContextRecorder, RecordOptions};
    /// let opts = RecordOptions { intervals: 0, hist_bins: 0, ..RecordOptions::default() };
    /// let mut rec = ContextRecorder::new(3, opts)?;
    /// assert!(rec.needs_pass());
    /// rec.finish_pass()?;
    /// assert!(!rec.needs_pass()); // no histogram, no intervals: one pass is enough
    /// # Ok(()) }
    /// ```
    pub fn needs_pass(&self) -> bool {
        self.pass != Pass::Done
    }

    /// Rows seen in the first pass.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
    /// let mut rec = ContextRecorder::new(2, RecordOptions::default())?;
    /// rec.observe(&SparseCodes::from_dense(&[0.0; 6], 2, Vec::new()), 0)?;
    /// assert_eq!(rec.rows(), 3);
    /// # Ok(()) }
    /// ```
    pub fn rows(&self) -> u64 {
        self.rows[0]
    }

    /// The options.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::record::contexts::{ContextRecorder, RecordOptions};
    /// assert_eq!(ContextRecorder::new(2, RecordOptions::default())?.options().top_n, 20);
    /// # Ok(()) }
    /// ```
    pub fn options(&self) -> &RecordOptions {
        &self.opts
    }

    /// Feed one batch of codes; its row `r` is row `first_row + r`. Batches of a
    /// pass must come in ascending row order without overlaps (gaps are allowed:
    /// missing rows count as 0 in windows), and the second pass must see the same
    /// rows as the first.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
    /// let mut rec = ContextRecorder::new(2, RecordOptions::default())?;
    /// rec.observe(&SparseCodes::from_dense(&[1.0, 0.0], 2, Vec::new()), 5)?;
    /// let other = SparseCodes::from_dense(&[1.0, 0.0, 0.0], 3, Vec::new());
    /// assert!(rec.observe(&other, 6).is_err()); // other d_sae
    /// assert!(rec.observe(&SparseCodes::from_dense(&[1.0, 0.0], 2, Vec::new()), 5).is_err()); // row 5 again
    /// # Ok(()) }
    /// ```
    pub fn observe(&mut self, codes: &SparseCodes, first_row: u64) -> Result<()> {
        if codes.d_sae != self.d_sae {
            return Err(Error::invalid(format!(
                "codes have d_sae {}, the recorder {}",
                codes.d_sae, self.d_sae
            )));
        }
        if self.pass == Pass::Done {
            return Err(Error::invalid(
                "the recorder has finished its passes".to_string(),
            ));
        }
        if let Some(last) = self.last_row
            && first_row <= last
        {
            return Err(Error::invalid(format!(
                "rows must ascend: batch starts at row {first_row}, row {last} was already seen"
            )));
        }
        for r in 0..codes.n_rows() {
            let row = first_row + r as u64;
            let (idx, val) = codes.row(r);
            if let Some(k) = val.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    row: row as usize,
                    col: idx[k] as usize,
                    value: val[k],
                });
            }
            if let Some(k) = idx.iter().position(|&i| i as usize >= self.d_sae) {
                return Err(Error::invalid(format!(
                    "row {row}: feature index {} >= d_sae {}",
                    idx[k], self.d_sae
                )));
            }
            self.fill_pending(row, idx, val);
            match self.pass {
                Pass::First => self.first(row, idx, val),
                Pass::Second => self.second(row, idx, val)?,
                Pass::Done => {}
            }
            if self.opts.context > 0 {
                // Reuse the oldest row's buffers once the buffer is full.
                let (mut i2, mut v2) = if self.recent.len() == self.opts.context {
                    self.recent
                        .pop_front()
                        .map(|(_, i, v)| (i, v))
                        .unwrap_or_default()
                } else {
                    Default::default()
                };
                i2.clear();
                i2.extend_from_slice(idx);
                v2.clear();
                v2.extend_from_slice(val);
                self.recent.push_back((row, i2, v2));
            }
        }
        if codes.n_rows() > 0 {
            self.last_row = Some(first_row + codes.n_rows() as u64 - 1);
        }
        self.rows[if self.pass == Pass::First { 0 } else { 1 }] += codes.n_rows() as u64;
        Ok(())
    }

    /// End the current pass. After the second, the data must have matched the
    /// first's (same rows, same firing counts).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
    /// let mut rec = ContextRecorder::new(1, RecordOptions::default())?;
    /// rec.observe(&SparseCodes::from_dense(&[1.0, 2.0], 1, Vec::new()), 0)?;
    /// rec.finish_pass()?;
    /// rec.observe(&SparseCodes::from_dense(&[1.0], 1, Vec::new()), 0)?; // one row only
    /// assert!(rec.finish_pass().is_err());
    /// # Ok(()) }
    /// ```
    pub fn finish_pass(&mut self) -> Result<()> {
        self.recent.clear();
        self.pending.clear();
        self.last_row = None;
        match self.pass {
            Pass::First => {
                self.pass = if self.hist.is_empty() && self.icount.is_empty() {
                    Pass::Done
                } else {
                    Pass::Second
                };
            }
            Pass::Second => {
                if self.rows[1] != self.rows[0] || self.count2 != self.count {
                    return Err(Error::invalid(format!(
                        "the second pass saw other data than the first ({} rows, {} firings; \
                         the first {} rows, {} firings)",
                        self.rows[1],
                        self.count2.iter().sum::<u64>(),
                        self.rows[0],
                        self.count.iter().sum::<u64>()
                    )));
                }
                self.pass = Pass::Done;
                self.second_done = true;
            }
            Pass::Done => {}
        }
        Ok(())
    }

    /// The range `[lo, max]` of feature `i`.
    fn range(&self, i: usize) -> (f32, f32) {
        (self.min[i].min(0.0), self.max[i])
    }

    fn first(&mut self, row: u64, idx: &[u32], val: &[f32]) {
        let n = self.opts.top_n;
        for (&f, &v) in idx.iter().zip(val) {
            let i = f as usize;
            if self.count[i] == 0 {
                (self.min[i], self.max[i]) = (v, v);
            } else {
                self.min[i] = self.min[i].min(v);
                self.max[i] = self.max[i].max(v);
            }
            self.count[i] += 1;
            self.sum[i] += v as f64;
            if n == 0 {
                continue;
            }
            let t = &self.top[i];
            if t.len() < n
                || t.last()
                    .is_some_and(|l| before(v, row, l.ex.value, l.ex.row))
            {
                let at = t.partition_point(|e| before(e.ex.value, e.ex.row, v, row));
                let kept = self.keep(f, row, v, 0);
                let t = &mut self.top[i];
                t.insert(at, kept);
                t.truncate(n);
            }
        }
    }

    fn second(&mut self, row: u64, idx: &[u32], val: &[f32]) -> Result<()> {
        let (nb, ni, k) = (
            self.opts.hist_bins,
            self.opts.intervals,
            self.opts.per_interval,
        );
        for (&f, &v) in idx.iter().zip(val) {
            let i = f as usize;
            let (lo, hi) = self.range(i);
            if self.count[i] == 0 || v > hi || v < lo {
                return Err(Error::invalid(format!(
                    "the second pass saw other data than the first: feature {i} = {v} at row {row} \
                     is outside the first pass's range [{lo}, {hi}]"
                )));
            }
            self.count2[i] += 1;
            if nb > 0 {
                self.hist[i * nb + bin_of(v, lo, hi, nb)] += 1;
            }
            if ni == 0 {
                continue;
            }
            let cell = i * ni + bin_of(v, lo, hi, ni);
            self.icount[cell] += 1;
            if k == 0 {
                continue;
            }
            let key = sample_key(self.opts.seed, f, row);
            let s = &self.samples[cell];
            if s.len() < k || s.last().is_some_and(|l| key < l.key) {
                let at = s.partition_point(|e| e.key < key);
                let kept = self.keep(f, row, v, key);
                let s = &mut self.samples[cell];
                s.insert(at, kept);
                s.truncate(k);
            }
        }
        Ok(())
    }

    /// A new kept example: its window's left part from the recent rows, the right
    /// part filled as the next rows come.
    fn keep(&mut self, f: u32, row: u64, v: f32, key: u64) -> Kept {
        let c = self.opts.context;
        let mut window = vec![0.0f32; 2 * c + 1];
        window[c] = v;
        for (r, idx, val) in &self.recent {
            if row - r <= c as u64 {
                window[c - (row - r) as usize] = lookup(idx, val, f);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        if c > 0 {
            self.pending.push(Pending {
                id,
                feature: f,
                row,
            });
        }
        Kept {
            id,
            key,
            ex: Example {
                row,
                value: v,
                window,
            },
        }
    }

    /// Row `row` has come: write its values into the windows still waiting for it.
    fn fill_pending(&mut self, row: u64, idx: &[u32], val: &[f32]) {
        if self.pending.is_empty() {
            return;
        }
        let c = self.opts.context as u64;
        let ni = self.opts.intervals;
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|p| {
            let d = row - p.row;
            if d > c {
                return false;
            }
            let i = p.feature as usize;
            let v = lookup(idx, val, p.feature);
            let lists = std::iter::once(&mut self.top[i])
                .chain(self.samples[i * ni..(i + 1) * ni].iter_mut());
            let mut found = false;
            for list in lists {
                if let Some(k) = list.iter_mut().find(|k| k.id == p.id) {
                    k.ex.window[(c + d) as usize] = v;
                    found = true;
                    break;
                }
            }
            found && d < c
        });
        self.pending = pending;
    }

    /// Everything recorded about feature `i` (`i < d_sae`; call after the
    /// passes, see [`ContextRecorder::needs_pass`]).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
    /// let opts = RecordOptions { intervals: 2, per_interval: 1, hist_bins: 4, ..RecordOptions::default() };
    /// let mut rec = ContextRecorder::new(1, opts)?;
    /// let codes = SparseCodes::from_dense(&[1.0, 4.0, 3.0, 0.0], 1, Vec::new());
    /// while rec.needs_pass() {
    ///     rec.observe(&codes, 0)?;
    ///     rec.finish_pass()?;
    /// }
    /// let f = rec.feature(0);
    /// assert_eq!(f.histogram, [0, 1, 0, 2]); // bins [0,1) [1,2) [2,3) [3,4]: 1 in the 2nd, 3 and 4 in the last
    /// assert_eq!(f.intervals.iter().map(|i| i.count).collect::<Vec<_>>(), [1, 2]);
    /// assert_eq!(f.intervals[0].samples[0].row, 0);
    /// # Ok(()) }
    /// ```
    pub fn feature(&self, i: usize) -> FeatureSummary {
        let (lo, hi) = self.range(i);
        let count = self.count[i];
        let second = self.second_done;
        let (nb, ni) = (self.opts.hist_bins, self.opts.intervals);
        let histogram = if second && nb > 0 {
            self.hist[i * nb..(i + 1) * nb].to_vec()
        } else {
            Vec::new()
        };
        let intervals = if second && ni > 0 {
            let edge =
                |b: usize| (lo as f64 + (hi as f64 - lo as f64) * b as f64 / ni as f64) as f32;
            (0..ni)
                .map(|b| Interval {
                    lo: edge(b),
                    hi: edge(b + 1),
                    count: self.icount[i * ni + b],
                    samples: self.samples[i * ni + b]
                        .iter()
                        .map(|k| k.ex.clone())
                        .collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        FeatureSummary {
            count,
            density: count as f64 / self.rows[0].max(1) as f64,
            mean: if count == 0 {
                0.0
            } else {
                self.sum[i] / count as f64
            },
            max: hi,
            lo,
            top: self.top[i].iter().map(|k| k.ex.clone()).collect(),
            histogram,
            intervals,
        }
    }

    /// Firing counts of all features (first pass).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{SparseCodes, record::contexts::{ContextRecorder, RecordOptions}};
    /// let mut rec = ContextRecorder::new(2, RecordOptions::default())?;
    /// rec.observe(&SparseCodes::from_dense(&[0.0, 1.0, 2.0, 1.0], 2, Vec::new()), 0)?;
    /// assert_eq!(rec.counts(), [1, 2]);
    /// # Ok(()) }
    /// ```
    pub fn counts(&self) -> &[u64] {
        &self.count
    }
}

/// Value of feature `f` in a row with ascending indices (0 when absent).
fn lookup(idx: &[u32], val: &[f32], f: u32) -> f32 {
    match idx.binary_search(&f) {
        Ok(k) => val[k],
        Err(_) => {
            // Codes built elsewhere may not be sorted: fall back to a scan.
            idx.iter().position(|&i| i == f).map_or(0.0, |k| val[k])
        }
    }
}

/// The rows around one row of an activation store that belong to its sequence.
///
/// ```
/// let w = saeplug::record::contexts::Window { first_row: 3, focus: 1, seq: 0, pos: vec![1, 2, 3], tokens: vec![5, 6, 7] };
/// assert_eq!(w.tokens[w.focus], 6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Store row of the window's first token.
    pub first_row: u64,
    /// Index of the example's own token in the window.
    pub focus: usize,
    /// The sequence.
    pub seq: u32,
    /// Positions in the sequence.
    pub pos: Vec<u32>,
    /// Token ids.
    pub tokens: Vec<i32>,
}

/// The window of ±`context` rows around `row` of `split`, cut where the
/// sequence changes (rows of a sequence are consecutive in a store).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
/// use saeplug::record::contexts::window;
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-window-{}", std::process::id()));
/// # std::fs::remove_dir_all(&dir).ok();
/// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
/// // Two sequences: rows 0..3 and 3..5.
/// w.append(Split::Train, &[0.0; 5], &[10, 11, 12, 20, 21], &[0, 0, 0, 1, 1], &[1, 2, 3, 1, 2])?;
/// w.finish()?;
/// let store = ActivationStore::open(&dir)?;
/// let win = window(&store, Split::Train, 2, 2)?;
/// assert_eq!((win.first_row, win.focus, win.tokens.as_slice()), (0, 2, &[10, 11, 12][..]));
/// assert_eq!(window(&store, Split::Train, 3, 1)?.tokens, [20, 21]);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub fn window(store: &ActivationStore, split: Split, row: u64, context: usize) -> Result<Window> {
    let n = store.n_rows(split) as u64;
    if row >= n {
        return Err(Error::invalid(format!(
            "row {row} of split '{}' asked for, but it holds {n} rows",
            split.name()
        )));
    }
    let lo = row.saturating_sub(context as u64);
    let hi = (row + context as u64 + 1).min(n);
    let (start, count) = (lo as usize, (hi - lo) as usize);
    let (seqs, pos) = store.positions(split, start, count)?;
    let tokens = store.tokens(split, start, count)?;
    let c = (row - lo) as usize;
    let seq = seqs[c];
    let mut a = c;
    while a > 0 && seqs[a - 1] == seq {
        a -= 1;
    }
    let mut b = c + 1;
    while b < count && seqs[b] == seq {
        b += 1;
    }
    Ok(Window {
        first_row: lo + a as u64,
        focus: c - a,
        seq,
        pos: pos[a..b].to_vec(),
        tokens: tokens[a..b].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Rng;

    /// A dense `[n, d]` matrix: sparse, with tied values (multiples of 0.25),
    /// some negative values in feature 1 and feature `d - 1` never firing.
    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut x = vec![0.0f32; n * d];
        for r in 0..n {
            for i in 0..d - 1 {
                if rng.uniform() < 0.1 + 0.05 * i as f64 {
                    let mut v = (1 + (rng.next_u64() % 16)) as f32 * 0.25;
                    if i == 1 && rng.uniform() < 0.3 {
                        v = -v;
                    }
                    x[r * d + i] = v;
                }
            }
        }
        x
    }

    fn run(x: &[f32], d: usize, opts: &RecordOptions, batches: &[usize]) -> ContextRecorder {
        let mut rec = ContextRecorder::new(d, opts.clone()).unwrap();
        let n = x.len() / d;
        while rec.needs_pass() {
            let (mut start, mut b) = (0, 0);
            while start < n {
                let take = batches[b % batches.len()].min(n - start);
                let codes =
                    SparseCodes::from_dense(&x[start * d..(start + take) * d], d, Vec::new());
                rec.observe(&codes, start as u64).unwrap();
                start += take;
                b += 1;
            }
            rec.finish_pass().unwrap();
        }
        rec
    }

    /// The window of feature `i` around row `r`, from the dense matrix.
    fn window_of(x: &[f32], d: usize, i: usize, r: usize, c: usize) -> Vec<f32> {
        let n = x.len() / d;
        (0..2 * c + 1)
            .map(|k| {
                let rr = r as i64 + k as i64 - c as i64;
                if rr < 0 || rr >= n as i64 {
                    0.0
                } else {
                    x[rr as usize * d + i]
                }
            })
            .collect()
    }

    #[test]
    fn equals_a_brute_force_recomputation() {
        let (n, d) = (3000, 7);
        let x = data(n, d, 11);
        let opts = RecordOptions {
            top_n: 15,
            intervals: 10,
            per_interval: 4,
            hist_bins: 50,
            context: 3,
            seed: 5,
        };
        // Batching must not matter.
        let a = run(&x, d, &opts, &[1000]);
        let b = run(&x, d, &opts, &[1, 7, 333, 64]);
        for i in 0..d {
            assert_eq!(
                a.feature(i),
                b.feature(i),
                "feature {i}: batching changed the result"
            );
            let f = a.feature(i);
            // Brute force: every firing (value, row), sorted by value desc then row.
            let mut ev: Vec<(f64, usize)> = (0..n)
                .filter(|&r| x[r * d + i] != 0.0)
                .map(|r| (x[r * d + i] as f64, r))
                .collect();
            assert_eq!(f.count, ev.len() as u64);
            assert_eq!(f.density, ev.len() as f64 / n as f64);
            if ev.is_empty() {
                assert!(
                    f.top.is_empty() && f.max == 0.0,
                    "feature {i} never fired: {f:?}"
                );
                assert!(f.histogram.iter().all(|&c| c == 0));
                assert!(
                    f.intervals
                        .iter()
                        .all(|iv| iv.count == 0 && iv.samples.is_empty())
                );
                continue;
            }
            let mean = ev.iter().map(|e| e.0).sum::<f64>() / ev.len() as f64;
            assert!((f.mean - mean).abs() < 1e-9, "{} vs {mean}", f.mean);
            ev.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
            let top: Vec<(f64, usize)> = ev.iter().take(15).copied().collect();
            let got: Vec<(f64, usize)> = f
                .top
                .iter()
                .map(|e| (e.value as f64, e.row as usize))
                .collect();
            assert_eq!(got, top, "feature {i}");
            for e in &f.top {
                assert_eq!(
                    e.window,
                    window_of(&x, d, i, e.row as usize, 3),
                    "feature {i} row {}",
                    e.row
                );
            }
            let max = ev[0].0;
            let lo = ev.iter().map(|e| e.0).fold(0.0f64, f64::min);
            assert_eq!((f.max as f64, f.lo as f64), (max, lo));
            // Histogram and intervals, binned in f64 here.
            let bin = |v: f64, nb: usize| -> usize {
                if max == lo {
                    nb - 1
                } else {
                    (((v - lo) / (max - lo) * nb as f64).floor() as usize).min(nb - 1)
                }
            };
            let mut hist = vec![0u64; 50];
            for e in &ev {
                hist[bin(e.0, 50)] += 1;
            }
            assert_eq!(f.histogram, hist, "feature {i}");
            assert_eq!(f.histogram.iter().sum::<u64>(), f.count);
            for (b, iv) in f.intervals.iter().enumerate() {
                let inside: Vec<&(f64, usize)> = ev.iter().filter(|e| bin(e.0, 10) == b).collect();
                assert_eq!(iv.count, inside.len() as u64, "feature {i} interval {b}");
                // The sample: the rows of the interval with the 4 smallest keys.
                let mut keyed: Vec<(u64, usize)> = inside
                    .iter()
                    .map(|e| (sample_key(5, i as u32, e.1 as u64), e.1))
                    .collect();
                keyed.sort();
                let want: Vec<usize> = keyed.iter().take(4).map(|k| k.1).collect();
                let got: Vec<usize> = iv.samples.iter().map(|s| s.row as usize).collect();
                assert_eq!(got, want, "feature {i} interval {b}");
                for s in &iv.samples {
                    assert!(
                        s.value >= iv.lo && (s.value < iv.hi || b == 9 && s.value <= iv.hi),
                        "{s:?} not in {iv:?}"
                    );
                    assert_eq!(s.window, window_of(&x, d, i, s.row as usize, 3));
                }
            }
        }
        // The never-firing feature is there, and feature 1's range reaches below 0.
        assert_eq!(a.feature(d - 1).count, 0);
        assert!(a.feature(1).lo < 0.0);
    }

    #[test]
    fn other_data_in_the_second_pass_is_refused() {
        let d = 3;
        let x = data(50, d, 2);
        let mut rec = ContextRecorder::new(d, RecordOptions::default()).unwrap();
        rec.observe(&SparseCodes::from_dense(&x, d, Vec::new()), 0)
            .unwrap();
        rec.finish_pass().unwrap();
        let mut y = x.clone();
        y[0] = 100.0; // above the first pass's max
        let err = rec
            .observe(&SparseCodes::from_dense(&y, d, Vec::new()), 0)
            .unwrap_err();
        assert!(err.to_string().contains("second pass"), "{err}");
    }

    #[test]
    fn non_finite_codes_are_refused() {
        let mut rec = ContextRecorder::new(2, RecordOptions::default()).unwrap();
        let codes = SparseCodes::from_dense(&[0.0, f32::NAN], 2, Vec::new());
        assert!(rec.observe(&codes, 0).is_err());
    }
}
