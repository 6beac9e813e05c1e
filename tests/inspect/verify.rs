//! Package verification against Microsoft's own test packages (msix-packaging, each named
//! for the error Windows gives) and against packages signed here by `osslsigncode`,
//! tampered with part by part.

use std::path::PathBuf;

use appattach_operator::inspect::verify::{Against, Code, Verification, verify_path};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/msix-packaging")
        .join(name)
}

fn verified(name: &str) -> Verification {
    verify_path(&fixture(name), Against::nothing()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn codes(v: &Verification) -> Vec<Code> {
    v.all_problems().iter().map(|p| p.code).collect()
}

#[test]
fn microsofts_tampered_packages_fail_on_the_part_their_name_says() {
    for (file, part) in [
        ("SignedTamperedBlockMap-TRUST_E_BAD_DIGEST.appx", "(AXBM)"),
        ("SignedTamperedCD-TRUST_E_BAD_DIGEST.appx", "(AXCD)"),
        (
            "SignedTamperedCodeIntegrity-TRUST_E_BAD_DIGEST.appx",
            "(AXCI)",
        ),
        (
            "SignedTamperedContentTypes-TRUST_E_BAD_DIGEST.appx",
            "(AXCT)",
        ),
    ] {
        let v = verified(file);
        let problems = v.all_problems();
        assert!(v.signed, "{file}");
        assert_eq!(codes(&v), [Code::TrustBadDigest], "{file}: {problems:?}");
        assert!(problems[0].at.ends_with(part), "{file}: {}", problems[0]);
        assert!(
            problems[0]
                .to_string()
                .contains("TRUST_E_BAD_DIGEST (0x80096010)"),
            "{}",
            problems[0]
        );
        // The other digests matched.
        assert!(v.parts.len() >= 3, "{file}: {:?}", v.parts);
    }
}

#[test]
fn microsofts_good_package_passes_every_digest_and_block() {
    let v = verified("TestAppxPackage_Win32.appx");
    assert!(v.passed(), "{:?}", v.all_problems());
    assert_eq!(v.parts, ["AXPC", "AXCD", "AXCT", "AXBM", "AXCI"]);
    assert!(v.files > 0 && v.blocks >= v.files, "{v:?}");
}

#[test]
fn microsofts_malformed_packages_fail_as_windows_says() {
    for (file, code) in [
        (
            "SignatureNotLastPart-ERROR_BAD_FORMAT.appx",
            Code::BadFormat,
        ),
        (
            "UnsignedZip64WithCI-APPX_E_MISSING_REQUIRED_FILE.appx",
            Code::TrustNoSignature,
        ),
        (
            "BlockMap/Missing_Manifest_in_blockmap.appx",
            Code::InvalidBlockMap,
        ),
        (
            "BlockMap/ContentTypes_in_blockmap.appx",
            Code::InvalidBlockMap,
        ),
        (
            "BlockMap/Duplicate_file_in_blockmap.appx",
            Code::InvalidBlockMap,
        ),
        ("BlockMap/No_blockmap.appx", Code::MissingRequiredFile),
    ] {
        let v = verified(file);
        assert!(codes(&v).contains(&code), "{file}: {:?}", v.all_problems());
    }
}

// ---- packages signed here ----------------------------------------------------------

mod signed_here {
    use std::fs::{self, File};
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};

    use appattach_operator::inspect::verify::{
        Against, Code, Verification, verify_from, verify_path,
    };
    use tempfile::TempDir;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipArchive, ZipWriter};

    use crate::support::{Certs, verify};

    const CATALOG: &str = "AppxMetadata/CodeIntegrity.cat";

    /// A package signed here, with (when `catalog`) a code-integrity catalog.
    fn signed(catalog: bool, exe_bytes: u32) -> (TempDir, Certs, PathBuf) {
        crate::support::signed_notes(catalog, exe_bytes)
    }

    fn problems_of(v: &Verification) -> String {
        v.all_problems()
            .iter()
            .map(|p| format!("\n  {p}"))
            .collect()
    }

    /// New bytes for an entry (by name, given its bytes), or `None` to keep it as it is.
    type Change<'a> = &'a dyn Fn(&str, Vec<u8>) -> Option<Vec<u8>>;
    /// A change after signing: what, how (writing the changed package to a path), the
    /// error wanted and where.
    type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, Code, &'a str);

    /// The ZIP of `from` written to `to` entry by entry, raw, but for the entries `change`
    /// gives new bytes for (deflated), and `add` (before the signature, which stays last).
    fn rebuild(from: &Path, to: &Path, change: Change, add: Option<(&str, &[u8])>) {
        let mut zip = ZipArchive::new(File::open(from).unwrap()).unwrap();
        let mut out = ZipWriter::new(File::create(to).unwrap());
        for i in 0..zip.len() {
            let name = zip.by_index(i).unwrap().name().unwrap().to_string();
            if name == "AppxSignature.p7x"
                && let Some((n, bytes)) = add
            {
                out.start_file(n, deflated()).unwrap();
                out.write_all(bytes).unwrap();
            }
            let mut bytes = Vec::new();
            zip.by_index(i).unwrap().read_to_end(&mut bytes).unwrap();
            match change(&name, bytes) {
                Some(new) => {
                    out.start_file(&name, deflated()).unwrap();
                    out.write_all(&new).unwrap();
                }
                None => out.raw_copy_file(zip.by_index_raw(i).unwrap()).unwrap(),
            }
        }
        out.finish().unwrap();
    }

    fn deflated() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
    }

    fn flip_one_byte(name: &'static str, at: usize) -> impl Fn(&str, Vec<u8>) -> Option<Vec<u8>> {
        move |n: &str, mut bytes: Vec<u8>| {
            (n == name).then(|| {
                let at = at.min(bytes.len() - 1);
                bytes[at] ^= 0x20;
                bytes
            })
        }
    }

    #[test]
    fn a_package_signed_by_osslsigncode_verifies_part_by_part() {
        for catalog in [false, true] {
            let (_tmp, certs, signed) = signed(catalog, 150_000);
            verify(&signed, &certs.ca, None).unwrap_or_else(|e| panic!("osslsigncode: {e}"));
            let v = verify_path(&signed, Against::nothing()).unwrap();
            assert!(v.passed(), "catalog {catalog}:{}", problems_of(&v));
            let mut parts = vec!["AXPC", "AXCD", "AXCT", "AXBM"];
            if catalog {
                parts.push("AXCI");
            }
            assert_eq!(v.parts, parts);
            // The manifest, Notes.exe (3 blocks) and Assets/Logo.png.
            assert_eq!((v.files, v.blocks), (3, 5), "{v:?}");
        }
    }

    #[test]
    fn each_change_after_signing_is_found_at_its_part_and_osslsigncode_agrees() {
        let (tmp, certs, signed) = signed(true, 150_000);
        let cases: Vec<Case> = vec![
            (
                "a byte of Notes.exe",
                Box::new(|to: &Path| {
                    rebuild(&signed, to, &flip_one_byte("Notes.exe", 70_000), None)
                }),
                Code::BlockHashInvalid,
                "Notes.exe block 1 (bytes 65536..131072)",
            ),
            (
                "the block map",
                Box::new(|to: &Path| {
                    rebuild(&signed, to, &flip_one_byte("AppxBlockMap.xml", 200), None)
                }),
                Code::TrustBadDigest,
                "AppxBlockMap.xml (AXBM)",
            ),
            (
                "[Content_Types].xml",
                Box::new(|to: &Path| {
                    rebuild(&signed, to, &flip_one_byte("[Content_Types].xml", 60), None)
                }),
                Code::TrustBadDigest,
                "[Content_Types].xml (AXCT)",
            ),
            (
                "the code-integrity catalog",
                Box::new(|to: &Path| rebuild(&signed, to, &flip_one_byte(CATALOG, 0), None)),
                Code::TrustBadDigest,
                "AppxMetadata/CodeIntegrity.cat (AXCI)",
            ),
            (
                "a file added",
                Box::new(|to: &Path| {
                    rebuild(&signed, to, &|_, _| None, Some(("Extra.dll", b"MZ extra")))
                }),
                Code::InvalidBlockMap,
                "Extra.dll",
            ),
            (
                "the signer's signature",
                Box::new(|to: &Path| {
                    rebuild(
                        &signed,
                        to,
                        &|n: &str, mut b: Vec<u8>| {
                            (n == "AppxSignature.p7x").then(|| {
                                let last = b.len() - 1;
                                b[last] ^= 1;
                                b
                            })
                        },
                        None,
                    )
                }),
                Code::BadSignature,
                "AppxSignature.p7x SignerInfo",
            ),
            (
                "the central directory",
                Box::new(|to: &Path| {
                    fs::copy(&signed, to).unwrap();
                    let at = {
                        let zip = ZipArchive::new(File::open(to).unwrap()).unwrap();
                        let mut zip = zip;
                        zip.by_name("Assets/Logo.png")
                            .unwrap()
                            .central_header_start()
                    };
                    let mut bytes = fs::read(to).unwrap();
                    bytes[at as usize + 38] ^= 0x01; // external attributes
                    fs::write(to, bytes).unwrap();
                }),
                Code::TrustBadDigest,
                "ZIP central directory without the signature (AXCD)",
            ),
        ];
        for (what, make, code, at) in cases {
            let tampered = tmp.path().join(format!("{}.msix", what.replace(' ', "-")));
            make(&tampered);
            let v = verify_path(&tampered, Against::nothing())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let problems = v.all_problems();
            assert!(
                problems.iter().any(|p| p.code == code && p.at == at),
                "{what}: wanted {code} at {at:?}:{}",
                problems_of(&v)
            );
            let oss = verify(&tampered, &certs.ca, None);
            if what != "a byte of Notes.exe" && what != "a file added" {
                assert!(
                    oss.is_err(),
                    "{what}: osslsigncode verify passed it:\n{oss:?}"
                );
            }
        }
    }

    /// Every truncation and every byte with one bit flipped of a small signed package is
    /// refused, naming a part, or is an error; never a panic. No digest covers the
    /// signature's own ZIP records: its local header, data descriptor and central
    /// directory record are held to agree instead. What then still passes changes nothing
    /// anyone reads, Windows included: a bit of the signature's central directory record
    /// ("version made by", file attributes) or a padding bit of its deflate stream. That
    /// is checked too: such a package has the same files with the same bytes.
    #[test]
    fn every_truncation_and_bit_flip_of_a_signed_package_is_refused() {
        let (_tmp, _certs, signed) = signed(false, 100);
        let bytes = fs::read(&signed).unwrap();
        assert!(
            verify_from(std::io::Cursor::new(bytes.clone()))
                .unwrap()
                .passed()
        );
        let contents = |b: &[u8]| -> Option<Vec<(String, Vec<u8>)>> {
            let mut zip = ZipArchive::new(std::io::Cursor::new(b.to_vec())).ok()?;
            (0..zip.len())
                .map(|i| {
                    let mut f = zip.by_index(i).ok()?;
                    let mut out = Vec::new();
                    f.read_to_end(&mut out).ok()?;
                    Some((f.name().ok()?.to_string(), out))
                })
                .collect()
        };
        let original = contents(&bytes);
        // The signature's local record (up to the central directory) and its record there.
        let signature_records = {
            let mut zip = ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
            let cd_start = (0..zip.len())
                .map(|i| zip.by_index_raw(i).unwrap().central_header_start() as usize)
                .min()
                .unwrap();
            let f = zip.by_name("AppxSignature.p7x").unwrap();
            let record = f.central_header_start() as usize;
            (
                f.header_start() as usize..cd_start,
                record..record + 46 + "AppxSignature.p7x".len(),
            )
        };
        let mut passed = Vec::new();
        let mut harmless = 0;
        for len in 0..bytes.len() {
            if let Ok(v) = verify_from(std::io::Cursor::new(bytes[..len].to_vec()))
                && v.passed()
            {
                passed.push(format!("truncated to {len}"));
            }
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << (at % 8);
            if let Ok(v) = verify_from(std::io::Cursor::new(flipped.clone()))
                && v.passed()
            {
                let in_signature =
                    signature_records.0.contains(&at) || signature_records.1.contains(&at);
                if in_signature && contents(&flipped) == original {
                    harmless += 1;
                } else {
                    passed.push(format!("bit {} of byte {at} flipped", at % 8));
                }
            }
        }
        assert!(
            harmless <= 16,
            "{harmless} harmless flips: more than the fields nobody reads"
        );
        assert!(
            passed.is_empty(),
            "{} of {} changes passed: {passed:?}",
            passed.len(),
            2 * bytes.len()
        );
    }
}
