//! Writing an activation store: rows are buffered per split and written a shard
//! at a time, each shard and each version of the manifest atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::sha256::sha256_file;
use super::{MANIFEST, Manifest, ModelInfo, ShardInfo, Split, SplitInfo, StoreDType};
use crate::error::{Error, Result};
use crate::weights::write_atomic_with;

/// What a new store records, and how it is cut into shards.
///
/// ```
/// let spec = saeplug::store::StoreSpec::new(576, "l_out-6");
/// assert_eq!((spec.d_in, spec.dtype, spec.bos_excluded), (576, saeplug::store::StoreDType::F32, true));
/// assert_eq!(spec.shard_rows, 256 * 1024 * 1024 / (576 * 4)); // about 256 MiB of f32 per shard
/// ```
#[derive(Clone, Debug)]
pub struct StoreSpec {
    /// Width of one row.
    pub d_in: usize,
    /// Element type of the stored activations.
    pub dtype: StoreDType,
    /// Rows per shard (the last shard of a split may hold fewer).
    pub shard_rows: usize,
    /// Hook name (llama.cpp: `l_out-N`).
    pub hook_name: String,
    /// Layer index, when the hook has one.
    pub layer: Option<u32>,
    /// Tokens per sequence (0: not fixed).
    pub context_length: usize,
    /// Whether the caller leaves out the BOS position of each sequence (it is
    /// recorded; the writer does not look at token ids).
    pub bos_excluded: bool,
    /// The model file: its name, size and SHA-256 go into the manifest (the file
    /// is read once, at [`StoreWriter::create`]).
    pub model_path: Option<PathBuf>,
    /// Free-form facts recorded in the manifest.
    pub metadata: BTreeMap<String, String>,
}

impl StoreSpec {
    /// A spec with defaults: F32, shards of about 256 MiB, BOS excluded, no
    /// model, no layer, context length 0.
    ///
    /// ```
    /// let spec = saeplug::store::StoreSpec::new(4, "resid");
    /// assert_eq!((spec.layer, spec.context_length), (None, 0));
    /// ```
    pub fn new(d_in: usize, hook_name: impl Into<String>) -> Self {
        StoreSpec {
            d_in,
            dtype: StoreDType::F32,
            shard_rows: ((256usize << 20) / d_in.max(1) / 4).max(1),
            hook_name: hook_name.into(),
            layer: None,
            context_length: 0,
            bos_excluded: true,
            model_path: None,
            metadata: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
struct Pending {
    /// Row data, already in the store's dtype (little-endian bytes).
    acts: Vec<u8>,
    tokens: Vec<i32>,
    seq: Vec<u32>,
    pos: Vec<u32>,
    /// Sequences seen in the split so far (for the manifest's count).
    sequences: BTreeSet<u32>,
}

impl Pending {
    fn rows(&self) -> usize {
        self.tokens.len()
    }
}

/// Writes an activation store folder (see [`crate::store`]).
///
/// Every `shard_rows` rows of a split become one shard, written to a temporary
/// name and renamed; the manifest is rewritten (atomically) after each shard with
/// `complete: false`, and with `complete: true` by [`StoreWriter::finish`]. A
/// capture killed half way leaves a readable store of whole shards
/// ([`crate::store::ActivationStore::open_partial`]); a writer dropped without
/// `finish` loses only its buffered rows. Rows holding NaN or infinite values
/// (or values an F16 store cannot hold) are skipped and counted
/// ([`Manifest::skipped_non_finite`]), never stored.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::store::{Split, StoreSpec, StoreWriter};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-writer-{}", std::process::id()));
/// # std::fs::remove_dir_all(&dir).ok();
/// let mut w = StoreWriter::create(&dir, StoreSpec::new(2, "l_out-0"))?;
/// w.append(Split::Train, &[1.0, 2.0, f32::NAN, 0.0], &[7, 8], &[0, 0], &[1, 2])?;
/// let m = w.finish()?;
/// assert_eq!((m.train.rows(), m.skipped_non_finite), (1, 1));
/// // A folder that already holds a store is refused.
/// assert!(StoreWriter::create(&dir, StoreSpec::new(2, "l_out-0")).is_err());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub struct StoreWriter {
    dir: PathBuf,
    shard_rows: usize,
    manifest: Manifest,
    pending: [Pending; 2],
}

fn slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Heldout => 1,
    }
}

