//! Verifying a package as Windows does before it stages it, on Linux: the PKCS#7
//! signature over the package's indirect data, the digests that indirect data carries of
//! the ZIP's parts, and every file's blocks against `AppxBlockMap.xml`.
//!
//! Windows refuses a package that fails any of these, with the error named here; finding
//! it in the pull request (`appattach inspect`, `validate`) spares a ring of session hosts
//! the staging failure.
//!
//! Every check reads bounded amounts ([`super::package::limits`]) and streams file data
//! through the digests, so a package of gigabytes is verified in constant memory.

pub mod blockmap;
mod zip_parts;

use std::fmt;
use std::io::{Read, Seek};
use std::path::Path;

use serde::Serialize;
use sha2::Digest as _;

pub use blockmap::{BLOCK_SIZE, BlockMap, BlockMapFile};
pub use zip_parts::verify_zip;

/// A Windows error a session host reports for a package it refuses, by name and HRESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    /// `TRUST_E_BAD_DIGEST`: a digest the signature carries differs from the package's.
    #[serde(rename = "TRUST_E_BAD_DIGEST")]
    TrustBadDigest,
    /// `TRUST_E_NOSIGNATURE`: the package is not signed.
    #[serde(rename = "TRUST_E_NOSIGNATURE")]
    TrustNoSignature,
    /// `NTE_BAD_SIGNATURE`: the signer's signature over the signed attributes is wrong.
    #[serde(rename = "NTE_BAD_SIGNATURE")]
    BadSignature,
    /// `APPX_E_BLOCK_HASH_INVALID`: a file's block differs from the block map.
    #[serde(rename = "APPX_E_BLOCK_HASH_INVALID")]
    BlockHashInvalid,
    /// `APPX_E_INVALID_BLOCKMAP`: the block map is malformed or does not describe the
    /// package's files.
    #[serde(rename = "APPX_E_INVALID_BLOCKMAP")]
    InvalidBlockMap,
    /// `APPX_E_CORRUPT_CONTENT`: the ZIP itself is not as a package must be.
    #[serde(rename = "APPX_E_CORRUPT_CONTENT")]
    CorruptContent,
    /// `APPX_E_MISSING_REQUIRED_FILE`: a footprint file is missing.
    #[serde(rename = "APPX_E_MISSING_REQUIRED_FILE")]
    MissingRequiredFile,
    /// `APPX_E_INVALID_SIP_CLIENT_DATA`: the signature is not an app package's.
    #[serde(rename = "APPX_E_INVALID_SIP_CLIENT_DATA")]
    InvalidSipClientData,
    /// `CERT_E_UNTRUSTEDROOT`: the signer's chain does not lead to a trusted root.
    #[serde(rename = "CERT_E_UNTRUSTEDROOT")]
    UntrustedRoot,
    /// `CERT_E_CHAINING`: no chain can be built from the signer to a root.
    #[serde(rename = "CERT_E_CHAINING")]
    Chaining,
    /// `CERT_E_EXPIRED`: a certificate of the chain was not valid at the signing time.
    #[serde(rename = "CERT_E_EXPIRED")]
    Expired,
    /// `CERT_E_WRONG_USAGE`: the signer's certificate is not for code signing.
    #[serde(rename = "CERT_E_WRONG_USAGE")]
    WrongUsage,
    /// `ERROR_BAD_FORMAT`: the package is not laid out as a signed package must be (the
    /// signature not last), or its Publisher is not its signer.
    #[serde(rename = "ERROR_BAD_FORMAT")]
    BadFormat,
}

