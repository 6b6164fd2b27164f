//! The C ABI called from Rust: argument validation, error messages, ownership
//! rules, and one SAE handle shared by many threads with a context each.

use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};

use saeplug_ffi::*;

fn last_error() -> String {
    let mut buf = vec![0 as std::ffi::c_char; 512];
    // SAFETY: buf has 512 writable bytes.
    let n = unsafe { saeplug_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by the call.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert_eq!(s.len(), n);
    s
}

fn fixture(case: &str) -> CString {
    let root = std::env::var_os("SAEPLUG_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
        });
    let p = root.join("saelens").join(case);
    CString::new(p.to_str().unwrap()).unwrap()
}

fn open(case: &str) -> *mut saeplug_sae {
    let mut sae = null_mut();
    // SAFETY: valid C string and out pointer.
    let st = unsafe { saeplug_sae_open(fixture(case).as_ptr(), &mut sae) };
    assert_eq!(st, saeplug_status::Ok, "{}", last_error());
    sae
}

#[test]
fn null_pointers_and_bad_arguments_are_errors_with_messages() {
    let sae = open("standard");
    let mut ctx = null_mut();
    // SAFETY: all pointers valid or deliberately NULL; lengths match buffers.
    unsafe {
        assert_eq!(saeplug_ctx_new(1, 1, &mut ctx), saeplug_status::Ok);
        let x = vec![0.5f32; 64];
        let mut f = vec![0.0f32; 256];
        assert_eq!(
            saeplug_ctx_encode(null_mut(), sae, x.as_ptr(), 64, 1, f.as_mut_ptr(), 256),
            saeplug_status::NullPointer
        );
        assert!(last_error().contains("'ctx'"));
        assert_eq!(
            saeplug_ctx_encode(ctx, sae, null(), 64, 1, f.as_mut_ptr(), 256),
            saeplug_status::NullPointer
        );
        assert!(last_error().contains("'x'"));
        assert_eq!(
            saeplug_ctx_encode(ctx, sae, x.as_ptr(), 64, 2, f.as_mut_ptr(), 256),
            saeplug_status::InvalidArgument
        );
        assert!(last_error().contains("n_rows"));
        assert_eq!(
            saeplug_ctx_encode(ctx, sae, x.as_ptr(), 64, 1, f.as_mut_ptr(), 256),
            saeplug_status::Ok
        );
        // Out-params untouched on failure.
        let mut keep = 0x1234usize as *mut saeplug_sae;
        assert_eq!(
            saeplug_sae_open(c"/no/such/sae".as_ptr(), &mut keep),
            saeplug_status::Io
        );
        assert_eq!(keep as usize, 0x1234);
        assert_eq!(
            saeplug_sae_open(null(), &mut keep),
            saeplug_status::NullPointer
        );
        // Invalid UTF-8 path.
        let bad = [0xffu8 as std::ffi::c_char, 0];
        assert_eq!(
            saeplug_sae_open(bad.as_ptr(), &mut keep),
            saeplug_status::InvalidUtf8
        );
        // Unknown codes map to a description, never NULL.
        assert!(!saeplug_status_str(9999).is_null());
        assert_eq!(
            CStr::from_ptr(saeplug_status_str(9999)),
            CStr::from_ptr(saeplug_status_str(saeplug_status::InvalidArgument as u32))
        );
        assert_eq!(saeplug_status::try_from(9999), Err(9999));
        assert_eq!(
            saeplug_status::try_from(107),
            Ok(saeplug_status::FileChanged)
        );
        assert_eq!(saeplug_abi_version() >> 16, SAEPLUG_ABI_VERSION_MAJOR);
        // Hooks validate features and kinds.
        let mut hook = null_mut();
        assert_eq!(saeplug_hook_new(sae, 2, &mut hook), saeplug_status::Ok);
        assert_eq!(
            saeplug_hook_add_edit(hook, 1, 256, 1.0),
            saeplug_status::InvalidArgument
        );
        assert_eq!(
            saeplug_hook_add_edit(hook, 9, 0, 1.0),
            saeplug_status::InvalidArgument
        );
        assert_eq!(
            saeplug_hook_add_edit(hook, 1, 0, f32::NAN),
            saeplug_status::InvalidArgument
        );
        assert_eq!(
            saeplug_hook_set_positions(hook, 3, 5, 5),
            saeplug_status::InvalidArgument
        );
        // The hook keeps the SAE alive: free the SAE first, then use the hook.
        saeplug_sae_free(sae);
        assert_eq!(saeplug_hook_add_edit(hook, 1, 3, 2.0), saeplug_status::Ok);
        let mut y = vec![0.25f32; 128];
        assert_eq!(
            saeplug_ctx_hook_apply(ctx, hook, y.as_mut_ptr(), 128, 2, 0),
            saeplug_status::Ok
        );
        saeplug_hook_free(hook);
        saeplug_hook_free(null_mut());
        saeplug_ctx_free(ctx);
        saeplug_ctx_free(null_mut());
        saeplug_sae_free(null_mut());
    }
}

