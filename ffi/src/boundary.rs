//! `ffi_boundary!`: run an extern body under `catch_unwind`, turning errors and
//! panics into a status code plus the thread-local last error.

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
