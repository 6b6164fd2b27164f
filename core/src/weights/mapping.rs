//! Opening regular files and mapping them read-only, with change detection.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// Open `path` for reading, refusing anything but a regular file.
///
/// FIFOs, sockets and device files (`/dev/zero`, a terminal) are refused with a
/// format error instead of blocking or reading forever: the file is opened
/// non-blocking (so opening a FIFO with no writer returns at once) and its type is
/// checked on the open descriptor, so a path swapped between check and open cannot
/// slip through. Directories are refused too. Use it for every input file.
///
/// ```
/// use saeplug::{ErrorKind, weights::open_regular};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-regular-{}.txt", std::process::id()));
/// std::fs::write(&path, b"data").unwrap();
/// assert!(open_regular(&path).is_ok());
/// assert_eq!(open_regular("/dev/zero".as_ref()).unwrap_err().kind(), ErrorKind::Format);
/// assert_eq!(open_regular(std::env::temp_dir().as_ref()).unwrap_err().kind(), ErrorKind::Format);
/// assert_eq!(open_regular("/nonexistent".as_ref()).unwrap_err().kind(), ErrorKind::Io);
/// # std::fs::remove_file(&path).ok();
/// ```
pub fn open_regular(path: &Path) -> Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Without O_NONBLOCK, opening a FIFO blocks until a writer appears. Regular
        // files ignore the flag.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let what = kind_of(&meta);
        return Err(Error::format(
            path,
            format!("{what}, not a regular file: saeplug reads only regular files"),
        ));
    }
    Ok(file)
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device file";
        }
    }
    "not a plain file"
}

/// What identifies one version of a file: device and inode (a file replaced under
/// the same path has a new inode), size and modification time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        Stamp {
            dev,
            ino,
            len: meta.len(),
            mtime: meta.modified().ok(),
        }
    }
}

/// A read-only memory map of one regular file, with the file's identity (device,
/// inode), size and modification time seen at open so later changes can be
/// detected.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::MappedFile;
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-map-{}.bin", std::process::id()));
/// std::fs::write(&path, b"saeplug").unwrap();
/// let map = MappedFile::open(&path)?;
/// assert_eq!(map.bytes(), b"saeplug");
/// map.check_unchanged()?;
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    map: Mmap,
    stamp: Stamp,
}

impl MappedFile {
    /// Map `path` read-only. Only regular files are accepted (see [`open_regular`]).
    ///
    /// The file must not be modified or truncated while mapped: a truncation while
    /// the map is read raises SIGBUS, which no library can turn into an error. Call
    /// [`MappedFile::check_unchanged`] before each use to detect a change made
    /// between uses (the C ABI does so before every call that reads weights).
    ///
    /// ```
    /// use saeplug::{ErrorKind, weights::MappedFile};
    /// assert_eq!(MappedFile::open("/nonexistent".as_ref()).unwrap_err().kind(), ErrorKind::Io);
    /// assert_eq!(MappedFile::open("/dev/zero".as_ref()).unwrap_err().kind(), ErrorKind::Format);
    /// ```
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let file = open_regular(path)?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let map = if meta.len() == 0 {
            // Mapping an empty file fails on some systems; an empty map is fine.
            memmap2::MmapOptions::new()
                .len(0)
                .map_anon()
                .map_err(|e| Error::io(path, e))?
                .make_read_only()
                .map_err(|e| Error::io(path, e))?
        } else {
            // SAFETY: the map is read-only and private to this process, of a regular
            // file (checked by `open_regular` on this descriptor). The caller-facing
            // contract (documented on `Sae::open` and in the C header) is that the file
            // is not modified while mapped; `check_unchanged` detects replacement,
            // size and mtime changes between calls.
            unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?
        };
        Ok(Arc::new(MappedFile {
            path: path.to_path_buf(),
            stamp: Stamp::of(&meta),
            map,
        }))
    }

    /// The mapped bytes.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-bytes-{}.bin", std::process::id()));
    /// std::fs::write(&path, [1u8, 2, 3]).unwrap();
    /// assert_eq!(saeplug::weights::MappedFile::open(&path)?.bytes(), [1, 2, 3]);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Path the file was opened from.
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-path-{}.bin", std::process::id()));
    /// std::fs::write(&path, [0u8]).unwrap();
    /// assert_eq!(saeplug::weights::MappedFile::open(&path)?.path(), path);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Error ([`crate::ErrorKind::FileChanged`]) unless the path still names the
    /// same file (device and inode) with the size and mtime seen at open: catches a
    /// file truncated or rewritten in place, and one replaced under the same path
    /// (a rename over it, a copy tool writing a new file).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{ErrorKind, weights::MappedFile};
    /// # let dir = std::env::temp_dir().join(format!("saeplug-doc-chg-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("w.bin");
    /// std::fs::write(&path, [0u8; 64]).unwrap();
    /// let map = MappedFile::open(&path)?;
    /// map.check_unchanged()?;
    /// // Something truncates the file behind our back: detected before any read.
    /// std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(16).unwrap();
    /// assert_eq!(map.check_unchanged().unwrap_err().kind(), ErrorKind::FileChanged);
    /// // A file of the same size renamed over the path: a new inode, also detected.
    /// let map = MappedFile::open(&path)?;
    /// std::fs::write(dir.join("new.bin"), [1u8; 16]).unwrap();
    /// std::fs::rename(dir.join("new.bin"), &path).unwrap();
    /// assert_eq!(map.check_unchanged().unwrap_err().kind(), ErrorKind::FileChanged);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn check_unchanged(&self) -> Result<()> {
        let changed = |what: String| Error::FileChanged {
            path: self.path.clone(),
            what,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(changed("deleted or renamed".into()));
            }
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let now = Stamp::of(&meta);
        let was = &self.stamp;
        if (now.dev, now.ino) != (was.dev, was.ino) {
            return Err(changed("replaced by another file".into()));
        }
        if now.len != was.len {
            return Err(changed(format!("size {} -> {}", was.len, now.len)));
        }
        if now.mtime != was.mtime {
            return Err(changed("modification time".into()));
        }
        Ok(())
    }
}
