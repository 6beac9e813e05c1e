//! `appattach inspect` run as a user runs it, on packages made and signed here: what it
//! prints must be an AppAttachPackage with the package's true facts, the family name
//! checked against an independent computation (coreutils and iconv, not our code).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use appattach_operator::resources::{AppAttachPackage, Architecture, ImageFormat, PackageType};
use tempfile::TempDir;

use crate::support::{
    CA_SUBJECT_WINDOWS, Certs, build_bundle, build_flat_bundle, build_package, manifest, sign,
    zip_names,
};

const VCLIBS: (&str, &str, &str) = (
    "Microsoft.VCLibs.140.00.UWPDesktop",
    "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
    "14.0.30704.0",
);

/// Runs `appattach` with `args`.
pub fn appattach(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(args)
        .env("APPATTACH_LOG", "warn")
        .env_remove("APPATTACH_LOCATION")
        .output()
        .expect("appattach runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `appattach inspect`, which must succeed, and parses every printed document.
pub fn inspect(args: &[&str]) -> (Vec<AppAttachPackage>, String) {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    let out = appattach(&all);
    let err = stderr(&out);
    assert!(out.status.success(), "appattach {all:?} failed:\n{err}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let docs = text
        .split("\n---\n")
        .map(|doc| serde_yaml_ng::from_str(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}")))
        .collect();
    (docs, err)
}

/// The publisher id computed without our code: UTF-16LE by iconv, SHA-256 by sha256sum,
/// base32 by basenc, mapped from RFC 4648's alphabet to Crockford's by tr.
pub fn independent_publisher_id(publisher: &str) -> String {
    let script = r#"printf '%s' "$1" | iconv -f UTF-8 -t UTF-16LE | sha256sum | head -c 16 \
        | sed 's/\(..\)/\\x\1/g' | xargs -0 printf '%b' | basenc --base32 | tr -d '=\n' \
        | tr 'A-Z2-7' '0-9a-hjkmnp-tv-z'"#;
    let out = Command::new("bash")
        .args(["-c", script, "-", publisher])
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

fn notes(
    dir: &Path,
    file_name: &str,
    publisher: &str,
    version: &str,
    arch: Option<&str>,
) -> PathBuf {
    let xml = manifest(
        "Contoso.Notes",
        publisher,
        version,
        arch,
        &[("Notes", "Contoso Notes"), ("Sync", "Notes Sync")],
        &[VCLIBS],
    );
    let exe: Vec<u8> = (0..100_000_u32).map(|i| (i % 239) as u8).collect();
    build_package(
        dir,
        file_name,
        &xml,
        &[("Notes.exe", &exe), ("Assets/Logo.png", b"png")],
    )
}

fn setup() -> (TempDir, Certs) {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::make(tmp.path());
    (tmp, certs)
}

#[test]
fn the_independent_publisher_id_agrees_with_a_published_one() {
    // Microsoft's Store publisher and its well-known id: the check of the check.
    assert_eq!(independent_publisher_id(VCLIBS.1), "8wekyb3d8bbwe");
}

#[test]
fn a_signed_timestamped_msix_prints_a_ready_manifest() {
    let (tmp, certs) = setup();
    let publisher = certs.code_signing.subject.clone();
    let unsigned = notes(
        tmp.path(),
        "Contoso.Notes_1.2.3.0_x64.msix",
        &publisher,
        "1.2.3.0",
        Some("x64"),
    );
    let ts = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 600).unwrap();
    let signed = sign(&unsigned, &certs.code_signing, Some((&certs.tsa, ts)));
    let unc = r"\\fs.contoso.com\appattach\Contoso.Notes_1.2.3.0_x64.vhdx";
    let (docs, summary) = inspect(&[
        signed.to_str().unwrap(),
        "--image-path",
        unc,
        "--location",
        "westeurope",
        "-n",
        "avd-apps",
    ]);
    assert_eq!(docs.len(), 1);
    let aap = &docs[0];
    assert_eq!(aap.metadata.name.as_deref(), Some("contoso-notes"));
    assert_eq!(aap.metadata.namespace.as_deref(), Some("avd-apps"));
    let spec = &aap.spec;
    assert_eq!(spec.location, "westeurope");
    assert_eq!(spec.image.path, unc);
    assert_eq!(spec.image.format, Some(ImageFormat::Vhdx));
    let p = &spec.package;
    assert_eq!(p.package_type, PackageType::Msix);
    assert_eq!(p.name, "Contoso.Notes");
    assert_eq!(p.publisher, publisher);
    assert_eq!(p.version, "1.2.3.0");
    assert_eq!(p.architecture, Architecture::X64);
    let id = independent_publisher_id(&publisher);
    assert_eq!(
        p.family_name.as_deref(),
        Some(format!("Contoso.Notes_{id}").as_str())
    );
    assert_eq!(
        p.full_name.as_deref(),
        Some(format!("Contoso.Notes_1.2.3.0_x64__{id}").as_str())
    );
    assert_eq!(p.display_name.as_deref(), Some("Contoso.Notes"));
    let apps: Vec<(&str, Option<&str>)> = p
        .applications
        .iter()
        .map(|a| (a.id.as_str(), a.display_name.as_deref()))
        .collect();
    assert_eq!(
        apps,
        [
            ("Notes", Some("Contoso Notes")),
            ("Sync", Some("Notes Sync"))
        ]
    );
    assert_eq!(p.dependencies.len(), 1);
    assert_eq!(p.dependencies[0].name, VCLIBS.0);
    assert_eq!(p.dependencies[0].min_version, VCLIBS.2);
    let cert = spec.certificate.as_ref().expect("a certificate");
    assert_eq!(cert.subject, publisher);
    assert_eq!(
        cert.expiry.parse::<jiff::Timestamp>().unwrap(),
        certs.code_signing.not_after
    );
    assert!(cert.timestamped);
    // The summary says the rest, and warns of nothing.
    for expected in [
        certs.code_signing.thumbprint.clone(),
        format!("Contoso.Notes_{id}!Notes"),
        "Windows.Desktop >= 10.0.17763.0".into(),
        "code signing yes".into(),
        ts.to_string(),
    ] {
        assert!(
            summary.contains(&expected),
            "{expected:?} not in:\n{summary}"
        );
    }
    assert!(!summary.contains("warning"), "{summary}");
    assert!(!summary.contains("fill in"), "{summary}");
}

#[test]
fn an_appx_without_architecture_is_neutral_and_json_works() {
    let (tmp, _certs) = setup();
    let unsigned = notes(
        tmp.path(),
        "notes.appx",
        "CN=Contoso Ltd, O=Contoso Ltd, C=US",
        "2.0.0.0",
        None,
    );
    let out = appattach(&[
        "inspect",
        unsigned.to_str().unwrap(),
        "-o",
        "json",
        "--allow-unsigned",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let aap: AppAttachPackage = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(aap.spec.package.package_type, PackageType::Appx);
    assert_eq!(aap.spec.package.architecture, Architecture::Neutral);
    let id = independent_publisher_id("CN=Contoso Ltd, O=Contoso Ltd, C=US");
    assert_eq!(
        aap.spec.package.full_name.as_deref(),
        Some(format!("Contoso.Notes_2.0.0.0_neutral__{id}").as_str())
    );
    assert!(aap.spec.certificate.is_none());
    let summary = stderr(&out);
    assert!(summary.contains("not signed"), "{summary}");
    // What it could not know is named, and left for the API server to refuse.
    assert!(summary.contains("spec.location (--location)"), "{summary}");
    assert!(
        summary.contains("spec.image.path (--image-path)"),
        "{summary}"
    );
}

#[test]
fn certificate_problems_are_warned_of() {
    let (tmp, certs) = setup();
    let cases: [(&str, &crate::support::Cert, &str, bool, &str); 3] = [
        (
            "expired.msix",
            &certs.expired,
            "expired-publisher",
            false,
            "CertificateExpired",
        ),
        (
            "expired-ts.msix",
            &certs.expired,
            "expired-publisher",
            true,
            "",
        ),
        (
            "server.msix",
            &certs.server,
            "server-publisher",
            false,
            "not for code signing",
        ),
    ];
    for (file, cert, publisher, timestamped, warning) in cases {
        let publisher = match publisher {
            "expired-publisher" | "server-publisher" => cert.subject.clone(),
            other => other.to_string(),
        };
        let unsigned = notes(tmp.path(), file, &publisher, "1.0.0.0", Some("x64"));
        // An expired certificate is timestamped within its validity, as a real one was.
        let at = jiff::Timestamp::from_second(cert.not_before.as_second() + 86_400).unwrap();
        let signed = sign(&unsigned, cert, timestamped.then_some((&certs.tsa, at)));
        let (docs, summary) = inspect(&[signed.to_str().unwrap()]);
        let c = docs[0].spec.certificate.as_ref().expect("a certificate");
        assert_eq!(c.timestamped, timestamped, "{file}");
        if warning.is_empty() {
            assert!(!summary.contains("warning"), "{file}: {summary}");
        } else {
            assert!(
                summary.contains(warning),
                "{file}: {warning:?} not in {summary}"
            );
        }
    }
}

#[test]
fn a_bundle_prints_the_bundle_with_its_payloads_applications() {
    let (tmp, certs) = setup();
    let publisher = certs.code_signing.subject.clone();
    let x64 = sign(
        &notes(
            tmp.path(),
            "Notes_x64.msix",
            &publisher,
            "3.1.0.0",
            Some("x64"),
        ),
        &certs.code_signing,
        None,
    );
    let x86 = sign(
        &notes(
            tmp.path(),
            "Notes_x86.msix",
            &publisher,
            "3.1.0.0",
            Some("x86"),
        ),
        &certs.code_signing,
        None,
    );
    let bundle = build_bundle(
        tmp.path(),
        "Contoso.Notes_3.1.0.0.msixbundle",
        &[(&x64, "x64"), (&x86, "x86")],
        "Contoso.Notes",
        &publisher,
        "3.1.0.0",
    );
    let signed = sign(&bundle, &certs.code_signing, None);
    let (docs, summary) = inspect(&[signed.to_str().unwrap()]);
    let p = &docs[0].spec.package;
    assert_eq!(p.package_type, PackageType::MsixBundle);
    assert_eq!(p.architecture, Architecture::Neutral);
    let id = independent_publisher_id(&publisher);
    assert_eq!(
        p.full_name.as_deref(),
        Some(format!("Contoso.Notes_3.1.0.0_neutral_~_{id}").as_str())
    );
    let ids: Vec<&str> = p.applications.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["Notes", "Sync"]);
    for payload in [
        format!("Contoso.Notes_3.1.0.0_x64__{id}"),
        format!("Contoso.Notes_3.1.0.0_x86__{id}"),
    ] {
        assert!(summary.contains(&payload), "{payload} not in {summary}");
    }
}

#[test]
fn bad_packages_are_refused_naming_what_and_where() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = notes(dir, "good.msix", "CN=Contoso", "1.0.0.0", Some("x64"));
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("truncated.msix"), &bytes[..bytes.len() / 2]).unwrap();
    let no_identity = build_package(
        dir,
        "no-identity.msix",
        "<Package xmlns=\"http://schemas.microsoft.com/appx/manifest/foundation/windows10\"><Properties/></Package>",
        &[],
    );
    let dtd = build_package(
        dir,
        "dtd.msix",
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><Package>&b;</Package>",
        &[],
    );
    std::fs::write(dir.join("text.msix"), "not a package").unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let cases = [
        (dir.join("truncated.msix"), "not a readable ZIP"),
        (no_identity, "no <Identity> element"),
        (dtd, "DTD"),
        (dir.join("text.msix"), "not a readable ZIP"),
        (dir.join("notes.txt"), "is neither a package"),
        (dir.join("missing.msix"), "cannot open"),
    ];
    for (path, expected) in cases {
        let out = appattach(&["inspect", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        assert!(
            err.contains(expected),
            "{}: {expected:?} not in {err}",
            path.display()
        );
        assert!(
            err.contains(&*path.file_name().unwrap().to_string_lossy()),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// Like Microsoft's `BundleWithIntlPackage.appxbundle` (msix-packaging test data): a
/// payload whose file name is not ASCII is zipped under its percent-encoded UTF-8 name,
/// and the bundle manifest names it decoded.
#[test]
fn a_bundle_with_payload_names_that_are_not_ascii_is_read() {
    let (tmp, certs) = setup();
    let publisher = certs.code_signing.subject.clone();
    let intl = notes(tmp.path(), "महसुस.appx", &publisher, "3.1.0.0", Some("x64"));
    let percent = notes(
        tmp.path(),
        "Notes 100%.appx",
        &publisher,
        "3.1.0.0",
        Some("x86"),
    );
    let bundle = build_bundle(
        tmp.path(),
        "BundleWithIntlPackage.appxbundle",
        &[(&intl, "x64"), (&percent, "x86")],
        "Contoso.Notes",
        &publisher,
        "3.1.0.0",
    );
    let names = zip_names(&bundle);
    for entry in [
        "%E0%A4%AE%E0%A4%B9%E0%A4%B8%E0%A5%81%E0%A4%B8.appx",
        "Notes%20100%25.appx",
    ] {
        assert!(names.iter().any(|n| n == entry), "{entry} not in {names:?}");
    }
    // Unsigned, as bundles made here are.
    let (docs, summary) = inspect(&[bundle.to_str().unwrap(), "--allow-unsigned"]);
    let p = &docs[0].spec.package;
    assert_eq!(p.package_type, PackageType::AppxBundle);
    let ids: Vec<&str> = p.applications.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["Notes", "Sync"]);
    let id = independent_publisher_id(&publisher);
    for payload in [
        format!("Contoso.Notes_3.1.0.0_x64__{id}"),
        format!("Contoso.Notes_3.1.0.0_x86__{id}"),
    ] {
        assert!(summary.contains(&payload), "{payload} not in {summary}");
    }
}

/// A flat bundle holds only its manifest and block map; its payload packages are files
/// beside it, and are read from there.
#[test]
fn a_flat_bundle_reads_its_payloads_from_beside_it() {
    let (tmp, certs) = setup();
    let publisher = certs.code_signing.subject.clone();
    let folder = tmp.path().join("flat");
    std::fs::create_dir(&folder).unwrap();
    let x64 = notes(
        &folder,
        "Contoso.Notes_3.1.0.0_x64.msix",
        &publisher,
        "3.1.0.0",
        Some("x64"),
    );
    let x86 = notes(
        &folder,
        "Contoso.Notes_3.1.0.0_x86.msix",
        &publisher,
        "3.1.0.0",
        Some("x86"),
    );
    let bundle = build_flat_bundle(
        &folder,
        "Contoso.Notes_3.1.0.0.msixbundle",
        &[(&x64, "x64"), (&x86, "x86")],
        "Contoso.Notes",
        &publisher,
        "3.1.0.0",
    );
    assert!(
        !zip_names(&bundle).iter().any(|n| n.ends_with(".msix")),
        "a flat bundle holds no payload"
    );
    let (docs, summary) = inspect(&[bundle.to_str().unwrap(), "--allow-unsigned"]);
    let p = &docs[0].spec.package;
    assert_eq!(p.package_type, PackageType::MsixBundle);
    // Its payloads are verified from beside it: both unsigned, as the bundle is.
    let v = appattach_operator::inspect::verify::verify_path(
        &bundle,
        appattach_operator::inspect::verify::Against::nothing(),
    )
    .unwrap();
    let names: Vec<&str> = v.payloads.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Contoso.Notes_3.1.0.0_x64.msix",
            "Contoso.Notes_3.1.0.0_x86.msix"
        ]
    );
    let unsigned: Vec<String> = v.all_problems().iter().map(|p| p.at.clone()).collect();
    assert_eq!(
        unsigned,
        [
            "AppxSignature.p7x",
            "payload Contoso.Notes_3.1.0.0_x64.msix: AppxSignature.p7x",
            "payload Contoso.Notes_3.1.0.0_x86.msix: AppxSignature.p7x"
        ]
    );
    let ids: Vec<&str> = p.applications.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["Notes", "Sync"]);
    let id = independent_publisher_id(&publisher);
    for payload in [
        format!("Contoso.Notes_3.1.0.0_x64__{id}"),
        format!("Contoso.Notes_3.1.0.0_x86__{id}"),
    ] {
        assert!(summary.contains(&payload), "{payload} not in {summary}");
    }
}

#[test]
fn a_flat_bundle_without_its_payloads_beside_it_names_the_missing_file() {
    let (tmp, certs) = setup();
    let publisher = certs.code_signing.subject.clone();
    let x64 = notes(
        tmp.path(),
        "Contoso.Notes_3.1.0.0_x64.msix",
        &publisher,
        "3.1.0.0",
        Some("x64"),
    );
    let bundle = build_flat_bundle(
        tmp.path(),
        "Contoso.Notes_3.1.0.0.msixbundle",
        &[(&x64, "x64")],
        "Contoso.Notes",
        &publisher,
        "3.1.0.0",
    );
    // The bundle copied alone elsewhere, as when only the .msixbundle is uploaded.
    let alone = tmp.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    let moved = alone.join(bundle.file_name().unwrap());
    std::fs::copy(&bundle, &moved).unwrap();
    let out = appattach(&["inspect", moved.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        "Contoso.Notes_3.1.0.0_x64.msix",
        &alone.display().to_string(),
        "flat bundle",
        "beside the bundle",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

/// `appattach inspect` of a package Windows would refuse: it fails, says why on stderr
/// with Windows' error, and prints no manifest to commit.
fn refused(args: &[&str]) -> String {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    let out = appattach(&all);
    let err = stderr(&out);
    assert!(!out.status.success(), "appattach {all:?} passed:\n{err}");
    assert!(out.stdout.is_empty(), "a manifest was printed: {all:?}");
    assert!(err.contains("no manifest is printed"), "{err}");
    err
}

#[test]
fn a_package_changed_after_signing_is_refused_naming_the_part() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/msix-packaging");
    for (file, says) in [
        (
            "SignedTamperedCD-TRUST_E_BAD_DIGEST.appx",
            "(AXCD): TRUST_E_BAD_DIGEST (0x80096010)",
        ),
        (
            "SignedTamperedContentTypes-TRUST_E_BAD_DIGEST.appx",
            "[Content_Types].xml (AXCT): TRUST_E_BAD_DIGEST",
        ),
        (
            "SignedTamperedCodeIntegrity-TRUST_E_BAD_DIGEST.appx",
            "CodeIntegrity.cat (AXCI): TRUST_E_BAD_DIGEST",
        ),
        (
            "SignatureNotLastPart-ERROR_BAD_FORMAT.appx",
            "ERROR_BAD_FORMAT",
        ),
        (
            "SignedMismatchedPublisherName-ERROR_BAD_FORMAT.appx",
            "Identity Publisher: ERROR_BAD_FORMAT",
        ),
    ] {
        let err = refused(&[fixtures.join(file).to_str().unwrap()]);
        assert!(err.contains(says), "{file}: {says:?} not in {err}");
    }
    // Nor is an image made of one.
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("tampered.vhdx");
    let out = appattach(&[
        "image",
        "create",
        "--package",
        fixtures
            .join("SignedTamperedCD-TRUST_E_BAD_DIGEST.appx")
            .to_str()
            .unwrap(),
        "--out",
        image.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no image is made") && err.contains("(AXCD): TRUST_E_BAD_DIGEST"),
        "{err}"
    );
    assert!(!image.exists());
    drop(tmp);
    let (tmp, certs) = setup();
    let mismatch = notes(
        tmp.path(),
        "mismatch.msix",
        "CN=Fabrikam, O=Fabrikam, C=US",
        "1.0.0.0",
        Some("x64"),
    );
    let signed = sign(&mismatch, &certs.code_signing, None);
    let err = refused(&[signed.to_str().unwrap()]);
    assert!(
        err.contains("\"CN=Fabrikam, O=Fabrikam, C=US\" is not the signer"),
        "{err}"
    );
    let unsigned = notes(
        tmp.path(),
        "unsigned.msix",
        "CN=Fabrikam",
        "1.0.0.0",
        Some("x64"),
    );
    let err = refused(&[unsigned.to_str().unwrap()]);
    assert!(err.contains("TRUST_E_NOSIGNATURE (0x800B0100)"), "{err}");
}

#[test]
fn the_chain_is_checked_against_the_roots_given_with_trust() {
    let (tmp, certs) = setup();
    let publisher = certs.code_signing.subject.clone();
    let unsigned = notes(tmp.path(), "notes.msix", &publisher, "1.0.0.0", Some("x64"));
    let signed = sign(&unsigned, &certs.code_signing, None);
    let path = signed.to_str().unwrap();
    let ca = certs.ca.cert.to_str().unwrap();
    // Without --trust: where the chain leads is said, not checked.
    let (docs, summary) = inspect(&[path]);
    let c = docs[0].spec.certificate.clone().unwrap();
    assert_eq!(
        c.thumbprint.as_deref(),
        Some(certs.code_signing.thumbprint.as_str())
    );
    let root = c.root.expect("the chain's root");
    assert_eq!(root.subject, CA_SUBJECT_WINDOWS);
    assert_eq!(root.thumbprint, None, "the signature does not carry the CA");
    assert!(summary.contains("not checked: give --trust"), "{summary}");
    // With the CA: trusted, and the root's thumbprint is known.
    let (docs, summary) = inspect(&[path, "--trust", ca]);
    let root = docs[0].spec.certificate.clone().unwrap().root.unwrap();
    assert_eq!(root.subject, CA_SUBJECT_WINDOWS);
    assert_eq!(
        root.thumbprint.as_deref(),
        Some(certs.ca.thumbprint.as_str())
    );
    assert!(
        summary.contains("trusted: it is among the --trust certificates"),
        "{summary}"
    );
    // The signer's own certificate declared (a host's Trusted People store): trusted as
    // it is, and it is the root the spec names.
    let leaf = certs.code_signing.cert.to_str().unwrap();
    let (docs, _) = inspect(&[path, "--trust", leaf]);
    let root = docs[0].spec.certificate.clone().unwrap().root.unwrap();
    assert_eq!(root.subject, certs.code_signing.subject);
    assert_eq!(
        root.thumbprint.as_deref(),
        Some(certs.code_signing.thumbprint.as_str())
    );
    // With another certificate only: the chain cannot reach it.
    let other = certs.tsa.cert.to_str().unwrap();
    let err = refused(&[path, "--trust", other]);
    assert!(
        err.contains("CERT_E_CHAINING") || err.contains("CERT_E_UNTRUSTEDROOT"),
        "{err}"
    );
    assert!(
        err.contains("Contoso Test CA"),
        "names the certificate it needs: {err}"
    );
    // Trusted, but not for code signing, or expired without a timestamp.
    let server = notes(
        tmp.path(),
        "server.msix",
        &certs.server.subject,
        "1.0.0.0",
        Some("x64"),
    );
    let server = sign(&server, &certs.server, None);
    let err = refused(&[server.to_str().unwrap(), "--trust", ca]);
    assert!(err.contains("CERT_E_WRONG_USAGE"), "{err}");
    let expired = notes(
        tmp.path(),
        "expired.msix",
        &certs.expired.subject,
        "1.0.0.0",
        Some("x64"),
    );
    let expired = sign(&expired, &certs.expired, None);
    let err = refused(&[expired.to_str().unwrap(), "--trust", ca]);
    assert!(err.contains("CERT_E_EXPIRED"), "{err}");
    // Timestamped within its validity, the expired certificate is good.
    let at = jiff::Timestamp::from_second(certs.expired.not_before.as_second() + 86_400).unwrap();
    let expired_ts = notes(
        tmp.path(),
        "expired-ts.msix",
        &certs.expired.subject,
        "1.0.0.0",
        Some("x64"),
    );
    let expired_ts = sign(&expired_ts, &certs.expired, Some((&certs.tsa, at)));
    inspect(&[expired_ts.to_str().unwrap(), "--trust", ca]);
}