impl StoreWriter {
    /// Create the folder `dir` (and its parents) and an empty, incomplete store in
    /// it. Refuses a folder that already holds a `manifest.json`, `d_in` or
    /// `shard_rows` of 0, and a model path that cannot be read.
    ///
    /// ```
    /// use saeplug::{ErrorKind, store::{StoreSpec, StoreWriter}};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-create-{}", std::process::id()));
    /// let err = StoreWriter::create(&dir, StoreSpec::new(0, "x")).err().unwrap();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// ```
    pub fn create(dir: &Path, spec: StoreSpec) -> Result<Self> {
        if spec.d_in == 0 || spec.shard_rows == 0 {
            return Err(Error::invalid(format!(
                "activation store: d_in ({}) and shard_rows ({}) must be at least 1",
                spec.d_in, spec.shard_rows
            )));
        }
        if spec
            .d_in
            .checked_mul(spec.shard_rows)
            .is_none_or(|n| n > isize::MAX as usize / 4)
        {
            return Err(Error::invalid(
                "activation store: d_in x shard_rows is too large",
            ));
        }
        let model = match &spec.model_path {
            None => None,
            Some(p) => {
                let bytes = std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
                Some(ModelInfo {
                    file: p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    sha256: sha256_file(p)?,
                    bytes,
                })
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mpath = dir.join(MANIFEST);
        if mpath.exists() {
            return Err(Error::invalid(format!(
                "{} already holds an activation store (it has a {MANIFEST}); choose a new folder",
                dir.display()
            )));
        }
        let manifest = Manifest {
            d_in: spec.d_in,
            dtype: spec.dtype,
            hook_name: spec.hook_name,
            layer: spec.layer,
            context_length: spec.context_length,
            bos_excluded: spec.bos_excluded,
            model,
            train: SplitInfo::default(),
            heldout: SplitInfo::default(),
            skipped_non_finite: 0,
            complete: false,
            metadata: spec.metadata,
        };
        let w = StoreWriter {
            dir: dir.to_path_buf(),
            shard_rows: spec.shard_rows,
            manifest,
            pending: [Pending::default(), Pending::default()],
        };
        w.write_manifest()?;
        Ok(w)
    }

    /// The manifest as it stands (shards written so far).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-wmanifest-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{StoreSpec, StoreWriter};
    /// let w = StoreWriter::create(&dir, StoreSpec::new(3, "x"))?;
    /// assert!(!w.manifest().complete);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Rows accepted so far in `split` (written or buffered; skipped rows not
    /// counted).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-wrows-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[1.0, 2.0], &[1, 2], &[0, 0], &[1, 2])?;
    /// assert_eq!((w.rows(Split::Train), w.rows(Split::Heldout)), (2, 0));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn rows(&self, split: Split) -> usize {
        self.manifest.split(split).rows() + self.pending[slot(split)].rows()
    }

    /// Set (or replace) a free-form manifest entry; written with the next shard.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-wmeta-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.set_metadata("corpus", "fortunes");
    /// assert_eq!(w.finish()?.metadata["corpus"], "fortunes");
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.manifest.metadata.insert(key.into(), value.into());
    }

