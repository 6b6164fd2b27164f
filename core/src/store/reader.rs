//! Reading an activation store: the manifest, then every shard mapped and checked
//! against it; rows are copied out (as f32) on request, never loaded whole.

use std::path::{Path, PathBuf};

use super::{MANIFEST, Manifest, Split, StoreDType};
use crate::error::{Error, Result};
use crate::weights::{RawTensor, SafeTensors, first_non_finite};

/// One mapped shard and where its tensors are.
#[derive(Debug)]
struct Shard {
    st: SafeTensors,
    rows: usize,
    acts: usize,
    tokens: usize,
    seq: usize,
    pos: usize,
}

#[derive(Debug, Default)]
struct SplitData {
    shards: Vec<Shard>,
    /// First row of each shard, plus the total at the end.
    starts: Vec<usize>,
}

impl SplitData {
    fn rows(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The shard holding row `r` (< rows) and the row's index inside it.
    fn locate(&self, r: usize) -> (usize, usize) {
        // starts[i] <= r < starts[i + 1]
        let i = self.starts.partition_point(|&s| s <= r) - 1;
        (i, r - self.starts[i])
    }
}

/// A memory-mapped activation store (see [`crate::store`]).
///
/// Opening reads the manifest and maps every shard it lists, checking each one's
/// tensors (names, dtypes, shapes, row counts) against it: a missing shard, a
/// truncated one, or one whose rows disagree with the manifest is a
/// [`crate::ErrorKind::Format`] error naming the file. Reading rows copies them out
/// as f32 (converting F16) and refuses NaN or infinite values with
/// [`crate::ErrorKind::NonFinite`] (the row index is the split's). Before each read
/// the shards touched are checked for changes on disk
/// ([`crate::ErrorKind::FileChanged`]); as with every mapped file, a shard must not
/// be truncated while a read runs.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{ErrorKind, store::{ActivationStore, Split, StoreSpec, StoreWriter}};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-reader-{}", std::process::id()));
/// # std::fs::remove_dir_all(&dir).ok();
/// let mut spec = StoreSpec::new(3, "l_out-6");
/// spec.shard_rows = 4;
/// let mut w = StoreWriter::create(&dir, spec)?;
/// let acts: Vec<f32> = (0..30).map(|i| i as f32 * 0.5).collect();
/// let seq: Vec<u32> = (0..10).map(|i| i / 5).collect();
/// let pos: Vec<u32> = (0..10).map(|i| 1 + i % 5).collect();
/// w.append(Split::Train, &acts, &[0; 10], &seq, &pos)?;
/// w.finish()?;
/// let store = ActivationStore::open(&dir)?;
/// let mut out = vec![0.0; 2 * 3];
/// store.gather_into(Split::Train, &[9, 0], &mut out)?; // any rows, any order
/// assert_eq!(out, [13.5, 14.0, 14.5, 0.0, 0.5, 1.0]);
/// assert_eq!(store.positions(Split::Train, 4, 2)?, (vec![0, 1], vec![5, 1]));
/// // Rows past the end are an error.
/// assert_eq!(store.rows(Split::Train, 9, 2).unwrap_err().kind(), ErrorKind::InvalidArgument);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ActivationStore {
    dir: PathBuf,
    manifest: Manifest,
    splits: [SplitData; 2],
}

fn slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Heldout => 1,
    }
}

impl ActivationStore {
    /// Open a finished store (its manifest says `complete: true`).
    ///
    /// ```
    /// use saeplug::{ErrorKind, store::ActivationStore};
    /// let err = ActivationStore::open("/nonexistent/store".as_ref()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Io);
    /// ```
    pub fn open(dir: &Path) -> Result<Self> {
        let s = Self::open_partial(dir)?;
        if !s.manifest.complete {
            return Err(Error::format(
                dir.join(MANIFEST),
                format!(
                    "the store is incomplete (its capture is running or was interrupted): \
                     {} whole rows in {} shards; ActivationStore::open_partial reads them",
                    s.manifest.train.rows() + s.manifest.heldout.rows(),
                    s.manifest.train.shards.len() + s.manifest.heldout.shards.len()
                ),
            ));
        }
        Ok(s)
    }

