//! `.npz` archives (zip, stored members) mapped in place: `np.savez` stores its
//! arrays uncompressed, so each member's data is a slice of the file.
//!
//! ```
//! # fn main() -> saeplug::Result<()> {
//! use saeplug::format::npz::{Npz, write_npz};
//! # let path = std::env::temp_dir().join(format!("saeplug-doc-npz-{}.npz", std::process::id()));
//! write_npz(&path, &[("b_dec", &[3], &[0.1, 0.2, 0.3])])?; // as np.savez writes it
//! let npz = Npz::open(&path)?;
//! assert_eq!(npz.tensor("b_dec")?.as_slice(), [0.1, 0.2, 0.3]);
//! # std::fs::remove_file(&path).ok();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::weights::{MappedFile, Tensor, TensorInfo, npy_bytes, parse_npy, write_atomic};

/// A mapped `.npz` with its arrays' locations.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::format::npz::{Npz, write_npz};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-npz2-{}.npz", std::process::id()));
/// write_npz(&path, &[("W_enc", &[2, 3], &[0.0; 6]), ("b_enc", &[3], &[0.0; 3])])?;
/// let npz = Npz::open(&path)?;
/// assert_eq!(npz.arrays.keys().collect::<Vec<_>>(), ["W_enc", "b_enc"]);
/// assert_eq!(npz.arrays["W_enc"].shape, [2, 3]);
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Npz {
    /// The mapped archive.
    pub file: Arc<MappedFile>,
    /// Arrays by name (member name without `.npy`).
    pub arrays: BTreeMap<String, TensorInfo>,
}

fn rd<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    rd::<2>(b, at).map(|a| u16::from_le_bytes(a) as u64)
}
fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    rd::<4>(b, at).map(|a| u32::from_le_bytes(a) as u64)
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    rd::<8>(b, at).map(u64::from_le_bytes)
}

impl Npz {
    /// Map and index an `.npz` archive.
    ///
    /// ```
    /// use saeplug::{ErrorKind, format::npz::Npz};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-npz3-{}.npz", std::process::id()));
    /// std::fs::write(&path, b"not a zip archive at all, just text").unwrap();
    /// assert_eq!(Npz::open(&path).unwrap_err().kind(), ErrorKind::Format);
    /// # std::fs::remove_file(&path).ok();
    /// ```
    pub fn open(path: &Path) -> Result<Self> {
        let file = MappedFile::open(path)?;
        let arrays = index(&file)?;
        Ok(Npz { file, arrays })
    }

    /// Load one array (borrowed from the map when aligned).
    ///
    /// ```
    /// # fn main() -> saeplug::Result<()> {
    /// use saeplug::{ErrorKind, format::npz::{Npz, write_npz}};
    /// # let path = std::env::temp_dir().join(format!("saeplug-doc-npz4-{}.npz", std::process::id()));
    /// write_npz(&path, &[("threshold", &[2], &[0.5, 0.25])])?;
    /// let npz = Npz::open(&path)?;
    /// let t = npz.tensor("threshold")?;
    /// assert!(t.is_mapped()); // write_npz aligns members, so no copy
    /// assert_eq!(npz.tensor("W_dec").unwrap_err().kind(), ErrorKind::MissingTensor);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(()) }
    /// ```
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let info = self.arrays.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.file.path().to_path_buf(),
            name: name.to_string(),
        })?;
        Tensor::from_file(&self.file, name, info)
    }
}

fn index(file: &MappedFile) -> Result<BTreeMap<String, TensorInfo>> {
    let path = file.path();
    let b = file.bytes();
    let bad = |m: &str| Error::format(path, format!("npz/zip: {m}"));
    let trunc = || bad("structure runs past the end of the file: truncated or corrupt");
    if b.len() < 22 {
        return Err(bad("file is too short to be a zip archive: truncated?"));
    }
    // End of central directory: 22 bytes + comment, within the last 64 KiB.
    let lo = b.len().saturating_sub(22 + 65535);
    let eocd = (lo..=b.len() - 22)
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| {
            bad("no end-of-central-directory record: not a zip archive, or truncated")
        })?;
    let mut entries = u16_at(b, eocd + 10).ok_or_else(trunc)?;
    let mut cd_off = u32_at(b, eocd + 16).ok_or_else(trunc)?;
    if (entries == 0xFFFF || cd_off == 0xFFFF_FFFF) && eocd >= 20 {
        // Zip64 locator right before the EOCD.
        let loc = eocd - 20;
        if b[loc..loc + 4] == [0x50, 0x4b, 0x06, 0x07] {
            let z = u64_at(b, loc + 8).ok_or_else(trunc)? as usize;
            if rd::<4>(b, z) != Some([0x50, 0x4b, 0x06, 0x06]) {
                return Err(bad("bad zip64 end-of-central-directory record"));
            }
            entries = u64_at(b, z + 32).ok_or_else(trunc)?;
            cd_off = u64_at(b, z + 48).ok_or_else(trunc)?;
        }
    }
    let mut arrays = BTreeMap::new();
    let mut p = cd_off as usize;
    for _ in 0..entries {
        if rd::<4>(b, p) != Some([0x50, 0x4b, 0x01, 0x02]) {
            return Err(bad("bad central directory entry"));
        }
        let method = u16_at(b, p + 10).ok_or_else(trunc)?;
        let mut csize = u32_at(b, p + 20).ok_or_else(trunc)?;
        let mut usize_ = u32_at(b, p + 24).ok_or_else(trunc)?;
        let nlen = u16_at(b, p + 28).ok_or_else(trunc)? as usize;
        let elen = u16_at(b, p + 30).ok_or_else(trunc)? as usize;
        let clen = u16_at(b, p + 32).ok_or_else(trunc)? as usize;
        let mut loff = u32_at(b, p + 42).ok_or_else(trunc)?;
        let name = b.get(p + 46..p + 46 + nlen).ok_or_else(trunc)?;
        let name = String::from_utf8_lossy(name).into_owned();
        // Zip64 extended information (id 1): only the fields that overflowed, in order.
        let extra = b
            .get(p + 46 + nlen..p + 46 + nlen + elen)
            .ok_or_else(trunc)?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).ok_or_else(trunc)?;
            let sz = u16_at(extra, e + 2).ok_or_else(trunc)? as usize;
            if id == 1 {
                let mut q = e + 4;
                for field in [&mut usize_, &mut csize, &mut loff] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(extra, q).ok_or_else(trunc)?;
                        q += 8;
                    }
                }
            }
            e += 4 + sz;
        }
        p += 46 + nlen + elen + clen;
        let Some(stem) = name.strip_suffix(".npy") else {
            continue;
        };
        if method != 0 {
            return Err(Error::Unsupported(format!(
                "{}: member '{name}' is compressed (np.savez_compressed); saeplug maps arrays in place and needs np.savez (stored) archives",
                path.display()
            )));
        }
        let l = loff as usize;
        if rd::<4>(b, l) != Some([0x50, 0x4b, 0x03, 0x04]) {
            return Err(bad(&format!("member '{name}': bad local header")));
        }
        let lnlen = u16_at(b, l + 26).ok_or_else(trunc)? as usize;
        let lelen = u16_at(b, l + 28).ok_or_else(trunc)? as usize;
        let data = l + 30 + lnlen + lelen;
        let csize = usize::try_from(csize).map_err(|_| trunc())?;
        let info = parse_npy(file, stem, data, csize)?;
        if arrays.insert(stem.to_string(), info).is_some() {
            return Err(bad(&format!("member '{name}' appears twice")));
        }
    }
    Ok(arrays)
}