impl Code {
    /// The name Windows gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::TrustBadDigest => "TRUST_E_BAD_DIGEST",
            Self::TrustNoSignature => "TRUST_E_NOSIGNATURE",
            Self::BadSignature => "NTE_BAD_SIGNATURE",
            Self::BlockHashInvalid => "APPX_E_BLOCK_HASH_INVALID",
            Self::InvalidBlockMap => "APPX_E_INVALID_BLOCKMAP",
            Self::CorruptContent => "APPX_E_CORRUPT_CONTENT",
            Self::MissingRequiredFile => "APPX_E_MISSING_REQUIRED_FILE",
            Self::InvalidSipClientData => "APPX_E_INVALID_SIP_CLIENT_DATA",
            Self::UntrustedRoot => "CERT_E_UNTRUSTEDROOT",
            Self::Chaining => "CERT_E_CHAINING",
            Self::Expired => "CERT_E_EXPIRED",
            Self::WrongUsage => "CERT_E_WRONG_USAGE",
            Self::BadFormat => "ERROR_BAD_FORMAT",
        }
    }

    /// Its HRESULT, as event logs and `Add-AppxPackage` show it.
    pub fn hresult(self) -> u32 {
        match self {
            Self::TrustBadDigest => 0x8009_6010,
            Self::TrustNoSignature => 0x800B_0100,
            Self::BadSignature => 0x8009_0006,
            Self::BlockHashInvalid => 0x8008_0207,
            Self::InvalidBlockMap => 0x8008_0205,
            Self::CorruptContent => 0x8008_0206,
            Self::MissingRequiredFile => 0x8008_0203,
            Self::InvalidSipClientData => 0x8008_0209,
            Self::UntrustedRoot => 0x800B_0109,
            Self::Chaining => 0x800B_010A,
            Self::Expired => 0x800B_0101,
            Self::WrongUsage => 0x800B_0110,
            Self::BadFormat => 0x8007_000B,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:08X})", self.name(), self.hresult())
    }
}

/// One reason Windows would refuse the package: the part, what differs, and the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The error a session host reports.
    pub code: Code,
    /// The file and the part of it: `Notes.exe block 2`, `ZIP central directory (AXCD)`.
    pub at: String,
    /// What differs, and what to do.
    pub what: String,
}

impl Problem {
    /// A problem at a part.
    pub fn new(code: Code, at: impl fmt::Display, what: impl fmt::Display) -> Self {
        Self {
            code,
            at: at.to_string(),
            what: what.to_string(),
        }
    }

    /// The same problem, said to be inside `outer` (a bundle, an image's folder).
    pub fn within(self, outer: impl fmt::Display) -> Self {
        Self {
            at: format!("{outer}: {}", self.at),
            ..self
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.code, self.what)
    }
}

impl From<Problem> for super::Error {
    fn from(p: Problem) -> Self {
        super::Error::new(p.at, format!("{}: {}", p.code, p.what))
    }
}

/// What verifying a package found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Whether the package is signed at all (an unsigned package is only checked against
    /// its block map, and Windows installs it only in developer mode).
    pub signed: bool,
    /// The digest algorithm of the signature and the block map (`SHA256`, ...).
    pub digest: Option<DigestAlgorithm>,
    /// Files checked against the block map.
    pub files: u64,
    /// Blocks of 64 KiB hashed.
    pub blocks: u64,
    /// The parts whose digests matched the signature's (`AXPC`, `AXCD`, ...).
    pub parts: Vec<String>,
    /// Where the signer's chain leads: checked against the declared roots when there are
    /// some, else as far as the signature's own certificates go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<crate::inspect::trust::ChainRoot>,
    /// Why Windows would refuse the package; empty when it would not.
    pub problems: Vec<Problem>,
    /// A bundle's payload packages, each verified on its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payloads: Vec<(String, Verification)>,
}

impl Verification {
    /// Every problem, the payloads' said to be inside them.
    pub fn all_problems(&self) -> Vec<Problem> {
        let mut out = self.problems.clone();
        for (name, v) in &self.payloads {
            out.extend(
                v.all_problems()
                    .into_iter()
                    .map(|p| p.within(format!("payload {name}"))),
            );
        }
        out
    }

    /// Why the session hosts would refuse the package: every problem, but an unsigned
    /// package's (`TRUST_E_NOSIGNATURE`) when `allow_unsigned` (developer mode).
    pub fn refusals(&self, allow_unsigned: bool) -> Vec<Problem> {
        self.all_problems()
            .into_iter()
            .filter(|p| !(allow_unsigned && p.code == Code::TrustNoSignature))
            .collect()
    }

    /// Whether Windows would take the package (as far as its signature and block map go).
    pub fn passed(&self) -> bool {
        self.all_problems().is_empty()
    }
}

