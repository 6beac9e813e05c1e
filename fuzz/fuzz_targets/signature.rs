//! `AppxSignature.p7x` blobs: facts or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appattach_operator::inspect::signature::read_p7x(data);
});
