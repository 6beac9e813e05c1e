//! Disk images (VHDX, VHD, raw; GPT, MBR or none; NTFS): the package folders or an error,
//! never a panic, never a loop.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appattach_operator::inspect::image::read_image(std::io::Cursor::new(data));
});
