//! Argument values: numbers, feature specs and names are checked while clap parses
//! them; files right after parsing (so a misspelled option is reported as such
//! first). Nothing runs until every value is known to be usable: an existing
//! regular input file, an output whose folder exists, a finite number, a
//! well-formed feature spec.

use std::fs::FileType;
use std::path::{Path, PathBuf};

use saeplug::{Error, Result};

/// What kind of file system entry `t` is, for error messages.
fn kind(t: &FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The one check every CLI input file passes before it is opened: it exists and is
/// a regular file (following symlinks). FIFOs, devices (`/dev/zero`) and folders
/// are refused here instead of blocking or reading forever.
pub(crate) fn regular_file(path: &Path) -> Result<()> {
    input_file(path).map_err(Error::InvalidArgument)
}

/// An existing regular input file (checked after parsing, before any work).
pub(crate) fn input_file(p: &Path) -> std::result::Result<(), String> {
    let md = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if md.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}, not a regular file",
            p.display(),
            kind(&md.file_type())
        ))
    }
}

/// An SAE path: a folder or a regular file (`params.npz`).
pub(crate) fn sae_path(p: &Path) -> std::result::Result<(), String> {
    let md = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if md.is_dir() || md.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}, not an SAE folder or file",
            p.display(),
            kind(&md.file_type())
        ))
    }
}

/// An output file whose folder exists and that is not something other than a
/// regular file already.
pub(crate) fn output_file(p: &Path) -> std::result::Result<(), String> {
    let s = p.to_string_lossy();
    if s.is_empty() || s.ends_with('/') {
        return Err(format!("'{s}' is not a file name"));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(format!("{}: not a folder", dir.display())),
        Err(e) => return Err(format!("output folder {}: {e}", dir.display())),
    }
    match std::fs::metadata(p) {
        Ok(md) if !md.is_file() => Err(format!(
            "{s}: {} exists there, not a regular file",
            kind(&md.file_type())
        )),
        _ => Ok(()),
    }
}

/// clap value parser: an integer >= 1.
pub(crate) fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("'{s}' is not a whole number ({e})")),
    }
}

/// clap value parser: a finite number.
pub(crate) fn finite(s: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("'{s}' is not finite")),
        Err(e) => Err(format!("'{s}' is not a number ({e})")),
    }
}

/// clap value parser: a finite number >= 0.
pub(crate) fn non_negative(s: &str) -> std::result::Result<f32, String> {
    match finite(s)? {
        v if v >= 0.0 => Ok(v),
        _ => Err(format!("'{s}' is negative")),
    }
}

/// clap value parser: a finite number > 0.
pub(crate) fn positive_f64(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("'{s}' must be finite and > 0")),
        Err(e) => Err(format!("'{s}' is not a number ({e})")),
    }
}

/// A feature index with a value: `F:V` (`123:4.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FeatureSpec {
    pub(crate) feature: usize,
    pub(crate) value: f32,
}

/// clap value parser: `F:V`, F a feature index and V a finite number.
pub(crate) fn feature_spec(s: &str) -> std::result::Result<FeatureSpec, String> {
    let (f, v) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not F:V (a feature index, a colon, a number)"))?;
    let feature = f
        .trim()
        .parse::<usize>()
        .map_err(|e| format!("'{s}': feature index '{f}' ({e})"))?;
    let value = finite(v).map_err(|e| format!("'{s}': value {e}"))?;
    Ok(FeatureSpec { feature, value })
}

/// clap value parser: `all`, `last` or `first:P` (P >= 1).
pub(crate) fn positions(s: &str) -> std::result::Result<saeplug::hook::Positions, String> {
    use saeplug::hook::Positions;
    match s {
        "all" => Ok(Positions::All),
        "last" => Ok(Positions::Last),
        _ => match s.strip_prefix("first:").map(positive) {
            Some(Ok(n)) => Ok(Positions::First(n)),
            Some(Err(e)) => Err(format!("'{s}': {e}")),
            None => Err(format!("'{s}' is not all, last or first:P")),
        },
    }
}

