//! Activation stores: the activations of one hook of a model, captured over a
//! text corpus, as a folder of safetensors shards plus a `manifest.json`.
//!
//! ```text
//! STORE/manifest.json                 what the store holds (see [`Manifest`])
//! STORE/train-00000.safetensors       shards of the training split
//! STORE/heldout-00000.safetensors     shards of the held-out split
//! ```
//!
//! Each shard holds `n` rows: `acts` `[n, d_in]` (F32, or F16 with
//! [`StoreDType::F16`]), `tokens` `[n]` (I32 token ids), `seq` `[n]` and `pos`
//! `[n]` (U32: the row's sequence in corpus order and its position in that
//! sequence). `safetensors.numpy.load_file` reads a shard as it is. The
//! [`StoreWriter`] writes each shard and every version of the manifest atomically
//! (temporary file, then rename); the [`ActivationStore`] reader maps the shards
//! (never loading the store whole), checks them against the manifest and hands
//! out rows as f32.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
//! # let dir = std::env::temp_dir().join(format!("saeplug-doc-store-{}", std::process::id()));
//! # std::fs::remove_dir_all(&dir).ok();
//! let mut spec = StoreSpec::new(4, "l_out-6");
//! spec.shard_rows = 2;
//! let mut w = StoreWriter::create(&dir, spec)?;
//! let acts: Vec<f32> = (0..12).map(|i| i as f32).collect(); // 3 rows of 4
//! w.append(Split::Train, &acts, &[11, 12, 13], &[0, 0, 0], &[1, 2, 3])?;
//! w.finish()?;
//! let store = ActivationStore::open(&dir)?;
//! assert_eq!(store.n_rows(Split::Train), 3);
//! assert_eq!(store.manifest().train.shards.len(), 2); // 2 rows + 1 row
//! assert_eq!(store.rows(Split::Train, 1, 2)?, acts[4..].to_vec());
//! assert_eq!(store.tokens(Split::Train, 0, 3)?, [11, 12, 13]);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod reader;
mod sha256;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};

pub use reader::ActivationStore;
pub use writer::{StoreSpec, StoreWriter};

/// Name of the manifest file inside a store folder.
///
/// ```
/// assert_eq!(saeplug::store::MANIFEST, "manifest.json");
/// ```
pub const MANIFEST: &str = "manifest.json";

/// Value of the manifest's `format` field.
///
/// ```
/// assert_eq!(saeplug::store::FORMAT, "saeplug-activations");
/// ```
pub const FORMAT: &str = "saeplug-activations";

/// Manifest version this code writes and reads.
///
/// ```
/// assert_eq!(saeplug::store::VERSION, 1);
/// ```
pub const VERSION: u64 = 1;

/// Which part of the store: rows to train on, or rows kept aside for evaluation.
///
/// ```
/// use saeplug::store::Split;
/// assert_eq!((Split::Train.name(), Split::Heldout.name()), ("train", "heldout"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split.
    Train,
    /// The held-out split.
    Heldout,
}

impl Split {
    /// The split's name in the manifest and in shard file names.
    ///
    /// ```
    /// assert_eq!(saeplug::store::Split::Heldout.name(), "heldout");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Heldout => "heldout",
        }
    }
}

/// Element type of the stored activations (rows are always handed out as f32).
///
/// ```
/// use saeplug::store::StoreDType;
/// assert_eq!(StoreDType::F16.name(), "F16");
/// assert_eq!(StoreDType::parse("F32"), Some(StoreDType::F32));
/// assert_eq!(StoreDType::parse("I8"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDType {
    /// IEEE binary32: exact.
    F32,
    /// IEEE binary16: half the disk; rows whose values overflow it are skipped.
    F16,
}

