//! The activation store seen from outside: numpy reads what saeplug writes (and
//! saeplug reads what numpy writes), and damage done to a store while it is open
//! is an error, never a crash (those cases run in a child process).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use saeplug::ErrorKind;
use saeplug::store::{ActivationStore, Split, StoreDType, StoreSpec, StoreWriter};

/// Row r, column c of the test data (exact in f16).
fn val(r: usize, c: usize) -> f32 {
    (r % 97) as f32 * 0.125 - c as f32 * 0.25
}

fn write(dir: &Path, d: usize, n: usize, dtype: StoreDType) {
    let mut spec = StoreSpec::new(d, "l_out-6");
    spec.shard_rows = 50;
    spec.dtype = dtype;
    spec.layer = Some(6);
    spec.context_length = 16;
    let mut w = StoreWriter::create(dir, spec).unwrap();
    // Appended in uneven batches; every 4th sequence (of 15 rows) is held out.
    let mut r = 0;
    for batch in [1usize, 7, 33, 100, 59].iter().cycle() {
        if r >= n {
            break;
        }
        let take = (*batch).min(n - r);
        for k in r..r + take {
            let split = if (k / 15) % 4 == 3 {
                Split::Heldout
            } else {
                Split::Train
            };
            let acts: Vec<f32> = (0..d).map(|c| val(k, c)).collect();
            w.append(
                split,
                &acts,
                &[k as i32 * 3],
                &[(k / 15) as u32],
                &[1 + (k % 15) as u32],
            )
            .unwrap();
        }
        r += take;
    }
    w.finish().unwrap();
}

