//! A deliberate data race, ignored by default. `scripts/tsan.sh` runs it under
//! ThreadSanitizer and requires it to be *reported*: proof that the sanitizer
//! is really instrumenting the build whose clean runs it records.

#[test]
#[ignore = "a deliberate data race: only for scripts/tsan.sh"]
fn tsan_canary_deliberate_race() {
    struct Shared(*mut u64);
    // SAFETY: deliberately unsound, to give ThreadSanitizer a race to report.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}
    let mut value = 0u64;
    let p = Shared(&mut value);
    // Both threads start writing together (the barrier orders nothing after it).
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (p, start) = (&p, &start);
            s.spawn(move || {
                start.wait();
                for _ in 0..1000 {
                    // SAFETY: not safe: unsynchronised writes from two threads.
                    unsafe { *p.0 = std::hint::black_box(*p.0) + 1 };
                }
            });
        }
    });
    assert!(value > 0);
}