impl StoreDType {
    /// The safetensors dtype name.
    ///
    /// ```
    /// assert_eq!(saeplug::store::StoreDType::F32.name(), "F32");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StoreDType::F32 => "F32",
            StoreDType::F16 => "F16",
        }
    }

    /// Parse a safetensors dtype name (`F32` or `F16`, either case).
    ///
    /// ```
    /// assert_eq!(saeplug::store::StoreDType::parse("f16"), Some(saeplug::store::StoreDType::F16));
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "F32" => Some(StoreDType::F32),
            "F16" => Some(StoreDType::F16),
            _ => None,
        }
    }

    /// Bytes per element.
    ///
    /// ```
    /// assert_eq!(saeplug::store::StoreDType::F16.size(), 2);
    /// ```
    pub fn size(self) -> usize {
        match self {
            StoreDType::F32 => 4,
            StoreDType::F16 => 2,
        }
    }
}

/// The model the activations came from.
///
/// ```
/// let m = saeplug::store::ModelInfo { file: "model.gguf".into(), sha256: "00".repeat(32), bytes: 1 };
/// assert_eq!(m.sha256.len(), 64);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// File name (no folder).
    pub file: String,
    /// SHA-256 of the file, 64 lowercase hex digits (as `sha256sum` prints).
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// One shard of a split.
///
/// ```
/// let s = saeplug::store::ShardInfo { file: "train-00000.safetensors".into(), rows: 4096 };
/// assert_eq!(s.rows, 4096);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// File name inside the store folder.
    pub file: String,
    /// Rows it holds.
    pub rows: usize,
}

/// The shards of one split, in row order.
///
/// ```
/// let s = saeplug::store::SplitInfo::default();
/// assert_eq!((s.rows(), s.sequences), (0, 0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitInfo {
    /// Shards, in order.
    pub shards: Vec<ShardInfo>,
    /// Distinct sequences with at least one row in the split.
    pub sequences: u64,
}

impl SplitInfo {
    /// Total rows (the sum over the shards).
    ///
    /// ```
    /// use saeplug::store::{ShardInfo, SplitInfo};
    /// let s = SplitInfo { shards: vec![ShardInfo { file: "a".into(), rows: 3 }, ShardInfo { file: "b".into(), rows: 2 }], sequences: 1 };
    /// assert_eq!(s.rows(), 5);
    /// ```
    pub fn rows(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

/// What a store holds: `manifest.json`, as [`StoreWriter`] writes it.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::store::{ActivationStore, Split, StoreSpec, StoreWriter};
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-manifest-{}", std::process::id()));
/// # std::fs::remove_dir_all(&dir).ok();
/// let mut spec = StoreSpec::new(2, "l_out-3");
/// spec.layer = Some(3);
/// spec.context_length = 128;
/// let mut w = StoreWriter::create(&dir, spec)?;
/// w.append(Split::Heldout, &[1.0, 2.0], &[5], &[0], &[1])?;
/// let m = w.finish()?;
/// assert!(m.complete && m.bos_excluded);
/// assert_eq!((m.layer, m.context_length, m.heldout.rows()), (Some(3), 128, 1));
/// assert_eq!(ActivationStore::open(&dir)?.manifest(), &m); // what the file says
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Width of one row.
    pub d_in: usize,
    /// Element type of `acts` in every shard.
    pub dtype: StoreDType,
    /// Hook the rows were read at (llama.cpp: `l_out-N`, the residual stream
    /// after block N = SAELens `blocks.N.hook_resid_post`).
    pub hook_name: String,
    /// Layer (block) index, when the hook has one.
    pub layer: Option<u32>,
    /// Tokens per sequence the model saw (0: not fixed).
    pub context_length: usize,
    /// True when the BOS position of every sequence was left out.
    pub bos_excluded: bool,
    /// The model, when known.
    pub model: Option<ModelInfo>,
    /// Rows to train on.
    pub train: SplitInfo,
    /// Rows kept aside.
    pub heldout: SplitInfo,
    /// Rows given to the writer but not stored: NaN or infinite values (or, in an
    /// F16 store, values beyond its range). Never silently in the data.
    pub skipped_non_finite: u64,
    /// False while a capture is running, or when it was interrupted: the shards
    /// listed are whole, rows after the last one were lost.
    pub complete: bool,
    /// Free-form facts about the capture (corpus, held-out rule, tool, ...).
    pub metadata: BTreeMap<String, String>,
}

impl Manifest {
    /// The shards of `split`.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-msplit-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{Split, StoreSpec, StoreWriter};
    /// let mut w = StoreWriter::create(&dir, StoreSpec::new(1, "x"))?;
    /// w.append(Split::Train, &[0.5], &[1], &[0], &[1])?;
    /// assert_eq!(w.finish()?.split(Split::Train).rows(), 1);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn split(&self, split: Split) -> &SplitInfo {
        match split {
            Split::Train => &self.train,
            Split::Heldout => &self.heldout,
        }
    }