    /// Open a store whose capture may still be running or was interrupted: the
    /// shards its manifest lists (each written whole before being listed).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-partial-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// let mut spec = StoreSpec::new(1, "x");
    /// spec.shard_rows = 2;
    /// let mut w = StoreWriter::create(&dir, spec)?;
    /// w.append(Split::Train, &[1.0, 2.0, 3.0], &[0; 3], &[0; 3], &[1, 2, 3])?;
    /// drop(w); // interrupted: the third row was still buffered
    /// assert!(ActivationStore::open(&dir).is_err());
    /// assert_eq!(ActivationStore::open_partial(&dir)?.n_rows(Split::Train), 2);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn open_partial(dir: &Path) -> Result<Self> {
        let mpath = dir.join(MANIFEST);
        let file = crate::weights::open_regular(&mpath)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut { file }, &mut bytes).map_err(|e| Error::io(&mpath, e))?;
        let manifest = Manifest::parse(&mpath, &bytes)?;
        let mut splits = [SplitData::default(), SplitData::default()];
        for split in [Split::Train, Split::Heldout] {
            let data = &mut splits[slot(split)];
            let mut at = 0usize;
            for info in &manifest.split(split).shards {
                let path = dir.join(&info.file);
                if !path.exists() {
                    return Err(Error::format(
                        &path,
                        format!(
                            "shard listed in {MANIFEST} ({} rows of split '{}') is missing",
                            info.rows,
                            split.name()
                        ),
                    ));
                }
                let st = SafeTensors::open(&path)?;
                let shard = check_shard(&path, st, info.rows, &manifest)?;
                data.starts.push(at);
                at = at
                    .checked_add(shard.rows)
                    .ok_or_else(|| Error::format(&mpath, "row count overflows".to_string()))?;
                data.shards.push(shard);
            }
            data.starts.push(at);
        }
        Ok(ActivationStore {
            dir: dir.to_path_buf(),
            manifest,
            splits,
        })
    }

    /// The manifest.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rmanifest-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, StoreSpec, StoreWriter};
    /// StoreWriter::create(&dir, StoreSpec::new(5, "l_out-2"))?.finish()?;
    /// assert_eq!(ActivationStore::open(&dir)?.manifest().hook_name, "l_out-2");
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The store's folder.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rdir-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, StoreSpec, StoreWriter};
    /// StoreWriter::create(&dir, StoreSpec::new(5, "x"))?.finish()?;
    /// assert_eq!(ActivationStore::open(&dir)?.dir(), dir);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Width of a row.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rdin-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, StoreSpec, StoreWriter};
    /// StoreWriter::create(&dir, StoreSpec::new(5, "x"))?.finish()?;
    /// assert_eq!(ActivationStore::open(&dir)?.d_in(), 5);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn d_in(&self) -> usize {
        self.manifest.d_in
    }

    /// Rows in `split`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rn-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Heldout, &[1.0], &[0], &[0], &[1])?;
    /// w.finish()?;
    /// let s = ActivationStore::open(&dir)?;
    /// assert_eq!((s.n_rows(Split::Train), s.n_rows(Split::Heldout)), (0, 1));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn n_rows(&self, split: Split) -> usize {
        self.splits[slot(split)].rows()
    }

    fn check_range(&self, split: Split, start: usize, count: usize) -> Result<()> {
        let n = self.n_rows(split);
        if start.checked_add(count).is_none_or(|e| e > n) {
            return Err(Error::invalid(format!(
                "rows {start}..{} of split '{}' asked for, but it holds {n} rows",
                start.saturating_add(count),
                split.name()
            )));
        }
        Ok(())
    }

    /// Copy rows `start..start + count` of `split` as f32 into a new vector
    /// (`count * d_in` values). See [`ActivationStore::rows_into`].
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rrows-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreDType, StoreSpec, StoreWriter};
    /// let mut spec = StoreSpec::new(2, "x");
    /// spec.dtype = StoreDType::F16;
    /// let mut w = StoreWriter::create(&dir, spec)?;
    /// w.append(Split::Train, &[0.5, -1.25, 3.0, 1e-3], &[0, 0], &[0, 0], &[1, 2])?;
    /// w.finish()?;
    /// let rows = ActivationStore::open(&dir)?.rows(Split::Train, 0, 2)?;
    /// assert_eq!(&rows[..3], [0.5, -1.25, 3.0]); // exact in f16
    /// assert!((rows[3] - 1e-3).abs() < 1e-6); // rounded to f16
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn rows(&self, split: Split, start: usize, count: usize) -> Result<Vec<f32>> {
        self.check_range(split, start, count)?;
        let mut out = vec![0.0f32; count * self.d_in()];
        self.rows_into(split, start, &mut out)?;
        Ok(out)
    }

    /// Copy rows `start..` of `split` into `out` (`out.len() / d_in` rows; its
    /// length must be a multiple of `d_in`), converting F16 to f32. A NaN or
    /// infinite value is an [`crate::ErrorKind::NonFinite`] error giving its row
    /// (in the split) and column; `out` may then hold part of the rows.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rinto-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// let mut spec = StoreSpec::new(2, "x");
    /// spec.shard_rows = 1; // every row in its own shard: reads cross shards
    /// let mut w = StoreWriter::create(&dir, spec)?;
    /// w.append(Split::Train, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[0; 3], &[0; 3], &[1, 2, 3])?;
    /// w.finish()?;
    /// let mut out = [0.0f32; 4];
    /// ActivationStore::open(&dir)?.rows_into(Split::Train, 1, &mut out)?;
    /// assert_eq!(out, [3.0, 4.0, 5.0, 6.0]);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn rows_into(&self, split: Split, start: usize, out: &mut [f32]) -> Result<()> {
        let d = self.d_in();
        if !out.len().is_multiple_of(d) {
            return Err(Error::invalid(format!(
                "output buffer of {} values is not a whole number of rows of {d}",
                out.len()
            )));
        }
        let count = out.len() / d;
        self.check_range(split, start, count)?;
        let data = &self.splits[slot(split)];
        let mut r = start;
        let mut done = 0usize;
        while done < count {
            let (i, local) = data.locate(r);
            let sh = &data.shards[i];
            let take = (sh.rows - local).min(count - done);
            sh.st.file.check_unchanged()?;
            self.copy_rows(sh, local, &mut out[done * d..(done + take) * d]);
            r += take;
            done += take;
        }
        check_finite(start, d, out)
    }

    /// Copy the rows with the given indices (in any order, repeats allowed) of
    /// `split` into `out` (`rows.len() * d_in` values): for shuffled batches. NaN or
    /// infinite values are refused as in [`ActivationStore::rows_into`].
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-gather-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[10.0, 20.0, 30.0], &[0; 3], &[0; 3], &[1, 2, 3])?;
    /// w.finish()?;
    /// let mut out = [0.0f32; 3];
    /// ActivationStore::open(&dir)?.gather_into(Split::Train, &[2, 2, 0], &mut out)?;
    /// assert_eq!(out, [30.0, 30.0, 10.0]);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn gather_into(&self, split: Split, rows: &[usize], out: &mut [f32]) -> Result<()> {
        let d = self.d_in();
        if rows.len().checked_mul(d) != Some(out.len()) {
            return Err(Error::invalid(format!(
                "output buffer of {} values for {} rows of {d}",
                out.len(),
                rows.len()
            )));
        }
        let data = &self.splits[slot(split)];
        let n = data.rows();
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::invalid(format!(
                "row {bad} of split '{}' asked for, but it holds {n} rows",
                split.name()
            )));
        }
        for sh in &data.shards {
            sh.st.file.check_unchanged()?;
        }
        for (k, &r) in rows.iter().enumerate() {
            let (i, local) = data.locate(r);
            let dst = &mut out[k * d..(k + 1) * d];
            self.copy_rows(&data.shards[i], local, dst);
            if let Some(c) = first_non_finite(dst) {
                return Err(Error::NonFinite {
                    row: r,
                    col: c,
                    value: dst[c],
                });
            }
        }
        Ok(())
    }

    /// Token ids of rows `start..start + count` of `split`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rtok-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[0.0, 0.0], &[42, -1], &[0, 0], &[1, 2])?;
    /// w.finish()?;
    /// assert_eq!(ActivationStore::open(&dir)?.tokens(Split::Train, 0, 2)?, [42, -1]);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn tokens(&self, split: Split, start: usize, count: usize) -> Result<Vec<i32>> {
        let mut v = Vec::with_capacity(count);
        self.ints(
            split,
            start,
            count,
            |s| s.tokens,
            |b| v.push(i32::from_le_bytes(b)),
        )?;
        Ok(v)
    }

    /// Sequence indices and positions (`(seq, pos)`) of rows `start..start +
    /// count` of `split`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rpos-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[0.0, 0.0], &[1, 2], &[7, 8], &[1, 1])?;
    /// w.finish()?;
    /// assert_eq!(ActivationStore::open(&dir)?.positions(Split::Train, 0, 2)?, (vec![7, 8], vec![1, 1]));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn positions(
        &self,
        split: Split,
        start: usize,
        count: usize,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let (mut seq, mut pos) = (Vec::with_capacity(count), Vec::with_capacity(count));
        self.ints(
            split,
            start,
            count,
            |s| s.seq,
            |b| seq.push(u32::from_le_bytes(b)),
        )?;
        self.ints(
            split,
            start,
            count,
            |s| s.pos,
            |b| pos.push(u32::from_le_bytes(b)),
        )?;
        Ok((seq, pos))
    }

    /// Indices (in the split) of every row holding a NaN or infinite value: a
    /// full scan, a shard at a time. A store written by [`super::StoreWriter`]
    /// has none; this finds damage done later or by other writers.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-rnf-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[1.0, 2.0], &[0, 0], &[0, 0], &[1, 2])?;
    /// w.finish()?;
    /// assert!(ActivationStore::open(&dir)?.non_finite_rows(Split::Train)?.is_empty());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn non_finite_rows(&self, split: Split) -> Result<Vec<usize>> {
        let d = self.d_in();
        let data = &self.splits[slot(split)];
        let mut bad = Vec::new();
        let mut buf = Vec::new();
        for (sh, &first) in data.shards.iter().zip(&data.starts) {
            sh.st.file.check_unchanged()?;
            const CHUNK: usize = 4096;
            let mut local = 0;
            while local < sh.rows {
                let take = CHUNK.min(sh.rows - local);
                buf.resize(take * d, 0.0);
                self.copy_rows(sh, local, &mut buf);
                let mut from = 0;
                while let Some(i) = first_non_finite(&buf[from..]) {
                    let row = (from + i) / d;
                    bad.push(first + local + row);
                    from = (row + 1) * d;
                }
                local += take;
            }
        }
        Ok(bad)
    }

    /// Copy `out.len() / d_in` rows of `sh` from its row `local` (bounds checked
    /// by the caller; the shard's size was checked at open).
    fn copy_rows(&self, sh: &Shard, local: usize, out: &mut [f32]) {
        let d = self.d_in();
        let bytes = sh.st.file.bytes();
        let es = self.manifest.dtype.size();
        let begin = sh.acts + local * d * es;
        let src = &bytes[begin..begin + out.len() * es];
        match self.manifest.dtype {
            StoreDType::F32 => match bytemuck::try_cast_slice::<u8, f32>(src) {
                Ok(f) if cfg!(target_endian = "little") => out.copy_from_slice(f),
                _ => {
                    for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
            },
            StoreDType::F16 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
        }
    }

    /// Walk the 4-byte integers of one per-row tensor over a row range.
    fn ints(
        &self,
        split: Split,
        start: usize,
        count: usize,
        which: impl Fn(&Shard) -> usize,
        mut f: impl FnMut([u8; 4]),
    ) -> Result<()> {
        self.check_range(split, start, count)?;
        let data = &self.splits[slot(split)];
        let mut r = start;
        let end = start + count;
        while r < end {
            let (i, local) = data.locate(r);
            let sh = &data.shards[i];
            sh.st.file.check_unchanged()?;
            let take = (sh.rows - local).min(end - r);
            let b = which(sh) + 4 * local;
            for c in sh.st.file.bytes()[b..b + 4 * take].chunks_exact(4) {
                f([c[0], c[1], c[2], c[3]]);
            }
            r += take;
        }
        Ok(())
    }
}

