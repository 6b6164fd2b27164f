//! A model's vocabulary read from its GGUF file (the `tokenizer.ggml.tokens`
//! array), with tokens turned back into text: GPT-2 byte-level tokens (`gpt2`
//! tokenizers, SmolLM2's) through the inverse of GPT-2's bytes-to-unicode map,
//! SentencePiece tokens (`llama`) by `▁` → space and `<0xHH>` byte tokens.
//!
//! Only the metadata at the start of the file is read, never the tensors.

use std::io::{BufReader, Read};
use std::path::Path;

use saeplug::{Error, Result};

/// What the record and logits commands need from a GGUF file.
#[derive(Debug, Default)]
pub(crate) struct GgufVocab {
    /// `general.architecture`.
    pub(crate) arch: String,
    /// `{arch}.embedding_length` (the residual width), when present.
    pub(crate) n_embd: Option<u64>,
    /// `tokenizer.ggml.model`.
    pub(crate) tokenizer: String,
    /// Token text, one per id, as stored (byte-level or SentencePiece form).
    pub(crate) tokens: Vec<String>,
}

struct R<'a> {
    r: BufReader<std::fs::File>,
    path: &'a Path,
}

impl R<'_> {
    fn bad(&self, msg: impl Into<String>) -> Error {
        Error::Format {
            path: self.path.to_path_buf(),
            msg: msg.into(),
        }
    }
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| self.bad(format!("truncated GGUF metadata: {e}")))?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > 1 << 24 {
            return Err(self.bad(format!("GGUF string of {n} bytes")));
        }
        let mut b = vec![0u8; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|e| self.bad(format!("truncated GGUF string: {e}")))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        let got = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(|e| self.bad(e.to_string()))?;
        if got != n {
            return Err(self.bad("truncated GGUF metadata"));
        }
        Ok(())
    }
    /// Size of a scalar GGUF type (None: string or array).
    fn scalar_size(&self, t: u32) -> Result<Option<u64>> {
        Ok(match t {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            8 | 9 => None,
            _ => return Err(self.bad(format!("unknown GGUF value type {t}"))),
        })
    }
    /// Read an integer value of any integer type.
    fn int(&mut self, t: u32) -> Result<Option<u64>> {
        Ok(match t {
            0 => Some(self.bytes::<1>()?[0] as u64),
            2 => Some(u16::from_le_bytes(self.bytes()?) as u64),
            4 => Some(self.u32()? as u64),
            5 => Some(i32::from_le_bytes(self.bytes()?).max(0) as u64),
            10 => Some(self.u64()?),
            11 => Some(i64::from_le_bytes(self.bytes()?).max(0) as u64),
            _ => {
                self.skip_value(t)?;
                None
            }
        })
    }
    fn skip_value(&mut self, t: u32) -> Result<()> {
        match self.scalar_size(t)? {
            Some(n) => self.skip(n),
            None if t == 8 => {
                let n = self.u64()?;
                self.skip(n)
            }
            None => {
                let et = self.u32()?;
                let n = self.u64()?;
                match self.scalar_size(et)? {
                    Some(s) => self.skip(
                        n.checked_mul(s)
                            .ok_or_else(|| self.bad("GGUF array too large"))?,
                    ),
                    None => {
                        for _ in 0..n {
                            self.skip_value(et)?;
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}

impl GgufVocab {
    /// Read the metadata of the GGUF file at `path`.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut r = R {
            r: BufReader::new(f),
            path,
        };
        if &r.bytes::<4>()? != b"GGUF" {
            return Err(r.bad("not a GGUF file (no GGUF magic)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(r.bad(format!("GGUF version {version} is not supported (2 or 3)")));
        }
        let _n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut v = GgufVocab::default();
        let mut embd: Vec<(String, u64)> = Vec::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let t = r.u32()?;
            match key.as_str() {
                "general.architecture" | "tokenizer.ggml.model" if t == 8 => {
                    let s = r.string()?;
                    if key == "general.architecture" {
                        v.arch = s;
                    } else {
                        v.tokenizer = s;
                    }
                }
                "tokenizer.ggml.tokens" if t == 9 => {
                    let et = r.u32()?;
                    let n = r.u64()?;
                    if et != 8 || n > 1 << 24 {
                        return Err(r.bad("tokenizer.ggml.tokens is not an array of strings"));
                    }
                    v.tokens.reserve(n as usize);
                    for _ in 0..n {
                        v.tokens.push(r.string()?);
                    }
                }
                k if k.ends_with(".embedding_length") => {
                    if let Some(x) = r.int(t)? {
                        embd.push((k.trim_end_matches(".embedding_length").to_string(), x));
                    }
                }
                _ => r.skip_value(t)?,
            }
        }
        v.n_embd = embd.iter().find(|(a, _)| *a == v.arch).map(|(_, x)| *x);
        if v.tokens.is_empty() {
            return Err(r.bad("the GGUF file has no tokenizer.ggml.tokens"));
        }
        Ok(v)
    }

    /// Text of token `id` (a placeholder for ids outside the vocabulary).
    pub(crate) fn text(&self, id: i32) -> String {
        let Some(t) = usize::try_from(id).ok().and_then(|i| self.tokens.get(i)) else {
            return format!("<id {id}>");
        };
        if self.tokenizer == "llama" {
            if let Some(h) = t.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'))
                && let Ok(b) = u8::from_str_radix(h, 16)
            {
                return String::from_utf8_lossy(&[b]).into_owned();
            }
            return t.replace('\u{2581}', " ");
        }
        byte_level_text(t)
    }
}

/// GPT-2's byte → unicode map inverted: the token's bytes as text (lossy UTF-8:
/// a token may hold part of a character). Characters outside the map (special
/// tokens) are kept as they are.
pub(crate) fn byte_level_text(t: &str) -> String {
    let mut bytes = Vec::with_capacity(t.len());
    for ch in t.chars() {
        match unicode_to_byte(ch) {
            Some(b) => bytes.push(b),
            None => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The byte a GPT-2 byte-level character stands for.
fn unicode_to_byte(ch: char) -> Option<u8> {
    let c = ch as u32;
    // Printable bytes map to themselves.
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    if c < 256 && printable(c) {
        return Some(c as u8);
    }
    // The others (0x00..=0x20, 0x7F..=0xA0, 0xAD) map to 256, 257, ... in order.
    if (256..256 + 68).contains(&c) {
        let k = c - 256;
        return (0u32..256)
            .filter(|&b| !printable(b))
            .nth(k as usize)
            .map(|b| b as u8);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_round_trip() {
        // GPT-2's bytes_to_unicode, written out independently (Python's definition).
        let mut bs: Vec<u32> = (0x21..=0x7E)
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        for (b, c) in bs.iter().zip(&cs) {
            assert_eq!(unicode_to_byte(char::from_u32(*c).unwrap()), Some(*b as u8));
        }
        assert_eq!(byte_level_text("\u{120}hello"), " hello"); // Ġ = space
        assert_eq!(byte_level_text("\u{10A}"), "\n"); // Ċ = newline
    }
}
