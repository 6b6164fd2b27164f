//! Where training rows come from: any [`ActivationSource`] (an activation store
//! implements it too); [`MatrixSource`] is a plain `[n, d_in]` f32 matrix in
//! memory, a `.npy` file or a safetensors tensor (mapped, never read whole).

use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::{SafeTensors, Tensor, read_npy};

/// Rows of activations, `d_in` wide, read by position.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::train::{ActivationSource, MatrixSource};
/// let src = MatrixSource::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2)?;
/// let mut buf = [0.0; 4];
/// src.rows(1, &mut buf)?; // rows 1 and 2
/// assert_eq!(buf, [3.0, 4.0, 5.0, 6.0]);
/// # Ok(()) }
/// ```
pub trait ActivationSource {
    /// Row width.
    ///
    /// ```
    /// use saeplug::train::{ActivationSource, MatrixSource};
    /// assert_eq!(MatrixSource::new(vec![0.0; 6], 3).unwrap().d_in(), 3);
    /// ```
    fn d_in(&self) -> usize;

    /// Number of rows.
    ///
    /// ```
    /// use saeplug::train::{ActivationSource, MatrixSource};
    /// assert_eq!(MatrixSource::new(vec![0.0; 6], 3).unwrap().n_rows(), 2);
    /// ```
    fn n_rows(&self) -> usize;

    /// Copy rows `start..start + out.len() / d_in` into `out`; rows past the end
    /// are an error.
    ///
    /// ```
    /// use saeplug::train::{ActivationSource, MatrixSource};
    /// let src = MatrixSource::new(vec![0.0; 6], 3).unwrap();
    /// assert!(src.rows(1, &mut [0.0; 6]).is_err());
    /// ```
    fn rows(&self, start: usize, out: &mut [f32]) -> Result<()>;
}

/// Fill `out` with rows `first, first + 1, ...` of `src`, wrapping around at the
/// end (a small input is cycled over as many times as needed).
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::train::{MatrixSource, cycle_rows};
/// let src = MatrixSource::new(vec![1.0, 2.0, 3.0], 1)?;
/// let mut out = [0.0; 5];
/// cycle_rows(&src, 2, &mut out)?;
/// assert_eq!(out, [3.0, 1.0, 2.0, 3.0, 1.0]);
/// # Ok(()) }
/// ```
pub fn cycle_rows(src: &dyn ActivationSource, first: u64, out: &mut [f32]) -> Result<()> {
    let (d, n) = (src.d_in(), src.n_rows());
    if d == 0 || n == 0 || !out.len().is_multiple_of(d) {
        return Err(Error::invalid(
            "cannot cycle over an empty activation source",
        ));
    }
    let mut row = (first % n as u64) as usize;
    let mut rest = out;
    while !rest.is_empty() {
        let take = (n - row).min(rest.len() / d);
        let (now, tail) = rest.split_at_mut(take * d);
        src.rows(row, now)?;
        rest = tail;
        row = (row + take) % n;
    }
    Ok(())
}

/// A dense f32 matrix `[n, d_in]`.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::train::{ActivationSource, MatrixSource};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-msrc-{}.npy", std::process::id()));
/// saeplug::weights::write_npy(&path, &[2, 3], &[0.0; 6])?;
/// let src = MatrixSource::open(&path, None)?;
/// assert_eq!((src.n_rows(), src.d_in()), (2, 3));
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MatrixSource {
    data: Tensor,
    d_in: usize,
}

impl MatrixSource {
    /// Rows held in memory.
    ///
    /// ```
    /// assert!(saeplug::train::MatrixSource::new(vec![0.0; 5], 2).is_err()); // not whole rows
    /// ```
    pub fn new(data: Vec<f32>, d_in: usize) -> Result<Self> {
        if d_in == 0 || data.is_empty() || !data.len().is_multiple_of(d_in) {
            return Err(Error::invalid(format!(
                "{} values are not a positive whole number of rows of width {d_in}",
                data.len()
            )));
        }
        let n = data.len() / d_in;
        Ok(MatrixSource {
            data: Tensor::owned("acts", vec![n, d_in], data)?,
            d_in,
        })
    }

    /// A `.npy` file, or a tensor of a `.safetensors` file (`tensor`, or `acts`,
    /// or its only tensor), of shape `[n, d_in]`.
    ///
    /// ```
    /// let p = std::env::temp_dir().join("saeplug-doc-no-such-file.npy");
    /// assert!(saeplug::train::MatrixSource::open(&p, None).is_err());
    /// ```
    pub fn open(path: &Path, tensor: Option<&str>) -> Result<Self> {
        let is_npy = path.extension().is_some_and(|e| e == "npy");
        let data = if is_npy {
            read_npy(path)?
        } else {
            let st = SafeTensors::open(path)?;
            let name = match tensor {
                Some(t) => t.to_string(),
                None if st.tensors.contains_key("acts") => "acts".into(),
                None if st.tensors.len() == 1 => {
                    st.tensors.keys().next().cloned().unwrap_or_default()
                }
                None => {
                    return Err(Error::format(
                        path,
                        "several tensors and none named 'acts': name the one to train on",
                    ));
                }
            };
            st.tensor(&name)?
        };
        let s = data.shape().to_vec();
        if s.len() != 2 || s[0] == 0 || s[1] == 0 {
            return Err(Error::format(
                path,
                format!("training input must be a non-empty [n, d_in] matrix, found shape {s:?}"),
            ));
        }
        Ok(MatrixSource { data, d_in: s[1] })
    }

