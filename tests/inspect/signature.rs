//! The signature reader over real signatures: packages zipped here, signed by
//! `osslsigncode` with throwaway openssl certificates (and its built-in timestamp
//! authority), and read back with `appattach_operator::inspect::signature`, checked
//! against what `openssl x509` says about the certificates.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use appattach_operator::inspect::package::read_package;
use appattach_operator::inspect::signature::{SignatureFacts, read_p7x, same_distinguished_name};
use appattach_operator::inspect::{Inspection, inspect_path};
use tempfile::TempDir;

use crate::support::{
    CA_SUBJECT_WINDOWS, CODE_SIGNING_SUBJECT, Cert, Certs, build_bundle, build_package,
    extract_signature, manifest, sign, try_sign, verify, zip_entry, zip_names,
};

/// A folder with the certificates, and an unsigned package whose Publisher is `publisher`.
fn unsigned(publisher: Option<&str>) -> (TempDir, Certs, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::make(tmp.path());
    let publisher = publisher.unwrap_or(&certs.code_signing.subject).to_string();
    let package = package(tmp.path(), "notes.msix", &publisher, "x64");
    (tmp, certs, package)
}

fn package(dir: &Path, file_name: &str, publisher: &str, arch: &str) -> PathBuf {
    let xml = manifest(
        "Contoso.Notes",
        publisher,
        "1.2.3.0",
        Some(arch),
        &[("Notes", "Contoso Notes")],
        &[(
            "Microsoft.VCLibs.140.00.UWPDesktop",
            "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
            "14.0.30704.0",
        )],
    );
    // Over two blocks of the block map, not all alike.
    let exe: Vec<u8> = (0..150_000_u32).map(|i| (i % 251) as u8).collect();
    build_package(
        dir,
        file_name,
        &xml,
        &[
            ("Notes.exe", &exe),
            ("Assets/StoreLogo.png", b"\x89PNG\r\n\x1a\n fake"),
            ("Assets/Square44x44Logo.png", b"\x89PNG\r\n\x1a\n fake 44"),
            ("LICENSE", b"MIT"),
        ],
    )
}

fn facts_of(signed: &Path) -> SignatureFacts {
    read_p7x(&extract_signature(signed)).unwrap_or_else(|e| panic!("{e}"))
}

/// A time osslsigncode's TSA is told to give: an hour ago, in whole seconds.
fn an_hour_ago() -> jiff::Timestamp {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now - 3600).unwrap()
}

fn assert_certificate(facts: &SignatureFacts, cert: &Cert) {
    assert_eq!(facts.subject, cert.subject);
    assert_eq!(facts.thumbprint, cert.thumbprint);
    assert_eq!(facts.serial_number, cert.serial);
    assert_eq!(facts.not_before, cert.not_before);
    assert_eq!(facts.not_after, cert.not_after);
    assert_eq!(facts.issuer, CA_SUBJECT_WINDOWS);
    // openssl writes ST where Windows writes S.
    assert_ne!(facts.issuer, cert.issuer);
    assert!(same_distinguished_name(&facts.issuer, &cert.issuer));
}

#[test]
fn a_signed_package_names_its_signer_as_openssl_does() {
    let (_tmp, certs, unsigned) = unsigned(None);
    let signed = sign(&unsigned, &certs.code_signing, None);
    let names = zip_names(&signed);
    assert!(names.iter().any(|n| n == "AppxSignature.p7x"), "{names:?}");
    verify(&signed, &certs.ca, None).unwrap_or_else(|e| panic!("osslsigncode verify: {e}"));
    let p7x = extract_signature(&signed);
    assert!(p7x.starts_with(b"PKCX"));
    let facts = read_p7x(&p7x).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(facts.subject, CODE_SIGNING_SUBJECT);
    assert_certificate(&facts, &certs.code_signing);
    assert!(facts.not_before < jiff::Timestamp::now());
    assert!(facts.not_after > jiff::Timestamp::now());
    assert!(facts.code_signing);
    assert_eq!(facts.timestamp, None);
}

#[test]
fn the_package_reader_gives_the_signature_and_the_publisher_matches() {
    let (_tmp, certs, unsigned) = unsigned(None);
    assert_eq!(read_package(&unsigned).unwrap().facts.signature, None);
    let signed = sign(&unsigned, &certs.code_signing, None);
    let file = read_package(&signed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.facts.signature, Some(facts_of(&signed)));
    assert_eq!(file.facts.publisher, CODE_SIGNING_SUBJECT);
    let Inspection::Package(found) = inspect_path(&signed).unwrap() else {
        panic!("a package is inspected as a package");
    };
    assert_eq!(found.publisher_matches(), Some(true));
}

