//! `.npz` archives (zip, stored members) mapped in place: `np.savez` stores its
//! arrays uncompressed, so each member's data is a slice of the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::weights::{MappedFile, Tensor, TensorInfo, parse_npy};

/// A mapped `.npz` with its arrays' locations.
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
    pub fn open(path: &Path) -> Result<Self> {
        let file = MappedFile::open(path)?;
        let arrays = index(&file)?;
        Ok(Npz { file, arrays })
    }

    /// Load one array (borrowed from the map when aligned).
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
        let info = parse_npy(file, stem, data, csize as usize)?;
        arrays.insert(stem.to_string(), info);
    }
    Ok(arrays)
}