    pub(crate) fn split_mut(&mut self, split: Split) -> &mut SplitInfo {
        match split {
            Split::Train => &mut self.train,
            Split::Heldout => &mut self.heldout,
        }
    }

    /// The manifest as JSON text (what `manifest.json` holds).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-mjson-{}", std::process::id()));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// use saeplug::store::{StoreSpec, StoreWriter};
    /// let m = StoreWriter::create(&dir, StoreSpec::new(8, "l_out-1"))?.finish()?;
    /// let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    /// assert_eq!((v["format"].as_str(), v["d_in"].as_u64()), (Some("saeplug-activations"), Some(8)));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn to_json(&self) -> String {
        let split = |s: &SplitInfo| {
            json!({
                "rows": s.rows(),
                "sequences": s.sequences,
                "shards": s.shards.iter().map(|x| json!({"file": x.file, "rows": x.rows})).collect::<Vec<_>>(),
            })
        };
        let v = json!({
            "format": FORMAT,
            "version": VERSION,
            "complete": self.complete,
            "d_in": self.d_in,
            "dtype": self.dtype.name(),
            "hook_name": self.hook_name,
            "layer": self.layer,
            "context_length": self.context_length,
            "bos_excluded": self.bos_excluded,
            "model": self.model.as_ref().map(|m| json!({"file": m.file, "sha256": m.sha256, "bytes": m.bytes})),
            "rows": self.train.rows() + self.heldout.rows(),
            "skipped_non_finite": self.skipped_non_finite,
            "splits": {"train": split(&self.train), "heldout": split(&self.heldout)},
            "metadata": self.metadata,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse `manifest.json` text (`path` names it in errors). Checks the format,
    /// version, field types, shard file names (plain names inside the folder) and
    /// that the recorded totals equal the sums over the shards.
    ///
    /// ```
    /// use saeplug::{ErrorKind, store::Manifest};
    /// let err = Manifest::parse("m.json".as_ref(), br#"{"format": "other"}"#).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Format);
    /// ```
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |msg: String| Error::format(path, msg);
        let v = crate::json::parse_strict(bytes)
            .map_err(|e| bad(format!("manifest is not valid JSON: {e}")))?;
        let s = |k: &str| -> Result<&str> {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("manifest field '{k}' is missing or not a string")))
        };
        let u = |v: &Value, k: &str| -> Result<u64> {
            v.get(k).and_then(Value::as_u64).ok_or_else(|| {
                bad(format!(
                    "manifest field '{k}' is missing or not a non-negative integer"
                ))
            })
        };
        let b = |k: &str| -> Result<bool> {
            v.get(k)
                .and_then(Value::as_bool)
                .ok_or_else(|| bad(format!("manifest field '{k}' is missing or not a boolean")))
        };
        let us = |n: u64, k: &str| -> Result<usize> {
            usize::try_from(n).map_err(|_| bad(format!("manifest field '{k}' = {n} is too large")))
        };
        if s("format")? != FORMAT {
            return Err(bad(format!(
                "not an activation store manifest (format '{}', expected '{FORMAT}')",
                s("format")?
            )));
        }
        let version = u(&v, "version")?;
        if version != VERSION {
            return Err(bad(format!(
                "manifest version {version} is not supported (this saeplug reads version {VERSION})"
            )));
        }
        let d_in = us(u(&v, "d_in")?, "d_in")?;
        if d_in == 0 {
            return Err(bad("d_in is 0".into()));
        }
        let dtype_s = s("dtype")?;
        let dtype = StoreDType::parse(dtype_s)
            .ok_or_else(|| bad(format!("dtype '{dtype_s}' is not F32 or F16")))?;
        let layer = match v.get("layer") {
            None | Some(Value::Null) => None,
            Some(l) => Some(
                l.as_u64()
                    .and_then(|l| u32::try_from(l).ok())
                    .ok_or_else(|| bad("manifest field 'layer' is not a u32 or null".into()))?,
            ),
        };
        let model = match v.get("model") {
            None | Some(Value::Null) => None,
            Some(m) => {
                let ms = |k: &str| -> Result<String> {
                    m.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            bad(format!(
                                "manifest field 'model.{k}' is missing or not a string"
                            ))
                        })
                };
                Some(ModelInfo {
                    file: ms("file")?,
                    sha256: ms("sha256")?,
                    bytes: u(m, "bytes")?,
                })
            }
        };
        let splits = v
            .get("splits")
            .ok_or_else(|| bad("manifest field 'splits' is missing".into()))?;
        let split = |name: &str| -> Result<SplitInfo> {
            let sv = splits
                .get(name)
                .ok_or_else(|| bad(format!("manifest lacks split '{name}'")))?;
            let shards = sv
                .get("shards")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(format!("split '{name}': 'shards' is not a list")))?
                .iter()
                .map(|x| {
                    let file = x
                        .get("file")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("split '{name}': a shard has no 'file'")))?;
                    check_shard_name(path, file)?;
                    Ok(ShardInfo {
                        file: file.to_string(),
                        rows: us(u(x, "rows")?, "rows")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let info = SplitInfo {
                shards,
                sequences: u(sv, "sequences")?,
            };
            let rows = us(u(sv, "rows")?, "rows")?;
            if rows != info.rows() {
                return Err(bad(format!(
                    "split '{name}' claims {rows} rows but its shards hold {}",
                    info.rows()
                )));
            }
            Ok(info)
        };
        let (train, heldout) = (split("train")?, split("heldout")?);
        let total = us(u(&v, "rows")?, "rows")?;
        if total != train.rows() + heldout.rows() {
            return Err(bad(format!(
                "manifest claims {total} rows but its splits hold {} + {}",
                train.rows(),
                heldout.rows()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for sh in train.shards.iter().chain(&heldout.shards) {
            if !seen.insert(sh.file.as_str()) {
                return Err(bad(format!("shard '{}' is listed twice", sh.file)));
            }
        }
        let metadata = match v.get("metadata") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, x)| {
                    x.as_str()
                        .map(|x| (k.clone(), x.to_string()))
                        .ok_or_else(|| bad(format!("metadata value '{k}' is not a string")))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("manifest field 'metadata' is not an object".into())),
        };
        Ok(Manifest {
            d_in,
            dtype,
            hook_name: s("hook_name")?.to_string(),
            layer,
            context_length: us(u(&v, "context_length")?, "context_length")?,
            bos_excluded: b("bos_excluded")?,
            model,
            train,
            heldout,
            skipped_non_finite: u(&v, "skipped_non_finite")?,
            complete: b("complete")?,
            metadata,
        })
    }
}

/// A shard name must be a plain `.safetensors` file name inside the store folder.
fn check_shard_name(path: &Path, file: &str) -> Result<()> {
    let ok = !file.is_empty()
        && !file.starts_with('.')
        && file.ends_with(".safetensors")
        && !file.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(Error::format(
            path,
            format!("shard name '{file}' is not a plain .safetensors file name inside the store"),
        ))
    }
}