#[test]
fn a_publisher_spelled_otherwise_still_matches() {
    let (_tmp, certs, unsigned) = unsigned(Some("cn=Contoso Ltd,o=\"Contoso Ltd\" ,  c=US"));
    let signed = sign(&unsigned, &certs.code_signing, None);
    let Inspection::Package(found) = inspect_path(&signed).unwrap() else {
        panic!("a package is inspected as a package");
    };
    assert_eq!(found.publisher_matches(), Some(true));
}

#[test]
fn a_publisher_other_than_the_signer_does_not_match() {
    let publisher = "CN=Fabrikam, O=Fabrikam, C=US";
    let (_tmp, certs, unsigned) = unsigned(Some(publisher));
    let signed = sign(&unsigned, &certs.code_signing, None);
    let file = read_package(&signed).unwrap_or_else(|e| panic!("{e}"));
    let signature = file.facts.signature.clone().expect("signed");
    assert_eq!(file.facts.publisher, publisher);
    assert_eq!(signature.subject, CODE_SIGNING_SUBJECT);
    assert!(!same_distinguished_name(&signature.subject, publisher));
    let Inspection::Package(found) = inspect_path(&signed).unwrap() else {
        panic!("a package is inspected as a package");
    };
    assert_eq!(found.publisher_matches(), Some(false));
}

#[test]
fn a_certificate_not_for_code_signing_is_said_so() {
    let (_tmp, certs, unsigned) = unsigned(None);
    let signed = sign(&unsigned, &certs.server, None);
    let facts = facts_of(&signed);
    assert_eq!(facts.subject, "CN=server.contoso.com, O=Contoso Ltd, C=US");
    assert_certificate(&facts, &certs.server);
    assert!(!facts.code_signing);
}

#[test]
fn an_expired_certificate_ends_in_the_past() {
    let (_tmp, certs, unsigned) = unsigned(None);
    let signed = sign(&unsigned, &certs.expired, None);
    let facts = facts_of(&signed);
    assert_certificate(&facts, &certs.expired);
    assert_eq!(
        facts.not_after,
        "2021-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
    );
    assert!(facts.not_after < jiff::Timestamp::now());
    assert!(facts.code_signing);
}

#[test]
fn a_timestamped_signature_gives_the_tsa_time() {
    let (_tmp, certs, unsigned) = unsigned(None);
    let time = an_hour_ago();
    let signed = sign(&unsigned, &certs.code_signing, Some((&certs.tsa, time)));
    verify(&signed, &certs.ca, Some(&certs.ca))
        .unwrap_or_else(|e| panic!("osslsigncode verify: {e}"));
    let facts = facts_of(&signed);
    assert_eq!(facts.timestamp, Some(time));
    assert_certificate(&facts, &certs.code_signing);
    // A timestamp far from now is given as it is.
    let old = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let signed = sign(&unsigned, &certs.expired, Some((&certs.tsa, old)));
    assert_eq!(facts_of(&signed).timestamp, Some(old));
}

#[test]
fn a_legacy_countersignature_gives_its_signing_time() {
    let (_tmp, certs, unsigned) = unsigned(None);
    let signed = sign(&unsigned, &certs.code_signing, None);
    let p7x = extract_signature(&signed);
    let time = an_hour_ago();
    let countersigned = legacy::countersign(&p7x, time);
    let facts = read_p7x(&countersigned).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(facts.timestamp, Some(time));
    assert_eq!(facts.thumbprint, certs.code_signing.thumbprint);
}

#[test]
fn truncated_and_flipped_signatures_are_errors_not_panics() {
    let (_tmp, certs, unsigned) = unsigned(None);
    let signed = sign(
        &unsigned,
        &certs.code_signing,
        Some((&certs.tsa, an_hour_ago())),
    );
    let p7x = extract_signature(&signed);
    for len in 0..p7x.len() {
        let e = read_p7x(&p7x[..len]).expect_err("a truncated signature");
        assert!(!e.to_string().is_empty());
    }
    let mut changed = 0;
    for i in 0..p7x.len() {
        let mut flipped = p7x.clone();
        flipped[i] ^= 0x10;
        match read_p7x(&flipped) {
            Ok(facts) if facts != facts_of(&signed) => changed += 1,
            _ => {}
        }
    }
    // Flips in the certificate's text or times change the facts without breaking the DER.
    assert!(changed > 0);
    for (bytes, what) in [
        (Vec::new(), "PKCX"),
        (b"PKCX".to_vec(), "ends where an element"),
        (p7x[4..].to_vec(), "PKCX"),
    ] {
        let e = read_p7x(&bytes).expect_err(what);
        assert!(e.to_string().contains(what), "{what:?} not in {e}");
    }
}

