//! Round trips and bad input for the activation store. Expected values come from
//! closed-form formulas (row r, column c -> a value), never from the writer.

use std::path::PathBuf;

use super::writer::write_shard;
use super::*;
use crate::ErrorKind;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("saeplug-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The value of row `r`, column `c` (exact in f16 for small r, c).
fn val(r: usize, c: usize) -> f32 {
    (r as f32) * 0.25 - (c as f32) * 0.5
}

fn rows_of(range: std::ops::Range<usize>, d: usize) -> Vec<f32> {
    range.flat_map(|r| (0..d).map(move |c| val(r, c))).collect()
}

/// Write `n` rows (row r has token 1000 + r, sequence r / 7, position 1 + r % 7),
/// every 5th sequence to the held-out split, appended in batches of `batch`.
fn write_store(
    dir: &std::path::Path,
    d: usize,
    n: usize,
    shard: usize,
    dtype: StoreDType,
) -> Manifest {
    let mut spec = StoreSpec::new(d, "l_out-6");
    spec.shard_rows = shard;
    spec.dtype = dtype;
    spec.layer = Some(6);
    spec.context_length = 8;
    let mut w = StoreWriter::create(dir, spec).unwrap();
    for r in 0..n {
        let split = if (r / 7) % 5 == 4 {
            Split::Heldout
        } else {
            Split::Train
        };
        w.append(
            split,
            &rows_of(r..r + 1, d),
            &[1000 + r as i32],
            &[(r / 7) as u32],
            &[1 + (r % 7) as u32],
        )
        .unwrap();
    }
    w.finish().unwrap()
}

fn expected_rows(n: usize, split: Split) -> Vec<usize> {
    (0..n)
        .filter(|r| ((r / 7) % 5 == 4) == (split == Split::Heldout))
        .collect()
}

#[test]
fn round_trip_f32_and_f16_across_shards_and_splits() {
    for dtype in [StoreDType::F32, StoreDType::F16] {
        let dir = tmp(&format!("rt-{}", dtype.name()));
        let (d, n) = (6, 200);
        let m = write_store(&dir, d, n, 16, dtype);
        let s = ActivationStore::open(&dir).unwrap();
        assert_eq!(s.manifest(), &m);
        for split in [Split::Train, Split::Heldout] {
            let want = expected_rows(n, split);
            assert_eq!(s.n_rows(split), want.len());
            let seqs: std::collections::BTreeSet<usize> = want.iter().map(|r| r / 7).collect();
            assert_eq!(m.split(split).sequences, seqs.len() as u64);
            assert!(m.split(split).shards.iter().all(|x| x.rows <= 16));
            let got = s.rows(split, 0, want.len()).unwrap();
            let exp: Vec<f32> = want
                .iter()
                .flat_map(|&r| (0..d).map(move |c| val(r, c)))
                .collect();
            assert_eq!(got, exp, "{dtype:?} {split:?}");
            // Reads starting and ending inside shards.
            let mid = s.rows(split, 13, 20).unwrap();
            assert_eq!(mid, exp[13 * d..33 * d]);
            let toks = s.tokens(split, 0, want.len()).unwrap();
            assert_eq!(
                toks,
                want.iter().map(|&r| 1000 + r as i32).collect::<Vec<_>>()
            );
            let (sq, ps) = s.positions(split, 0, want.len()).unwrap();
            assert_eq!(sq, want.iter().map(|&r| (r / 7) as u32).collect::<Vec<_>>());
            assert_eq!(
                ps,
                want.iter().map(|&r| 1 + (r % 7) as u32).collect::<Vec<_>>()
            );
            let idx = [want.len() - 1, 0, 17, 17];
            let mut g = vec![0.0; idx.len() * d];
            s.gather_into(split, &idx, &mut g).unwrap();
            for (k, &i) in idx.iter().enumerate() {
                assert_eq!(g[k * d..(k + 1) * d], exp[i * d..(i + 1) * d]);
            }
            assert!(s.non_finite_rows(split).unwrap().is_empty());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn f16_rounds_like_ieee_half_and_skips_overflow() {
    let dir = tmp("f16");
    let mut spec = StoreSpec::new(3, "x");
    spec.dtype = StoreDType::F16;
    let mut w = StoreWriter::create(&dir, spec).unwrap();
    let x = [0.1f32, -3.3, 1234.567, 7e4, 0.0, 0.0, 1e-8, 65504.0, -2.0];
    w.append(Split::Train, &x, &[1, 2, 3], &[0, 0, 0], &[1, 2, 3])
        .unwrap();
    let m = w.finish().unwrap();
    assert_eq!((m.train.rows(), m.skipped_non_finite), (2, 1)); // 7e4 > f16 max
    let got = ActivationStore::open(&dir)
        .unwrap()
        .rows(Split::Train, 0, 2)
        .unwrap();
    // Nearest f16 values, computed by hand: 0.1 -> 0.0999755859375 (0x2E66),
    // -3.3 -> -3.30078125 (0xC29A), 1234.567 -> 1235.0 (spacing 1 in [1024, 2048)),
    // 1e-8 -> 0 (below half the smallest subnormal 5.96e-8), 65504 exact.
    assert_eq!(
        got,
        [0.099_975_586, -3.300_781_3, 1235.0, 0.0, 65504.0, -2.0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_rows_are_skipped_by_the_writer_and_refused_by_the_reader() {
    let dir = tmp("nan");
    let mut w = StoreWriter::create(&dir, StoreSpec::new(2, "x")).unwrap();
    w.append(
        Split::Train,
        &[1.0, 2.0, f32::INFINITY, 0.0, 3.0, f32::NAN, 4.0, 5.0],
        &[1, 2, 3, 4],
        &[0; 4],
        &[1, 2, 3, 4],
    )
    .unwrap();
    let m = w.finish().unwrap();
    assert_eq!((m.train.rows(), m.skipped_non_finite), (2, 2));
    let s = ActivationStore::open(&dir).unwrap();
    assert_eq!(s.rows(Split::Train, 0, 2).unwrap(), [1.0, 2.0, 4.0, 5.0]);
    assert_eq!(s.tokens(Split::Train, 0, 2).unwrap(), [1, 4]);

    // A shard damaged later (or written by someone else) with NaN/Inf rows:
    // reads that touch them fail naming row and column; a scan lists them.
    let d = 3;
    let mut acts: Vec<f32> = rows_of(0..5, d);
    acts[d + 2] = f32::NAN; // row 1, column 2
    acts[4 * d] = f32::NEG_INFINITY; // row 4, column 0
    let bytes: Vec<u8> = acts.iter().flat_map(|v| v.to_le_bytes()).collect();
    let dir2 = tmp("nan2");
    let mut w = StoreWriter::create(&dir2, StoreSpec::new(d, "x")).unwrap();
    w.append(
        Split::Train,
        &rows_of(0..5, d),
        &[0; 5],
        &[0; 5],
        &[1, 2, 3, 4, 5],
    )
    .unwrap();
    w.finish().unwrap();
    let shard = dir2.join("train-00000.safetensors");
    std::fs::remove_file(&shard).unwrap();
    write_shard(
        &shard,
        StoreDType::F32,
        d,
        &bytes,
        &[0; 5],
        &[0; 5],
        &[1, 2, 3, 4, 5],
        &[],
    )
    .unwrap();
    let s = ActivationStore::open(&dir2).unwrap();
    assert_eq!(s.rows(Split::Train, 0, 1).unwrap(), rows_of(0..1, d));
    let e = s.rows(Split::Train, 0, 5).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
    assert!(
        matches!(e, crate::Error::NonFinite { row: 1, col: 2, .. }),
        "{e}"
    );
    let e = s.rows(Split::Train, 2, 3).unwrap_err();
    assert!(
        matches!(e, crate::Error::NonFinite { row: 4, col: 0, .. }),
        "{e}"
    );
    let mut g = vec![0.0; d];
    let e = s.gather_into(Split::Train, &[4], &mut g).unwrap_err();
    assert!(
        matches!(e, crate::Error::NonFinite { row: 4, col: 0, .. }),
        "{e}"
    );
    assert_eq!(s.non_finite_rows(Split::Train).unwrap(), [1, 4]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

fn edit_manifest(dir: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join(MANIFEST);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn open_err(dir: &std::path::Path) -> crate::Error {
    ActivationStore::open(dir).unwrap_err()
}

#[test]
fn manifest_and_shards_that_disagree_are_clear_errors() {
    let good = tmp("bad-src");
    write_store(&good, 4, 60, 16, StoreDType::F32);
    let fresh = |name: &str| {
        let d = tmp(name);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&good).unwrap().flatten() {
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        d
    };
    // The manifest claims one more row in a shard (and in the totals).
    let d = fresh("rows");
    edit_manifest(&d, |v| {
        let s = &mut v["splits"]["train"];
        s["shards"][1]["rows"] = (16 + 1).into();
        s["rows"] = (s["rows"].as_u64().unwrap() + 1).into();
        v["rows"] = (v["rows"].as_u64().unwrap() + 1).into();
    });
    let e = open_err(&d);
    assert_eq!(e.kind(), ErrorKind::Format);
    let msg = e.to_string();
    assert!(
        msg.contains("train-00001.safetensors") && msg.contains("disagree"),
        "{msg}"
    );
    // Totals that do not add up.
    let d = fresh("totals");
    edit_manifest(&d, |v| v["splits"]["heldout"]["rows"] = 999.into());
    let msg = open_err(&d).to_string();
    assert!(msg.contains("claims 999 rows"), "{msg}");
    // A missing shard.
    let d = fresh("missing");
    std::fs::remove_file(d.join("train-00002.safetensors")).unwrap();
    let e = open_err(&d);
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(
        e.to_string().contains("train-00002.safetensors") && e.to_string().contains("missing"),
        "{e}"
    );
    // A truncated shard.
    let d = fresh("trunc");
    let p = d.join("train-00000.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let e = open_err(&d);
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(
        e.to_string().contains("train-00000.safetensors") && e.to_string().contains("truncated"),
        "{e}"
    );
    // The wrong dtype or width.
    let d = fresh("dtype");
    edit_manifest(&d, |v| v["dtype"] = "F16".into());
    let msg = open_err(&d).to_string();
    assert!(
        msg.contains("'acts' is F32, but the manifest says F16"),
        "{msg}"
    );
    let d = fresh("width");
    edit_manifest(&d, |v| v["d_in"] = 5.into());
    assert!(open_err(&d).to_string().contains("disagree"));
    // Shard names that leave the folder, listed twice, or a foreign format.
    let d = fresh("escape");
    edit_manifest(&d, |v| {
        v["splits"]["train"]["shards"][0]["file"] = "../x.safetensors".into()
    });
    assert!(open_err(&d).to_string().contains("not a plain"));
    let d = fresh("twice");
    edit_manifest(&d, |v| {
        let first = v["splits"]["train"]["shards"][0].clone();
        v["splits"]["train"]["shards"][1] = first;
    });
    assert!(open_err(&d).to_string().contains("listed twice"));
    let d = fresh("format");
    edit_manifest(&d, |v| v["version"] = 2.into());
    assert!(open_err(&d).to_string().contains("version 2"));
    // Not JSON at all.
    let d = fresh("json");
    std::fs::write(d.join(MANIFEST), b"{\"format\": ").unwrap();
    assert!(open_err(&d).to_string().contains("not valid JSON"));
    for n in [
        "rows", "totals", "missing", "trunc", "dtype", "width", "escape", "twice", "format", "json",
    ] {
        let _ = std::fs::remove_dir_all(tmp(n));
    }
    let _ = std::fs::remove_dir_all(&good);
}

#[test]
fn an_interrupted_capture_leaves_whole_shards_and_an_incomplete_manifest() {
    let dir = tmp("interrupt");
    let mut spec = StoreSpec::new(2, "x");
    spec.shard_rows = 4;
    let mut w = StoreWriter::create(&dir, spec).unwrap();
    w.append(
        Split::Train,
        &rows_of(0..10, 2),
        &[0; 10],
        &[0; 10],
        &[1; 10],
    )
    .unwrap();
    assert_eq!(w.rows(Split::Train), 10);
    drop(w);
    let e = open_err(&dir);
    assert!(
        e.to_string().contains("incomplete") && e.to_string().contains("8 whole rows"),
        "{e}"
    );
    let s = ActivationStore::open_partial(&dir).unwrap();
    assert_eq!(s.rows(Split::Train, 0, 8).unwrap(), rows_of(0..8, 2));
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_file_is_named_and_hashed() {
    let dir = tmp("model");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, b"abc").unwrap();
    let mut spec = StoreSpec::new(1, "x");
    spec.model_path = Some(model);
    let m = StoreWriter::create(&dir.join("store"), spec)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(
        m.model,
        Some(ModelInfo {
            file: "tiny.gguf".into(),
            // SHA-256("abc"), FIPS 180-2 appendix B.1.
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
            bytes: 3,
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_refused() {
    let dir = tmp("args");
    let mut spec = StoreSpec::new(2, "x");
    spec.shard_rows = 0;
    assert_eq!(
        StoreWriter::create(&dir, spec).err().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
    let mut w = StoreWriter::create(&dir, StoreSpec::new(2, "x")).unwrap();
    for (a, t, s, p) in [
        (&[0.0f32; 3][..], &[0i32][..], &[0u32][..], &[0u32][..]),
        (&[0.0; 2], &[0], &[0, 0], &[0]),
        (&[0.0; 2], &[0], &[0], &[]),
    ] {
        assert_eq!(
            w.append(Split::Train, a, t, s, p).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    w.append(Split::Train, &[1.0, 2.0], &[0], &[0], &[1])
        .unwrap();
    w.finish().unwrap();
    let s = ActivationStore::open(&dir).unwrap();
    let mut out = [0.0; 3];
    assert_eq!(
        s.rows_into(Split::Train, 0, &mut out).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        s.rows(Split::Train, usize::MAX, 2).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        s.tokens(Split::Heldout, 0, 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut g = [0.0; 2];
    assert_eq!(
        s.gather_into(Split::Train, &[1], &mut g)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let _ = std::fs::remove_dir_all(&dir);
}