/// The digest algorithms of app packages: the block map's `HashMethod` and the
/// signature's indirect data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DigestAlgorithm {
    /// SHA-256 (`http://www.w3.org/2001/04/xmlenc#sha256`), what MakeAppx and signtool use.
    #[serde(rename = "SHA256")]
    Sha256,
    /// SHA-384.
    #[serde(rename = "SHA384")]
    Sha384,
    /// SHA-512.
    #[serde(rename = "SHA512")]
    Sha512,
}

impl DigestAlgorithm {
    /// By the block map's `HashMethod` URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri {
            "http://www.w3.org/2001/04/xmlenc#sha256" => Some(Self::Sha256),
            "http://www.w3.org/2001/04/xmldsig-more#sha384" => Some(Self::Sha384),
            "http://www.w3.org/2001/04/xmlenc#sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// By its OID (`2.16.840.1.101.3.4.2.1` is SHA-256).
    pub fn from_oid(oid: &str) -> Option<Self> {
        match oid {
            "2.16.840.1.101.3.4.2.1" => Some(Self::Sha256),
            "2.16.840.1.101.3.4.2.2" => Some(Self::Sha384),
            "2.16.840.1.101.3.4.2.3" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Bytes of a digest.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Self::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Self::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        })
    }
}

/// A digest being computed.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha384(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha384(h) => h.finalize().to_vec(),
            Self::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hex of a digest, lower case, as `certutil -hashfile` and `sha256sum` print it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The problem of a package (or package folder) without a signature.
fn unsigned() -> Problem {
    Problem::new(
        Code::TrustNoSignature,
        "AppxSignature.p7x",
        "the package is not signed: app attach stages signed packages only; sign it with a \
         code-signing certificate whose chain the session hosts trust",
    )
}

/// What a package is verified against: the roots the session hosts trust (none: the
/// chain is not checked), and the time to check certificates at when the signature has
/// no timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Against<'a> {
    /// The declared roots, if any.
    pub trust: Option<&'a crate::inspect::trust::TrustedRoots>,
    /// Now.
    pub now: jiff::Timestamp,
}

impl Against<'_> {
    /// No declared roots, now.
    pub fn nothing() -> Self {
        Against {
            trust: None,
            now: jiff::Timestamp::now(),
        }
    }
}

/// Verifies a package file (`.msix`, `.appx`, or a bundle): its signature, the digests
/// it carries, and every file against the block map; a bundle's payloads each in turn.
/// `Err` only when the file cannot be read as a package at all.
pub fn verify_path(path: &Path, against: Against<'_>) -> super::Result<Verification> {
    let file = std::fs::File::open(path)
        .map_err(|e| super::Error::new(path.display(), format!("cannot open: {e}")))?;
    let mut v = verify_zip(std::io::BufReader::with_capacity(64 << 10, file), against)
        .map_err(|e| e.within(path.display()))?;
    flat_payloads(path, &mut v, against)?;
    Ok(v)
}

/// A flat bundle's payload packages, beside it in its folder, each verified as a package
/// of its own (one inside the bundle was verified with it).
fn flat_payloads(path: &Path, v: &mut Verification, against: Against<'_>) -> super::Result<()> {
    let Ok(file) = crate::inspect::package::read_package(path) else {
        return Ok(());
    };
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for payload in &file.payloads {
        let inside = v
            .payloads
            .iter()
            .any(|(n, _)| blockmap::key(n) == blockmap::key(&payload.file_name));
        if inside {
            continue;
        }
        let relative = crate::inspect::package::manifest_path(&payload.file_name)?;
        if let Some(beside) = crate::inspect::package::beside(folder, &relative) {
            let verified = verify_path(&beside, against)?;
            v.payloads.push((payload.file_name.clone(), verified));
        }
    }
    Ok(())
}

