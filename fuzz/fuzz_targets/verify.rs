//! Package verification: a ZIP (inputs starting `PK`) is verified as a package (signature,
//! part digests, block map, payloads); anything else is verified as an `AppxSignature.p7x`
//! and parsed as a block map. A verdict or an error, never a panic, never a pass of bytes
//! that are not a signed package.
#![no_main]

use appattach_operator::inspect::{signature, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        let _ = verify::verify_from(std::io::Cursor::new(data));
    } else {
        let _ = signature::verify_p7x(data);
        let _ = verify::blockmap::parse(data);
    }
});
