//! The boundary macros every extern fn goes through (ffi/tests/boundary.rs checks
//! that each `#[unsafe(no_mangle)]` body is exactly one of them):
//!
//! * `ffi_boundary!` runs a fallible body under `catch_unwind`, turning errors and
//!   panics into a status code plus the thread-local last error;
//! * `ffi_boundary_value!` does the same for getters and frees, which return a
//!   value (or nothing) instead of a status: on a panic they return `fallback`
//!   and the panic's message becomes the thread's last error.
//!
//! And `u32_enum!`, the one list a C enum comes from: the Rust enum, its
//! `TryFrom<u32>` and the C declaration of the header (see `crate::enums`).

macro_rules! ffi_boundary {
    ($($body:tt)*) => {{
        let r = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<(), $crate::error::FfiError> { $($body)* },
        ));
        match r {
            Ok(Ok(())) => $crate::error::saeplug_status::Ok,
            Ok(Err(e)) => $crate::error::set_last_error(e),
            Err(p) => $crate::error::set_last_error($crate::error::FfiError::panic(p)),
        }
    }};
}

macro_rules! ffi_boundary_value {
    ($fallback:expr; $($body:tt)*) => {{
        let r = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* }));
        match r {
            Ok(v) => v,
            Err(p) => {
                $crate::error::set_last_error($crate::error::FfiError::panic(p));
                $fallback
            }
        }
    }};
}

/// One list per C enum: declares the `#[repr(u32)]` Rust enum, its
/// `TryFrom<u32>` (the error is the unknown value) and its `CEnum` description,
/// from which the header's C declaration is generated (`crate::enums::c_declaration`).
macro_rules! u32_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $(
                $(#[doc = $vdoc:literal])*
                $variant:ident = $value:literal,
            )+
        }
    ) => {
        $(#[doc = $doc])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $(
                $(#[doc = $vdoc])*
                $variant = $value,
            )+
        }

        impl ::std::convert::TryFrom<u32> for $name {
            type Error = u32;
            fn try_from(v: u32) -> ::std::result::Result<Self, u32> {
                $(
                    if v == $value {
                        return Ok($name::$variant);
                    }
                )+
                Err(v)
            }
        }

        impl $crate::enums::CEnum for $name {
            const C_NAME: &'static str = stringify!($name);
            const DOC: &'static [&'static str] = &[$($doc),*];
            const VARIANTS: &'static [$crate::enums::Variant] = &[
                $(
                    $crate::enums::Variant {
                        name: stringify!($variant),
                        value: $value,
                        doc: &[$($vdoc),*],
                    },
                )+
            ];
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::error::{saeplug_last_error_length, saeplug_last_error_message, saeplug_status};

    fn last_error() -> String {
        let mut buf = vec![0 as std::ffi::c_char; saeplug_last_error_length().max(1)];
        // SAFETY: `buf` has `buf.len()` writable bytes.
        let n = unsafe { saeplug_last_error_message(buf.as_mut_ptr(), buf.len()) };
        buf[..n].iter().map(|c| *c as u8 as char).collect()
    }

    #[test]
    fn a_panic_becomes_a_status_or_the_fallback_and_a_message() {
        let st = ffi_boundary! {
            if saeplug_last_error_length() < usize::MAX {
                panic!("status boom");
            }
            Ok(())
        };
        assert_eq!(st, saeplug_status::Panic);
        assert!(last_error().contains("status boom"), "{}", last_error());
        let v: u32 = ffi_boundary_value! { 7;
            if saeplug_last_error_length() < usize::MAX {
                panic!("value boom {}", 42);
            }
            1
        };
        assert_eq!(v, 7);
        assert!(last_error().contains("value boom 42"), "{}", last_error());
        let ok: u32 = ffi_boundary_value! { 7; 1 };
        assert_eq!(ok, 1);
    }
}