fn check_finite(start: usize, d: usize, out: &[f32]) -> Result<()> {
    match first_non_finite(out) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            row: start + i / d,
            col: i % d,
            value: out[i],
        }),
    }
}

/// Check a shard's four tensors against the manifest; return where they are.
fn check_shard(path: &Path, st: SafeTensors, rows: usize, m: &Manifest) -> Result<Shard> {
    let get = |name: &str, dtype: &str, shape: &[usize]| -> Result<usize> {
        let t: &RawTensor = st.raw.get(name).ok_or_else(|| Error::MissingTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
        })?;
        if t.dtype != dtype {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{name}' is {}, but the manifest says {dtype}",
                    t.dtype
                ),
            ));
        }
        if t.shape != shape {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{name}' has shape {:?}, but the manifest says {shape:?} \
                     ({rows} rows of {}): manifest and shard disagree",
                    t.shape, m.d_in
                ),
            ));
        }
        Ok(t.offset)
    };
    let acts = get("acts", m.dtype.name(), &[rows, m.d_in])?;
    let tokens = get("tokens", "I32", &[rows])?;
    let seq = get("seq", "U32", &[rows])?;
    let pos = get("pos", "U32", &[rows])?;
    Ok(Shard {
        st,
        rows,
        acts,
        tokens,
        seq,
        pos,
    })
}