#[test]
fn a_package_with_a_truncated_signature_is_an_error_that_names_it() {
    let (tmp, certs, unsigned) = unsigned(None);
    let signed = sign(&unsigned, &certs.code_signing, None);
    let p7x = extract_signature(&signed);
    let broken = tmp.path().join("broken.msix");
    replace_entry(&signed, &broken, "AppxSignature.p7x", &p7x[..p7x.len() / 2]);
    let e = read_package(&broken).expect_err("a truncated signature");
    assert!(e.to_string().contains("AppxSignature.p7x"), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn bundles_of_signed_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::make(tmp.path());
    let publisher = &certs.code_signing.subject;
    let mut payloads = Vec::new();
    for arch in ["x64", "x86"] {
        let dir = tmp.path().join(arch);
        std::fs::create_dir(&dir).unwrap();
        let name = format!("Contoso.Notes_1.2.3.0_{arch}.msix");
        let unsigned = package(&dir, &name, publisher, arch);
        payloads.push((sign(&unsigned, &certs.code_signing, None), arch));
    }
    let listed: Vec<(&Path, &str)> = payloads.iter().map(|(p, a)| (p.as_path(), *a)).collect();
    let bundle = build_bundle(
        tmp.path(),
        "notes.msixbundle",
        &listed,
        "Contoso.Notes",
        publisher,
        "1.2.3.0",
    );
    let file = read_package(&bundle).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.facts.signature, None);
    assert_eq!(file.payloads.len(), 2);
    for payload in &file.payloads {
        let signature = payload.facts.signature.as_ref().expect("a signed payload");
        assert_eq!(signature.thumbprint, certs.code_signing.thumbprint);
    }
    // osslsigncode signs bundles too ("Signing as a bundle": it needs the block map and
    // the content types) and verifies them.
    let time = an_hour_ago();
    let signed = try_sign(&bundle, &certs.code_signing, Some((&certs.tsa, time)))
        .unwrap_or_else(|e| panic!("osslsigncode cannot sign a bundle: {e}"));
    verify(&signed, &certs.ca, Some(&certs.ca))
        .unwrap_or_else(|e| panic!("osslsigncode verify: {e}"));
    let file = read_package(&signed).unwrap_or_else(|e| panic!("{e}"));
    let signature = file.facts.signature.expect("a signed bundle");
    assert_eq!(signature.thumbprint, certs.code_signing.thumbprint);
    assert_eq!(signature.timestamp, Some(time));
    assert!(zip_entry(&signed, "AppxMetadata/AppxBundleManifest.xml").is_some());
}

/// Copies a zip, with `name`'s bytes replaced.
fn replace_entry(from: &Path, to: &Path, name: &str, bytes: &[u8]) {
    let mut zip = zip::ZipWriter::new(File::create(to).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for entry in zip_names(from) {
        let data = if entry == name {
            bytes.to_vec()
        } else {
            zip_entry(from, &entry).unwrap()
        };
        zip.start_file(entry.as_str(), options).unwrap();
        zip.write_all(&data).unwrap();
    }
    zip.finish().unwrap();
}

/// Legacy Authenticode timestamps (`signtool /t`), which osslsigncode makes only from a
/// timestamp server over HTTP: added here to a real signature as a countersignature
/// whose signingTime is the time.
mod legacy {
    use cms::content_info::ContentInfo;
    use cms::signed_data::{SignedData, SignerInfo};
    use const_oid::ObjectIdentifier;
    use der::asn1::{SetOfVec, UtcTime};
    use der::{Any, Decode, Encode};
    use x509_cert::attr::Attribute;

    const COUNTERSIGNATURE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.6");
    const SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");

    /// The p7x with a countersignature at `time` (its signature bytes are not checked).
    pub fn countersign(p7x: &[u8], time: jiff::Timestamp) -> Vec<u8> {
        let info = ContentInfo::from_der(&p7x[4..]).unwrap();
        let mut signed: SignedData = info.content.decode_as().unwrap();
        let signer = signed.signer_infos.0.get(0).unwrap().clone();
        let mut counter = signer.clone();
        counter.unsigned_attrs = None;
        let seconds = u64::try_from(time.as_second()).unwrap();
        let utc = UtcTime::from_unix_duration(std::time::Duration::from_secs(seconds)).unwrap();
        counter.signed_attrs = Some(set(attribute(SIGNING_TIME, any(&utc))));
        let mut signer: SignerInfo = signer;
        signer.unsigned_attrs = Some(set(attribute(COUNTERSIGNATURE, any(&counter))));
        signed.signer_infos.0 = set(signer);
        let info = ContentInfo {
            content_type: info.content_type,
            content: any(&signed),
        };
        [b"PKCX".as_slice(), &info.to_der().unwrap()].concat()
    }

    fn any(value: &impl Encode) -> Any {
        Any::from_der(&value.to_der().unwrap()).unwrap()
    }

    fn attribute(oid: ObjectIdentifier, value: Any) -> Attribute {
        Attribute {
            oid,
            values: set(value),
        }
    }

    fn set<T: der::DerOrd>(value: T) -> SetOfVec<T> {
        SetOfVec::try_from(vec![value]).unwrap()
    }
}