const NUMPY_CHECK: &str = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file
d, n = int(sys.argv[2]), int(sys.argv[3])
m = json.load(open(sys.argv[1] + "/manifest.json"))
assert m["format"] == "saeplug-activations" and m["complete"], m
assert m["d_in"] == d and m["layer"] == 6 and m["hook_name"] == "l_out-6"
total = 0
for split, held in (("train", False), ("heldout", True)):
    s = m["splits"][split]
    parts = [load_file(sys.argv[1] + "/" + sh["file"]) for sh in s["shards"]]
    for p, sh in zip(parts, s["shards"]):
        assert p["acts"].shape == (sh["rows"], d), (p["acts"].shape, sh)
        assert p["acts"].dtype == (np.float16 if m["dtype"] == "F16" else np.float32)
        assert p["tokens"].dtype == np.int32 and p["seq"].dtype == np.uint32 and p["pos"].dtype == np.uint32
    acts = np.concatenate([p["acts"] for p in parts]).astype(np.float64)
    tokens = np.concatenate([p["tokens"] for p in parts])
    seq = np.concatenate([p["seq"] for p in parts])
    pos = np.concatenate([p["pos"] for p in parts])
    k = np.array([r for r in range(n) if ((r // 15) % 4 == 3) == held])
    want = (k % 97)[:, None] * 0.125 - np.arange(d)[None, :] * 0.25
    assert acts.shape == want.shape and np.array_equal(acts, want), split
    assert np.array_equal(tokens, 3 * k) and np.array_equal(seq, k // 15) and np.array_equal(pos, 1 + k % 15)
    assert s["rows"] == len(k) and s["sequences"] == len(set((k // 15).tolist()))
    total += len(k)
assert m["rows"] == total == n
print("NUMPY-OK")
"#;

#[test]
fn numpy_reads_the_store_saeplug_writes() {
    let out = scratch("store_numpy");
    for dtype in [StoreDType::F32, StoreDType::F16] {
        let dir = out.join(dtype.name());
        let (d, n) = (24, 517);
        write(&dir, d, n, dtype);
        let o = run_ok(
            Command::new("python3")
                .args(["-c", NUMPY_CHECK])
                .arg(&dir)
                .arg(d.to_string())
                .arg(n.to_string()),
        );
        assert!(o.contains("NUMPY-OK"), "{o}");
    }
}

/// Shards written by numpy's safetensors (with a manifest written by hand) are
/// read by saeplug; NaN rows in them are found and refused.
#[test]
fn saeplug_reads_shards_numpy_writes_and_finds_their_nan_rows() {
    let dir = scratch("store_from_numpy");
    let script = r#"
import json, sys
import numpy as np
from safetensors.numpy import save_file
out = sys.argv[1]
rng = np.random.default_rng(5)
shards = []
for i, n in enumerate([30, 11]):
    acts = rng.standard_normal((n, 8)).astype(np.float32)
    if i == 1:
        acts[4, 6] = np.nan
        acts[9, 0] = np.inf
    np.save(f"{out}/want{i}.npy", acts)
    save_file({"acts": acts, "tokens": np.arange(n, dtype=np.int32),
               "seq": np.zeros(n, np.uint32), "pos": np.arange(1, n + 1, dtype=np.uint32)},
              f"{out}/train-{i:05}.safetensors")
    shards.append({"file": f"train-{i:05}.safetensors", "rows": n})
m = {"format": "saeplug-activations", "version": 1, "complete": True, "d_in": 8, "dtype": "F32",
     "hook_name": "h", "layer": None, "context_length": 0, "bos_excluded": True, "model": None,
     "rows": 41, "skipped_non_finite": 0, "metadata": {},
     "splits": {"train": {"rows": 41, "sequences": 1, "shards": shards},
                "heldout": {"rows": 0, "sequences": 0, "shards": []}}}
json.dump(m, open(f"{out}/manifest.json", "w"))
"#;
    run_ok(Command::new("python3").args(["-c", script]).arg(&dir));
    let s = ActivationStore::open(&dir).unwrap();
    let want0 = saeplug::weights::read_npy(&dir.join("want0.npy")).unwrap();
    assert_eq!(s.rows(Split::Train, 0, 30).unwrap(), want0.as_slice());
    let want1 = saeplug::weights::read_npy(&dir.join("want1.npy")).unwrap();
    assert_eq!(
        s.rows(Split::Train, 30, 4).unwrap(),
        want1.as_slice()[..4 * 8]
    );
    let e = s.rows(Split::Train, 25, 16).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite);
    assert!(e.to_string().contains("row 34, column 6"), "{e}");
    assert_eq!(s.non_finite_rows(Split::Train).unwrap(), [34, 39]);
}

// ---------------------------------------------------------------------------
// Child-process cases: a SIGBUS or abort fails the parent test, not the runner.

fn in_child(case: &str, arg: &Path) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["child_case", "--exact", "--nocapture", "--test-threads=1"])
        .env("SAEPLUG_CHILD_CASE", case)
        .env("SAEPLUG_CHILD_ARG", arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait child") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            child.wait().ok();
            panic!("case '{case}' hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().expect("child output");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        status.success(),
        "case '{case}' crashed ({status}):\n{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .find_map(|l| l.split_once("CHILD-RESULT: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("case '{case}' printed no result:\n{out}"))
        .to_string()
}

fn outcome<T>(r: saeplug::Result<T>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(e) => format!("ERR {:?} {e}", e.kind()),
    }
}

#[test]
fn child_case() {
    let Ok(case) = std::env::var("SAEPLUG_CHILD_CASE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os("SAEPLUG_CHILD_ARG").unwrap_or_default());
    let shard = dir.join("train-00001.safetensors");
    let r = match case.as_str() {
        "open" => outcome(ActivationStore::open(&dir)),
        // Open, truncate a shard to a few bytes, then read rows in it, and a gather.
        "truncate_then_read" => outcome(ActivationStore::open(&dir).and_then(|s| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&shard)
                .and_then(|f| f.set_len(16))
                .expect("truncate");
            let e = s.rows(Split::Train, 60, 10);
            let mut g = vec![0.0; s.d_in()];
            let e2 = s.gather_into(Split::Train, &[0], &mut g);
            let e3 = s.tokens(Split::Train, 55, 1);
            assert!(
                e2.is_err() && e3.is_err(),
                "gather or tokens read a changed store"
            );
            e
        })),
        // Replace a shard with another (same size, new inode) after open.
        "replace_then_read" => outcome(ActivationStore::open(&dir).and_then(|s| {
            let bytes = std::fs::read(&shard).expect("read shard");
            std::fs::write(dir.join("new"), bytes).expect("write");
            std::fs::rename(dir.join("new"), &shard).expect("rename");
            s.rows(Split::Train, 60, 1)
        })),
        other => format!("unknown case {other}"),
    };
    println!("\nCHILD-RESULT: {r}");
}

#[test]
fn a_shard_changed_after_open_is_an_error_not_a_crash() {
    let out = scratch("store_child");
    for case in ["truncate_then_read", "replace_then_read"] {
        let dir = out.join(case);
        write(&dir, 16, 300, StoreDType::F32);
        assert_eq!(in_child("open", &dir), "OK");
        let r = in_child(case, &dir);
        assert!(
            r.starts_with("ERR FileChanged") && r.contains("train-00001.safetensors"),
            "{case}: {r}"
        );
        // Opened afresh, the truncated shard is a format error naming it.
        if case == "truncate_then_read" {
            let r = in_child("open", &dir);
            assert!(
                r.starts_with("ERR Format") && r.contains("train-00001"),
                "{r}"
            );
        }
    }
}
