//! The `.npy` format: header parsing (the header is a Python dict literal, parsed
//! as one) and an f32 reader and writer.

use std::path::Path;

use super::atomic::write_atomic;
use super::mapping::MappedFile;
use super::tensor::{DType, Tensor, TensorInfo};
use crate::error::{Error, Result};

/// Longest `.npy` header accepted, in bytes: numpy's `np.load` default
/// (`max_header_size = 10000`).
///
/// ```
/// use saeplug::weights::{MAX_NPY_HEADER_BYTES, read_npy};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-npyhdr-{}.npy", std::process::id()));
/// // A version 2 header (4-byte length) claiming 20000 bytes.
/// let mut b = b"\x93NUMPY\x02\x00".to_vec();
/// b.extend_from_slice(&(2 * MAX_NPY_HEADER_BYTES as u32).to_le_bytes());
/// b.resize(b.len() + 2 * MAX_NPY_HEADER_BYTES, b' ');
/// std::fs::write(&path, &b).unwrap();
/// assert!(read_npy(&path).unwrap_err().to_string().contains("limit"));
/// # std::fs::remove_file(&path).ok();
/// ```
pub const MAX_NPY_HEADER_BYTES: usize = 10_000;

/// A Python literal as found in a `.npy` header.
#[derive(Debug, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    None,
    Int(i128),
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// A recursive-descent parser for the subset of Python literals `np.save` writes
/// (and `ast.literal_eval` reads): dicts, tuples, lists, strings in either quote
/// style, integers (with Python 2's `L` suffix), `True`/`False`/`None`.
struct LitParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.at).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn err<T>(&self, what: &str) -> std::result::Result<T, String> {
        Err(format!("{what} at byte {}", self.at))
    }
    fn value(&mut self, depth: usize) -> std::result::Result<Lit, String> {
        if depth > 16 {
            return self.err("nesting too deep");
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.at += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.at) {
                        None => return self.err("unterminated string"),
                        Some(&c) if c == q => break,
                        Some(b'\\') => {
                            self.at += 1;
                            match self.s.get(self.at) {
                                Some(&c) => out.push(c),
                                None => return self.err("unterminated string"),
                            }
                        }
                        Some(&c) => out.push(c),
                    }
                    self.at += 1;
                }
                self.at += 1;
                String::from_utf8(out)
                    .map(Lit::Str)
                    .or_else(|_| self.err("string is not UTF-8"))
            }
            Some(b'(') => {
                self.at += 1;
                let (items, trailing_comma) = self.items(b')', depth)?;
                // `(3)` is the integer 3 in Python; `(3,)` is a tuple.
                if items.len() == 1 && !trailing_comma {
                    Ok(items.into_iter().next().unwrap_or(Lit::None))
                } else {
                    Ok(Lit::Tuple(items))
                }
            }
            Some(b'[') => {
                self.at += 1;
                Ok(Lit::List(self.items(b']', depth)?.0))
            }
            Some(b'{') => {
                self.at += 1;
                let mut entries: Vec<(Lit, Lit)> = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Ok(Lit::Dict(entries));
                    }
                    let k = self.value(depth + 1)?;
                    if !self.eat(b':') {
                        return self.err("expected ':'");
                    }
                    let v = self.value(depth + 1)?;
                    if entries.iter().any(|(e, _)| *e == k) {
                        return Err(format!("duplicate key {k:?}"));
                    }
                    entries.push((k, v));
                    if !self.eat(b',') && self.peek() != Some(b'}') {
                        return self.err("expected ',' or '}'");
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.at;
                self.at += 1;
                while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
                let v = text.parse::<i128>().or_else(|_| self.err("bad integer"))?;
                if matches!(self.s.get(self.at), Some(b'L' | b'l')) {
                    self.at += 1;
                }
                Ok(Lit::Int(v))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                while self.s.get(self.at).is_some_and(u8::is_ascii_alphanumeric) {
                    self.at += 1;
                }
                match &self.s[start..self.at] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    _ => {
                        self.at = start;
                        self.err("unexpected name")
                    }
                }
            }
            Some(_) => self.err("unexpected character"),
            None => self.err("unexpected end"),
        }
    }
    /// Comma-separated values up to `close`; also says whether a comma came last.
    fn items(&mut self, close: u8, depth: usize) -> std::result::Result<(Vec<Lit>, bool), String> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            if self.eat(close) {
                return Ok((items, trailing));
            }
            items.push(self.value(depth + 1)?);
            trailing = self.eat(b',');
            if !trailing && self.peek() != Some(close) {
                return self.err("expected ',' or a closing bracket");
            }
        }
    }
}