    /// Check every value is finite; the first bad one is reported as an error
    /// naming its row and column.
    ///
    /// ```
    /// use saeplug::train::MatrixSource;
    /// assert!(MatrixSource::new(vec![1.0, f32::NAN], 1).unwrap().check_finite().is_err());
    /// ```
    pub fn check_finite(&self) -> Result<()> {
        match self.data.as_slice().iter().position(|v| !v.is_finite()) {
            Some(p) => Err(Error::NonFinite {
                row: p / self.d_in,
                col: p % self.d_in,
                value: self.data.as_slice()[p],
            }),
            None => Ok(()),
        }
    }
}

impl ActivationSource for MatrixSource {
    fn d_in(&self) -> usize {
        self.d_in
    }

    fn n_rows(&self) -> usize {
        self.data.as_slice().len() / self.d_in
    }

    fn rows(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let a = start.checked_mul(self.d_in);
        let z = a.and_then(|a| a.checked_add(out.len()));
        match (a, z) {
            (Some(a), Some(z))
                if z <= self.data.as_slice().len() && out.len().is_multiple_of(self.d_in) =>
            {
                out.copy_from_slice(&self.data.as_slice()[a..z]);
                Ok(())
            }
            _ => Err(Error::invalid(format!(
                "rows {start}.. ({} values) are past the end of the {} rows",
                out.len(),
                self.n_rows()
            ))),
        }
    }
}

/// One split of an activation store as training rows, in a fixed order shuffled
/// by `seed` across sequences (captured rows are in sequence order; TRAINING.md
/// asks for shuffling) or, with no seed, as stored. Rows are gathered from the
/// mapped shards batch by batch; the store is never read whole.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::store::{Split, StoreSpec, StoreWriter};
/// use saeplug::train::{ActivationSource, StoreSource};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-ssrc-{}", std::process::id()));
/// let mut w = StoreWriter::create(&dir, StoreSpec::new(2, "x"))?;
/// w.append(Split::Train, &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], &[0; 3], &[1, 2, 3], &[5, 6, 7])?;
/// w.finish()?;
/// let src = StoreSource::open(&dir, Split::Train, Some(7))?;
/// assert_eq!((src.n_rows(), src.d_in()), (3, 2));
/// let mut all = [0.0; 6];
/// src.rows(0, &mut all)?;
/// let mut seen: Vec<f32> = all.iter().step_by(2).copied().collect();
/// seen.sort_by(f32::total_cmp);
/// assert_eq!(seen, [1.0, 2.0, 3.0]); // every row once, in shuffled order
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StoreSource {
    store: crate::store::ActivationStore,
    split: crate::store::Split,
    order: Vec<usize>,
}

impl StoreSource {
    /// Open `split` of the store in `dir`; `seed` shuffles the row order.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join("saeplug-doc-no-store");
    /// assert!(saeplug::train::StoreSource::open(&dir, saeplug::store::Split::Train, None).is_err());
    /// ```
    pub fn open(dir: &Path, split: crate::store::Split, seed: Option<u64>) -> Result<Self> {
        let store = crate::store::ActivationStore::open(dir)?;
        let n = store.n_rows(split);
        let mut order: Vec<usize> = (0..n).collect();
        if let Some(seed) = seed {
            // Fisher-Yates with the project's deterministic generator.
            let mut rng = crate::synthetic::Rng::new(seed);
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        Ok(StoreSource {
            store,
            split,
            order,
        })
    }

    /// An error naming the first rows holding NaN or Inf (never trained on). The
    /// store writer skips such rows; a shard written or edited by other tools may
    /// still hold them.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::store::{Split, StoreSpec, StoreWriter};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-ssnan-{}", std::process::id()));
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[1.0, f32::NAN], &[0; 2], &[1, 2], &[5, 6])?;
    /// w.finish()?; // the NaN row was skipped and counted
    /// let src = saeplug::train::StoreSource::open(&dir, Split::Train, None)?;
    /// assert!(src.check_finite().is_ok());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn check_finite(&self) -> Result<()> {
        let bad = self.store.non_finite_rows(self.split)?;
        if bad.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{} rows of split '{}' hold NaN or Inf (first: row {})",
            bad.len(),
            self.split.name(),
            bad[0]
        )))
    }

    /// The store.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::store::{Split, StoreSpec, StoreWriter};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-ssst-{}", std::process::id()));
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[1.0], &[0], &[1], &[5])?;
    /// w.finish()?;
    /// let src = saeplug::train::StoreSource::open(&dir, Split::Train, None)?;
    /// assert_eq!(src.store().d_in(), 1);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &crate::store::ActivationStore {
        &self.store
    }
}

impl ActivationSource for StoreSource {
    fn d_in(&self) -> usize {
        self.store.d_in()
    }

    fn n_rows(&self) -> usize {
        self.order.len()
    }

    fn rows(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let d = self.d_in().max(1);
        let count = out.len() / d;
        let idx = start
            .checked_add(count)
            .and_then(|end| self.order.get(start..end))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "rows {start}..{} asked for, the split holds {}",
                    start.saturating_add(count),
                    self.order.len()
                ))
            })?;
        self.store.gather_into(self.split, idx, out)
    }
}