/// CRC-32 (IEEE, as zip uses it).
fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// Write f32 arrays as an `.npz` archive the way `np.savez` does (stored, not
/// compressed; member `name.npy` per array), atomically. Each member's data is
/// padded to a 64-byte boundary in the file, so [`Npz::open`] maps every array
/// in place (numpy reads the archive as usual). Archives over 4 GiB (zip64) are
/// refused.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Architecture, Format, Sae, format::npz::write_npz};
/// // A Gemma Scope 1 JumpReLU SAE, written the way its params.npz files are.
/// let (d, ds) = (4, 8);
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-gs1-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// write_npz(&dir.join("params.npz"), &[
///     ("W_enc", &[d, ds], &vec![0.1; d * ds]),
///     ("W_dec", &[ds, d], &vec![0.1; ds * d]),
///     ("b_enc", &[ds], &vec![0.0; ds]),
///     ("b_dec", &[d], &vec![0.0; d]),
///     ("threshold", &[ds], &vec![0.05; ds]),
/// ])?;
/// let sae = Sae::open(&dir)?;
/// assert_eq!((sae.config().format, sae.config().architecture), (Format::GemmaScope1, Architecture::JumpRelu));
/// assert!(sae.copied_tensors().is_empty());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub fn write_npz(path: &Path, arrays: &[(&str, &[usize], &[f32])]) -> Result<()> {
    let too_big = || Error::invalid("npz over 4 GiB: zip64 archives are not written");
    let u32_of = |v: usize| u32::try_from(v).map_err(|_| too_big());
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    for (name, shape, data) in arrays {
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(Error::invalid(format!("bad npz array name '{name}'")));
        }
        let member = format!("{name}.npy");
        let name_len = u16::try_from(member.len()).map_err(|_| {
            Error::invalid(format!(
                "npz array name of {} bytes is too long",
                name.len()
            ))
        })?;
        let local = out.len();
        // Pad with an extra field (id 0xD935, as zipalign does) so the member's
        // .npy starts 64-byte aligned; its header keeps the data aligned.
        let at = local + 30 + member.len();
        let mut pad = (64 - at % 64) % 64;
        if (1..4).contains(&pad) {
            pad += 64;
        }
        let npy = npy_bytes(shape, data)?;
        let (crc, size, off) = (crc32(&npy), u32_of(npy.len())?, u32_of(local)?);
        let head = |sig: u32, v: &mut Vec<u8>, central: bool| {
            v.extend_from_slice(&sig.to_le_bytes());
            if central {
                v.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            v.extend_from_slice(&20u16.to_le_bytes()); // needed: 2.0
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&name_len.to_le_bytes());
        };
        head(0x0403_4b50, &mut out, false);
        out.extend_from_slice(&(pad as u16).to_le_bytes());
        out.extend_from_slice(member.as_bytes());
        if pad > 0 {
            out.extend_from_slice(&0xD935u16.to_le_bytes());
            out.extend_from_slice(&((pad - 4) as u16).to_le_bytes());
            out.resize(out.len() + pad - 4, 0);
        }
        out.extend_from_slice(&npy);
        head(0x0201_4b50, &mut central, true);
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(member.as_bytes());
    }
    let entries = u16::try_from(arrays.len()).map_err(|_| Error::invalid("too many npz arrays"))?;
    let (cd_off, cd_len) = (u32_of(out.len())?, u32_of(central.len())?);
    out.extend_from_slice(&central);
    u32_of(out.len())?;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    write_atomic(path, &out)
}