/// Parse a `.npy` header dict: `(descr, fortran_order, shape)`, with numpy's rules
/// (exactly these three keys, in any order; `shape` a tuple of non-negative ints;
/// `fortran_order` a bool).
fn parse_header_dict(text: &str) -> std::result::Result<(Lit, bool, Vec<usize>), String> {
    let mut p = LitParser {
        s: text.as_bytes(),
        at: 0,
    };
    let v = p.value(0)?;
    if p.peek().is_some() {
        return p.err("text after the header dict");
    }
    let Lit::Dict(entries) = v else {
        return Err("header is not a dict".into());
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in entries {
        match k {
            Lit::Str(k) if k == "descr" => descr = Some(v),
            Lit::Str(k) if k == "fortran_order" => fortran = Some(v),
            Lit::Str(k) if k == "shape" => shape = Some(v),
            other => {
                return Err(format!(
                    "unexpected key {other:?} (numpy writes exactly 'descr', 'fortran_order', 'shape')"
                ));
            }
        }
    }
    let descr = descr.ok_or("header has no 'descr'")?;
    let fortran = match fortran.ok_or("header has no 'fortran_order'")? {
        Lit::Bool(b) => b,
        other => return Err(format!("'fortran_order' is {other:?}, not True or False")),
    };
    let shape = match shape.ok_or("header has no 'shape'")? {
        Lit::Tuple(dims) => dims
            .into_iter()
            .map(|d| match d {
                Lit::Int(n) => usize::try_from(n).map_err(|_| format!("bad dimension {n}")),
                other => Err(format!("dimension {other:?} is not an integer")),
            })
            .collect::<std::result::Result<Vec<usize>, String>>()?,
        other => return Err(format!("'shape' is {other:?}, not a tuple")),
    };
    Ok((descr, fortran, shape))
}

/// Parse a `.npy` header found at `offset` of `file`, `avail` bytes long.
pub(crate) fn parse_npy(
    file: &MappedFile,
    name: &str,
    offset: usize,
    avail: usize,
) -> Result<TensorInfo> {
    let path = file.path();
    let bad = |what: String| Error::format(path, format!("array '{name}': {what}"));
    let b = offset
        .checked_add(avail)
        .and_then(|end| file.bytes().get(offset..end))
        .ok_or_else(|| bad("member runs past the end of the file: truncated?".into()))?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array (bad magic)".into()));
    }
    let (hlen, hstart) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => {
            if b.len() < 12 {
                return Err(bad("truncated .npy header".into()));
            }
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    if hlen > MAX_NPY_HEADER_BYTES {
        return Err(bad(format!(
            ".npy header of {hlen} bytes is longer than numpy's {MAX_NPY_HEADER_BYTES}-byte limit"
        )));
    }
    let header = b
        .get(hstart..hstart + hlen)
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    // Versions 1 and 2 are latin-1, version 3 UTF-8; the keys and values numpy
    // writes are ASCII either way.
    let header: String = if b[6] == 3 {
        std::str::from_utf8(header)
            .map_err(|_| bad("header is not UTF-8".into()))?
            .to_string()
    } else {
        header.iter().map(|&c| c as char).collect()
    };
    let (descr, fortran, shape) =
        parse_header_dict(&header).map_err(|e| bad(format!("bad .npy header: {e}")))?;
    let dtype = match &descr {
        Lit::Str(s) if s == "<f4" => DType::F32,
        Lit::Str(s) if s == "<f2" => DType::F16,
        Lit::Str(s) if s == "<f8" => DType::F64,
        other => {
            return Err(Error::DType {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: match other {
                    Lit::Str(s) => s.clone(),
                    _ => "structured".into(),
                },
            });
        }
    };
    if fortran {
        return Err(Error::Unsupported(format!(
            "{}: array '{name}' is stored in Fortran order; re-save it C-contiguous",
            path.display()
        )));
    }
    let data_off = hstart + hlen;
    let need = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| bad("shape overflows".into()))?;
    if need > b.len() - data_off {
        return Err(bad(format!(
            "shape {shape:?} needs {need} bytes of data but the member holds {}: truncated or header lies",
            b.len() - data_off
        )));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        offset: offset + data_off,
    })
}

/// Read a standalone `.npy` file (f32, f16 or f64; C order) as an f32 tensor.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::{read_npy, write_npy};
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-read-{}.npy", std::process::id()));
/// write_npy(&path, &[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
/// let t = read_npy(&path)?;
/// assert_eq!((t.shape(), t.as_slice()), (&[2, 2][..], &[1.0, 2.0, 3.0, 4.0][..]));
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let file = MappedFile::open(path)?;
    let info = parse_npy(&file, "array", 0, file.bytes().len())?;
    Tensor::from_file(&file, "array", &info)
}

/// Write an f32 array as a `.npy` file (version 1.0, C order), atomically.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::weights::write_npy;
/// # let path = std::env::temp_dir().join(format!("saeplug-doc-write-{}.npy", std::process::id()));
/// write_npy(&path, &[3], &[1.0, 2.0, 3.0])?; // np.load(path) -> array([1., 2., 3.], dtype=float32)
/// assert_eq!(&std::fs::read(&path).unwrap()[..6], b"\x93NUMPY");
/// assert!(write_npy(&path, &[4], &[1.0]).is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &npy_bytes(shape, data)?)
}

/// The bytes of a `.npy` file holding `data`; the header is padded so the data
/// starts at a multiple of 64 bytes into the file.
pub(crate) fn npy_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows")))?;
    if numel != data.len() {
        return Err(Error::invalid(format!(
            "shape {shape:?} needs {numel} elements, got {}",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let hlen = u16::try_from(h.len())
        .map_err(|_| Error::invalid(format!("shape {shape:?} makes a .npy header too long")))?;
    let mut out = Vec::with_capacity(10 + h.len() + 4 * numel);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_header_dict;

    #[test]
    fn header_dict_like_numpy() {
        let ok = |h: &str| parse_header_dict(h).map(|(_, f, s)| (f, s));
        assert_eq!(
            ok("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n"),
            Ok((false, vec![2, 3]))
        );
        assert_eq!(
            ok(r#"{"shape": (4,), "descr": "<f4", "fortran_order": True}"#),
            Ok((true, vec![4]))
        );
        assert_eq!(
            ok("{'descr':'<f4','fortran_order':False,'shape':()}"),
            Ok((false, vec![]))
        );
        assert_eq!(
            ok("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L)}"),
            Ok((false, vec![2, 3]))
        );
        // What numpy refuses.
        for bad in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", // an int, not a tuple
            "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
            "{'descr': '<f4', 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}",
            "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
            "",
        ] {
            assert!(ok(bad).is_err(), "accepted {bad}");
        }
    }
}