#[test]
fn one_sae_many_threads_each_with_a_context() {
    let sae = open("topk") as usize;
    let x: Vec<f32> = (0..64 * 16)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let encode = |sae: usize| -> Vec<f32> {
        let mut ctx = null_mut();
        let mut f = vec![0.0f32; 16 * 256];
        // SAFETY: live handles, buffers sized as stated.
        unsafe {
            assert_eq!(saeplug_ctx_new(1, 1, &mut ctx), saeplug_status::Ok);
            assert_eq!(
                saeplug_ctx_encode(
                    ctx,
                    sae as *const saeplug_sae,
                    x.as_ptr(),
                    x.len(),
                    16,
                    f.as_mut_ptr(),
                    f.len()
                ),
                saeplug_status::Ok
            );
            saeplug_ctx_free(ctx);
        }
        f
    };
    let want = encode(sae);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let rounds: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while std::time::Instant::now() < deadline {
                        assert_eq!(encode(sae), want, "a concurrent encode differed");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(rounds >= 8, "only {rounds} rounds");
    // SAFETY: every thread has joined.
    unsafe { saeplug_sae_free(sae as *mut saeplug_sae) };
}

#[test]
fn a_mapped_file_truncated_in_place_is_an_error_not_a_crash() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/saelens/standard");
    let src = std::env::var_os("SAEPLUG_FIXTURES")
        .map(|p| std::path::PathBuf::from(p).join("saelens/standard"))
        .unwrap_or(src);
    let dir = std::env::temp_dir().join(format!("saeplug-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["cfg.json", "sae_weights.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let mut sae = null_mut();
    let mut ctx = null_mut();
    // SAFETY: valid pointers; buffers sized as stated.
    unsafe {
        assert_eq!(
            saeplug_sae_open(path.as_ptr(), &mut sae),
            saeplug_status::Ok
        );
        assert_eq!(saeplug_ctx_new(1, 1, &mut ctx), saeplug_status::Ok);
        let x = vec![0.5f32; 64];
        let mut f = vec![0.0f32; 256];
        assert_eq!(
            saeplug_ctx_encode(ctx, sae, x.as_ptr(), 64, 1, f.as_mut_ptr(), 256),
            saeplug_status::Ok
        );
        // Truncate the mapped file in place: reading the map now would SIGBUS.
        let w = dir.join("sae_weights.safetensors");
        let len = std::fs::metadata(&w).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&w)
            .unwrap()
            .set_len(len / 4)
            .unwrap();
        assert_eq!(
            saeplug_ctx_encode(ctx, sae, x.as_ptr(), 64, 1, f.as_mut_ptr(), 256),
            saeplug_status::FileChanged
        );
        assert!(last_error().contains("changed on disk"), "{}", last_error());
        assert_eq!(
            saeplug_sae_check_unchanged(sae),
            saeplug_status::FileChanged
        );
        saeplug_ctx_free(ctx);
        saeplug_sae_free(sae);
    }
    std::fs::remove_dir_all(&dir).ok();
}
