//! A package (ZIP/OPC, manifests, bundles) or a bare manifest: any input gives facts or an
//! error, never a panic, in bounded time and memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        let _ = appattach_operator::inspect::package::read_package_from(
            std::io::Cursor::new(data),
            "fuzz.msix",
        );
        let dest = std::env::temp_dir().join(format!("appattach-fuzz-{}", std::process::id()));
        let _ = appattach_operator::inspect::package::expand_from(std::io::Cursor::new(data), &dest);
        let _ = std::fs::remove_dir_all(&dest);
    } else {
        let _ = appattach_operator::inspect::package::parse_manifest(data);
    }
});