/// clap value parser: a CPU thread count, 0 (all cores) up to the core's bound.
pub(crate) fn threads(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|e| format!("'{s}' is not a whole number ({e})"))?;
    if n > crate::compute::MAX_THREADS {
        return Err(format!(
            "{n} threads: at most {} (0 = all cores)",
            crate::compute::MAX_THREADS
        ));
    }
    Ok(n)
}

/// Refuse feature indices outside the SAE (before any work on the inputs).
pub(crate) fn features_in_range(
    sae: &saeplug::Sae,
    what: &str,
    features: impl IntoIterator<Item = usize>,
) -> Result<()> {
    for f in features {
        if f >= sae.d_sae() {
            return Err(Error::InvalidArgument(format!(
                "{what}: feature {f} >= d_sae {}",
                sae.d_sae()
            )));
        }
    }
    Ok(())
}

/// An ISA level by name (`portable`, `avx2`, `avx512`, `neon`) that this CPU runs.
pub(crate) fn isa(s: &str) -> std::result::Result<saeplug::backend::cpu::Isa, String> {
    use saeplug::backend::cpu::Isa;
    let isa = Isa::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is no ISA level; use one of {}",
            Isa::ALL.map(Isa::name).join(", ")
        )
    })?;
    if !isa.is_available() {
        return Err(format!("this CPU cannot run the {} kernels", isa.name()));
    }
    Ok(isa)
}

/// Encoder weight storage: `f32` (packed once), `zero-copy`, `bf16`.
pub(crate) fn weight_storage(
    s: &str,
) -> std::result::Result<saeplug::backend::cpu::WeightStorage, String> {
    use saeplug::backend::cpu::WeightStorage;
    match s {
        "f32" => Ok(WeightStorage::PackedF32),
        "zero-copy" => Ok(WeightStorage::ZeroCopy),
        "bf16" => Ok(WeightStorage::PackedBf16),
        _ => Err(format!("{s:?}: use f32, zero-copy or bf16")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_specs() {
        assert_eq!(
            feature_spec("123:4.0"),
            Ok(FeatureSpec {
                feature: 123,
                value: 4.0
            })
        );
        assert_eq!(feature_spec("7:-0.5").map(|f| f.value), Ok(-0.5));
        for bad in [
            "123", "123:", ":4", "x:4", "-1:4", "1:abc", "1:nan", "1:inf", "1:4:5",
        ] {
            assert!(feature_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err() && positive("-1").is_err() && positive("2.5").is_err());
        assert_eq!(finite("-1e3"), Ok(-1000.0));
        assert!(finite("NaN").is_err() && finite("-inf").is_err() && finite("1e39").is_err());
        assert!(non_negative("-0.1").is_err() && non_negative("0").is_ok());
        assert!(positive_f64("0").is_err() && positive_f64("1.5").is_ok());
        assert!(threads("0").is_ok());
        assert!(threads(&(crate::compute::MAX_THREADS + 1).to_string()).is_err());
        assert!(threads("-2").is_err());
    }

    #[test]
    fn positions_parse() {
        use saeplug::hook::Positions;
        assert_eq!(positions("last"), Ok(Positions::Last));
        assert_eq!(positions("first:3"), Ok(Positions::First(3)));
        for bad in ["first:", "first:0", "first:x", "middle", ""] {
            assert!(positions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files() {
        let dir = std::env::temp_dir().join(format!("saeplug-cli-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.npy");
        std::fs::write(&f, b"x").unwrap();
        let zero = Path::new("/dev/zero");
        assert!(input_file(&f).is_ok());
        assert!(input_file(&dir).unwrap_err().contains("directory"));
        assert!(input_file(zero).unwrap_err().contains("character device"));
        assert!(input_file(&dir.join("missing")).is_err());
        assert!(sae_path(&dir).is_ok() && sae_path(zero).is_err());
        assert!(output_file(&dir.join("out.npy")).is_ok());
        assert!(output_file(Path::new("out.npy")).is_ok()); // the current folder
        assert!(output_file(&dir.join("no/such/out.npy")).is_err());
        assert!(output_file(&f.join("out.npy")).is_err()); // parent is a file
        assert!(output_file(&dir).is_err()); // a folder
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
