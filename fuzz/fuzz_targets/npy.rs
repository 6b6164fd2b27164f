#![no_main]
//! Arbitrary bytes as a standalone `.npy` file: the header is parsed as the Python
//! dict literal it is (quotes, key order, tuples, numpy's key/type rules), the
//! shape checked against the file before anything is allocated, then the data read.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch().join("npy");
    std::fs::create_dir_all(&d).ok();
    let p = d.join("x.npy");
    std::fs::write(&p, data).ok();
    if let Ok(t) = saeplug::weights::read_npy(&p) {
        // Every element is readable, and the shape describes exactly the data.
        let n: usize = t.shape().iter().product();
        assert_eq!(t.as_slice().len(), n);
        std::hint::black_box(t.as_slice().iter().fold(0.0f32, |a, v| a + v));
    }
});
