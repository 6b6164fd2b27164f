//! Writing output files atomically.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Write `bytes` to `path` atomically: the data goes to a uniquely named temporary
/// file created exclusively (`O_CREAT | O_EXCL`, random name) in the target folder,
/// is flushed to disk, then renamed over `path`. Readers see the old file or the
/// whole new one, never a part; a symlink planted at any name in the folder is
/// never followed (the temporary file is new, and a rename replaces a link at
/// `path` itself rather than writing through it); concurrent writers to one path
/// all succeed, the last rename wins. New files get mode `0666` less the umask,
/// like any file a program creates.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-atomic-{}.txt", std::process::id()));
/// saeplug::weights::write_atomic(&path, b"whole or nothing")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"whole or nothing");
/// // The folder must exist.
/// assert!(saeplug::weights::write_atomic("/nonexistent/dir/x".as_ref(), b"").is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] with the contents streamed by `fill` (through a buffered
/// writer) instead of held in one slice: for outputs built from several buffers.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        fill(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // On error the temporary file is removed when `tmp` (inside the error) drops.
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // Make the rename itself durable; failing to sync a folder loses nothing written.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