/// Verifies a package folder of an image (as msixmgr expands a package): the signature,
/// the digests it carries of the footprint files the folder has (`AXBM`, `AXCI`, and
/// `AXCT` when `[Content_Types].xml` was kept), and every file against the block map.
/// The ZIP's digests (`AXPC`, `AXCD`) have no ZIP to check against in a folder.
pub fn verify_folder(
    folder: &crate::inspect::image::FoundPackage,
    against: Against<'_>,
) -> Verification {
    let contents = &folder.contents;
    let mut v = Verification {
        signed: folder.signature.is_some(),
        digest: None,
        files: contents.files,
        blocks: contents.blocks,
        parts: Vec::new(),
        root: None,
        problems: Vec::new(),
        payloads: Vec::new(),
    };
    let Some(block_map) = &contents.block_map else {
        v.problems.push(Problem::new(
            Code::MissingRequiredFile,
            blockmap::NAME,
            "the package folder has no block map: Windows does not stage it",
        ));
        return v;
    };
    match &folder.signature {
        None => v.problems.push(unsigned()),
        Some(p7x) => match crate::inspect::signature::verify_p7x(p7x) {
            Err(p) => v.problems.push(p),
            Ok(vouched) => {
                let hash = vouched.digest;
                v.digest = Some(hash);
                let (root, untrusted) = chain(&vouched, against);
                v.root = Some(root);
                v.problems.extend(untrusted);
                let digest = |b: &Option<Vec<u8>>| b.as_ref().map(|b| hash.digest(b));
                let parts: [Part; 3] = [
                    (b"AXBM", blockmap::NAME, Some(hash.digest(block_map))),
                    (
                        b"AXCI",
                        "AppxMetadata\\CodeIntegrity.cat",
                        digest(&contents.code_integrity),
                    ),
                    (
                        b"AXCT",
                        "[Content_Types].xml",
                        digest(&contents.content_types),
                    ),
                ];
                compare_parts(&vouched, parts, &mut v);
            }
        },
    }
    v.problems.extend(contents.problems.iter().cloned());
    v
}

/// A part of a package the signature may carry a digest of: its tag, its name, and the
/// digest of what the package holds of it (`None`: the package has no such part).
pub(crate) type Part<'a> = (&'a [u8; 4], &'a str, Option<Vec<u8>>);

/// Compares the digests the signature carries with the parts': a match is recorded, a
/// difference (or a code-integrity catalog on one side only) is TRUST_E_BAD_DIGEST naming
/// the part and both digests. A part neither has, or one the signature does not cover
/// where it has no digest of it (no ZIP digests in a folder), is left alone.
pub(crate) fn compare_parts<const N: usize>(
    vouched: &crate::inspect::signature::Vouched,
    parts: [Part<'_>; N],
    v: &mut Verification,
) {
    let hash = vouched.digest;
    for (tag, part, actual) in parts {
        let tag_text = String::from_utf8_lossy(tag).into_owned();
        let at = format!("{part} ({tag_text})");
        match (vouched.digest_of(tag), actual) {
            (Some(signed), Some(actual)) if signed == actual.as_slice() => v.parts.push(tag_text),
            (Some(signed), Some(actual)) => v.problems.push(Problem::new(
                Code::TrustBadDigest,
                at,
                format!(
                    "its {hash} is {}, the signature says {}: it changed after signing",
                    hex(&actual),
                    hex(signed)
                ),
            )),
            (Some(_), None) if tag == b"AXCI" => v.problems.push(Problem::new(
                Code::TrustBadDigest,
                at,
                "the signature has its digest but the package has no such file: it was removed \
                 after signing",
            )),
            (None, Some(_)) if tag == b"AXCI" => v.problems.push(Problem::new(
                Code::TrustBadDigest,
                at,
                "the package has the file but the signature has no digest of it: it was added \
                 after signing",
            )),
            _ => {}
        }
    }
}

/// [`verify_zip`] of any seekable source, with no declared roots, for the fuzz target
/// and tests.
pub fn verify_from<R: Read + Seek>(source: R) -> super::Result<Verification> {
    verify_zip(source, Against::nothing())
}

/// The signer's chain, checked against the declared roots when there are some (a
/// problem when it does not lead to one), else where the signature's certificates lead.
pub fn chain(
    vouched: &crate::inspect::signature::Vouched,
    against: Against<'_>,
) -> (crate::inspect::trust::ChainRoot, Option<Problem>) {
    let top = crate::inspect::trust::chain_top(vouched);
    match against.trust {
        Some(trust) => match trust.check(vouched, against.now) {
            Ok(root) => (root, None),
            Err(p) => (top, Some(p)),
        },
        None => (top, None),
    }
}