    /// Append `n` rows to `split`: `acts` `[n, d_in]`, and for each row its token
    /// id, sequence and position (`tokens`, `seq`, `pos` of length `n`). Rows with
    /// a non-finite value (or beyond F16's range in an F16 store) are skipped and
    /// counted. Writes a shard whenever `shard_rows` rows are buffered. Lengths
    /// are checked before any row is taken.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-append-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::{ErrorKind, store::{Split, StoreSpec, StoreWriter}};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(2, "x"))?;
    /// // Two rows of activations but one token id: refused.
    /// let err = w.append(Split::Train, &[0.0; 4], &[1], &[0], &[1]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn append(
        &mut self,
        split: Split,
        acts: &[f32],
        tokens: &[i32],
        seq: &[u32],
        pos: &[u32],
    ) -> Result<()> {
        let d = self.manifest.d_in;
        let n = tokens.len();
        if seq.len() != n || pos.len() != n || n.checked_mul(d) != Some(acts.len()) {
            return Err(Error::invalid(format!(
                "activation store append: acts has {} values, tokens {}, seq {}, pos {} \
                 entries; expected n x {d} values and n entries each",
                acts.len(),
                tokens.len(),
                seq.len(),
                pos.len()
            )));
        }
        let dtype = self.manifest.dtype;
        for (r, row) in acts.chunks_exact(d).enumerate() {
            let fits = match dtype {
                StoreDType::F32 => row.iter().all(|v| v.is_finite()),
                // f16's largest finite value is 65504; larger ones would round to inf.
                StoreDType::F16 => row
                    .iter()
                    .all(|v| v.is_finite() && half::f16::from_f32(*v).is_finite()),
            };
            if !fits {
                self.manifest.skipped_non_finite += 1;
                continue;
            }
            let p = &mut self.pending[slot(split)];
            match dtype {
                StoreDType::F32 => p.acts.extend(row.iter().flat_map(|v| v.to_le_bytes())),
                StoreDType::F16 => p.acts.extend(
                    row.iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
                ),
            }
            p.tokens.push(tokens[r]);
            p.seq.push(seq[r]);
            p.pos.push(pos[r]);
            p.sequences.insert(seq[r]);
            if p.rows() == self.shard_rows {
                self.flush(split)?;
            }
        }
        Ok(())
    }

    /// Write the buffered rows of `split` as one shard, then the manifest.
    fn flush(&mut self, split: Split) -> Result<()> {
        let i = slot(split);
        let rows = self.pending[i].rows();
        if rows == 0 {
            return Ok(());
        }
        let index = self.manifest.split(split).shards.len();
        let file = format!("{}-{index:05}.safetensors", split.name());
        let p = &self.pending[i];
        write_shard(
            &self.dir.join(&file),
            self.manifest.dtype,
            self.manifest.d_in,
            &p.acts,
            &p.tokens,
            &p.seq,
            &p.pos,
            &[("split", split.name())],
        )?;
        let sequences = p.sequences.len() as u64;
        let p = &mut self.pending[i];
        p.acts.clear();
        p.tokens.clear();
        p.seq.clear();
        p.pos.clear();
        let s = self.manifest.split_mut(split);
        s.shards.push(ShardInfo { file, rows });
        s.sequences = sequences;
        self.write_manifest()
    }

    fn write_manifest(&self) -> Result<()> {
        let text = self.manifest.to_json();
        write_atomic_with(&self.dir.join(MANIFEST), |w| w.write_all(text.as_bytes()))
    }

    /// Write the buffered rows and the final manifest (`complete: true`); returns
    /// the manifest.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-finish-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[3.0], &[1], &[0], &[1])?;
    /// let m = w.finish()?;
    /// assert!(m.complete);
    /// assert_eq!(m.train.shards[0].file, "train-00000.safetensors");
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn finish(mut self) -> Result<Manifest> {
        self.flush(Split::Train)?;
        self.flush(Split::Heldout)?;
        self.manifest.complete = true;
        self.write_manifest()?;
        Ok(self.manifest)
    }
}

/// Write one shard (safetensors: `acts`, `tokens`, `seq`, `pos`; header padded to
/// 8 bytes so `acts` is aligned when mapped) atomically. `acts` is already in
/// `dtype`'s bytes. No check of the values: the writer's callers have done it.
#[allow(
    clippy::too_many_arguments,
    reason = "one shard's four tensors and its description"
)]
pub(super) fn write_shard(
    path: &Path,
    dtype: StoreDType,
    d_in: usize,
    acts: &[u8],
    tokens: &[i32],
    seq: &[u32],
    pos: &[u32],
    metadata: &[(&str, &str)],
) -> Result<()> {
    let n = tokens.len();
    let a = acts.len();
    let mut header = serde_json::Map::new();
    let meta: serde_json::Map<String, Value> = [("format", super::FORMAT)]
        .iter()
        .chain(metadata)
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    header.insert("__metadata__".into(), Value::Object(meta));
    header.insert(
        "acts".into(),
        json!({"dtype": dtype.name(), "shape": [n, d_in], "data_offsets": [0, a]}),
    );
    header.insert(
        "tokens".into(),
        json!({"dtype": "I32", "shape": [n], "data_offsets": [a, a + 4 * n]}),
    );
    header.insert(
        "seq".into(),
        json!({"dtype": "U32", "shape": [n], "data_offsets": [a + 4 * n, a + 8 * n]}),
    );
    header.insert(
        "pos".into(),
        json!({"dtype": "U32", "shape": [n], "data_offsets": [a + 8 * n, a + 12 * n]}),
    );
    let mut h = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::invalid(format!("cannot serialise a shard header: {e}")))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    write_atomic_with(path, |w| {
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        w.write_all(acts)?;
        let mut ints = Vec::with_capacity(12 * n);
        ints.extend(tokens.iter().flat_map(|v| v.to_le_bytes()));
        ints.extend(seq.iter().flat_map(|v| v.to_le_bytes()));
        ints.extend(pos.iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&ints)
    })
}
