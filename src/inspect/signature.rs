//! The package signature, `AppxSignature.p7x`: `PKCX` then a DER PKCS#7 SignedData.
//!
//! [`read_p7x`] reads what the signature says: the signer's certificate, its validity and
//! extended key usage, and the time a timestamp authority gave. [`verify_p7x`] checks the
//! signature in itself (its messageDigest, the signer's signature over its attributes) and
//! gives the digests of the package's parts it vouches for, which [`super::verify`]
//! compares with the package; [`super::trust`] decides whether the signer is trusted.
//!
//! The SignedData is walked element by element here, and only its parts are decoded with
//! `cms` and `x509-cert`: a SET OF decoded by `der` must not hold the same element twice,
//! and real signatures do (osslsigncode's timestamp tokens carry the TSA certificate
//! twice); walking the DER also keeps the certificates' own bytes for the thumbprint and
//! every element's offset for errors. Before anything is decoded, the whole blob is
//! checked to nest at most 48 deep with at most 256 elements in any SET, as `der` sorts
//! each SET it decodes (in quadratic time).

use cms::signed_data::{SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::{Any, Decode, Encode, Tag, Tagged};
use serde::Serialize;
use sha1::{Digest, Sha1};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::name::Name;
use x509_cert::time::Time;

use super::package::limits;
use super::verify::{Code, DigestAlgorithm, Problem};
use super::{Error, Result};

/// What the signature says about who signed the package, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureFacts {
    /// Signer certificate subject, most specific first, as Windows writes it:
    /// `CN=Contoso Ltd, O=Contoso Ltd, C=US`.
    pub subject: String,
    /// Signer certificate issuer, in the same form.
    pub issuer: String,
    /// SHA-1 of the signer certificate's DER, 40 uppercase hex digits (as certmgr shows it).
    pub thumbprint: String,
    /// Serial number, uppercase hex.
    pub serial_number: String,
    /// Start of the certificate's validity.
    pub not_before: jiff::Timestamp,
    /// End of the certificate's validity.
    pub not_after: jiff::Timestamp,
    /// Whether the certificate's extended key usage allows code signing (1.3.6.1.5.5.7.3.3).
    pub code_signing: bool,
    /// When a timestamp authority countersigned the signature, if one did.
    pub timestamp: Option<jiff::Timestamp>,
}

/// The four bytes an `AppxSignature.p7x` starts with.
const MAGIC: &[u8] = b"PKCX";
/// Deepest nesting of DER elements read.
const MAX_DEPTH: usize = 48;
/// Most elements in one SET (or implicitly tagged SET) read.
const MAX_SET_ITEMS: usize = 256;

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const RFC3161_TIMESTAMP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.3.3.1");
const COUNTERSIGNATURE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.6");
const SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_CONTEXT_0: u8 = 0xA0;
const TAG_CONTEXT_1: u8 = 0xA1;

/// Reads an `AppxSignature.p7x`: the signer certificate's facts and the timestamp.
/// Errors say where (`byte N` of the file) and what is wrong.
pub fn read_p7x(bytes: &[u8]) -> Result<SignatureFacts> {
    let der = strip_magic(bytes)?;
    check_shape(der, MAGIC.len(), 0)?;
    let signed = signed_data(der, MAGIC.len())?;
    let signer = first_signer(&signed)?;
    let (certificate, raw) = signer_certificate(&signed, &signer.sid)?;
    let timestamp = timestamp(&signer)?;
    certificate_facts(&certificate, raw, timestamp)
}

/// What a signature vouches for, once its own signature is checked: the digests of the
/// package's parts, and who signed.
#[derive(Debug, Clone)]
pub struct Vouched {
    /// The digest algorithm of the indirect data (and so of the package's parts).
    pub digest: DigestAlgorithm,
    /// Whether the signature is a bundle's (by the SIP's subject GUID).
    pub bundle: bool,
    /// The digests of the package's parts, by tag (`AXPC`, `AXCD`, `AXCT`, `AXBM`,
    /// `AXCI`), in the order the signature gives them.
    pub digests: TaggedDigests,
    /// The signer's certificate, DER.
    pub signer: Vec<u8>,
    /// Every certificate the signature carries (the signer's among them), DER.
    pub certificates: Vec<Vec<u8>>,
    /// The signer's facts, as [`read_p7x`] gives them.
    pub facts: SignatureFacts,
}

impl Vouched {
    /// The digest the signature carries for `tag`.
    pub fn digest_of(&self, tag: &[u8; 4]) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, d)| d.as_slice())
    }
}

/// The subject GUID of app packages' SIP (`AppxSip`), as its bytes appear in SpcSipInfo.
const APPX_SIP: [u8; 16] = [
    0x4B, 0xDF, 0xC5, 0x0A, 0x07, 0xCE, 0xE2, 0x4D, 0xB7, 0x6E, 0x23, 0xC8, 0x39, 0xA0, 0x9F, 0xD1,
];
/// The subject GUID of app bundles' SIP.
const APPX_BUNDLE_SIP: [u8; 16] = [
    0xB3, 0x58, 0x5F, 0x0F, 0xDE, 0xAA, 0x9A, 0x4B, 0xA4, 0x34, 0x95, 0x74, 0x2D, 0x92, 0xEC, 0xEB,
];
const SPC_INDIRECT_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
const SPC_SIPINFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.30");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// The tags of the digests in an app package's indirect data.
pub const DIGEST_TAGS: [&[u8; 4]; 5] = [b"AXPC", b"AXCD", b"AXCT", b"AXBM", b"AXCI"];

/// Verifies an `AppxSignature.p7x` in itself: it is an app package's (or bundle's)
/// Authenticode signature, its `messageDigest` is the digest of the indirect data it
/// signs, and the signer's certificate signed its attributes. The digests of the
/// package's parts it carries are for the caller to compare. Whether the signer is
/// trusted is not decided here ([`super::trust`]).
pub fn verify_p7x(bytes: &[u8]) -> std::result::Result<Vouched, Problem> {
    let unreadable = |e: Error| {
        Problem::new(
            Code::TrustNoSignature,
            format!("AppxSignature.p7x {}", e.at),
            format!("the signature cannot be read: {}", e.what),
        )
    };
    let der = strip_magic(bytes).map_err(unreadable)?;
    check_shape(der, MAGIC.len(), 0).map_err(unreadable)?;
    let signed = signed_data(der, MAGIC.len()).map_err(unreadable)?;
    let signer = first_signer(&signed).map_err(unreadable)?;
    let (certificate, raw) = signer_certificate(&signed, &signer.sid).map_err(unreadable)?;
    let timestamp = timestamp(&signer).map_err(unreadable)?;
    let facts = certificate_facts(&certificate, raw, timestamp).map_err(unreadable)?;
    let indirect = indirect_data(&signed).map_err(|e| {
        Problem::new(
            Code::InvalidSipClientData,
            format!("AppxSignature.p7x {}", e.at),
            e.what,
        )
    })?;
    let (digest, bundle, digests) = appx_digests(indirect)?;
    check_message_digest(&signer, indirect)?;
    let signer_tlv = signed.signer_infos[0];
    check_signer_signature(signer_tlv, &signer, &certificate)?;
    Ok(Vouched {
        digest,
        bundle,
        digests,
        signer: raw.to_vec(),
        certificates: signed
            .certificates
            .iter()
            .filter(|t| t.tag == TAG_SEQUENCE)
            .map(|t| t.raw.to_vec())
            .collect(),
        facts,
    })
}

/// The SpcIndirectDataContent the SignedData signs.
fn indirect_data<'a>(signed: &SignedParts<'a>) -> Result<Tlv<'a>> {
    let mut items = signed.encap_content_info.children();
    let content_type = take(&mut items, TAG_OID, "the encapContentInfo's eContentType")?;
    let content_type = decode_oid(content_type)?;
    if content_type != SPC_INDIRECT_DATA {
        return Err(Error::new(
            format!("byte {}", signed.encap_content_info.offset),
            format!(
                "the signature signs {content_type}, not an Authenticode SpcIndirectDataContent \
                 ({SPC_INDIRECT_DATA}): it is not an app package's signature"
            ),
        ));
    }
    let explicit = take(&mut items, TAG_CONTEXT_0, "the encapContentInfo's eContent")?;
    let content = single(
        explicit.contents,
        explicit.contents_offset,
        "the SpcIndirectDataContent",
    )?;
    expect(content, TAG_SEQUENCE, "the SpcIndirectDataContent")
}

/// Tagged digests of a package's parts.
type TaggedDigests = Vec<([u8; 4], Vec<u8>)>;

/// The SIP's subject (package or bundle), the digest algorithm and the digests of the
/// package's parts, out of the SpcIndirectDataContent.
fn appx_digests(
    indirect: Tlv<'_>,
) -> std::result::Result<(DigestAlgorithm, bool, TaggedDigests), Problem> {
    let sip = |e: Error| {
        Problem::new(
            Code::InvalidSipClientData,
            format!("AppxSignature.p7x {}", e.at),
            e.what,
        )
    };
    let mut items = indirect.children();
    let data = take(
        &mut items,
        TAG_SEQUENCE,
        "the SpcIndirectDataContent's data",
    )
    .map_err(sip)?;
    let mut data_items = data.children();
    let kind = take(
        &mut data_items,
        TAG_OID,
        "the SpcAttributeTypeAndOptionalValue's type",
    )
    .and_then(decode_oid)
    .map_err(sip)?;
    if kind != SPC_SIPINFO {
        return Err(sip(Error::new(
            format!("byte {}", data.offset),
            format!(
                "the indirect data is {kind}, not an SpcSipInfo ({SPC_SIPINFO}) of app packages"
            ),
        )));
    }
    let info = take(&mut data_items, TAG_SEQUENCE, "the SpcSipInfo").map_err(sip)?;
    let mut info_items = info.children();
    take(&mut info_items, TAG_INTEGER, "the SpcSipInfo's version").map_err(sip)?;
    let guid = take(&mut info_items, TAG_OCTET_STRING, "the SpcSipInfo's GUID").map_err(sip)?;
    let bundle = if guid.contents == APPX_SIP {
        false
    } else if guid.contents == APPX_BUNDLE_SIP {
        true
    } else {
        return Err(sip(Error::new(
            format!("byte {}", guid.offset),
            format!(
                "the SIP GUID {} is neither app packages' nor app bundles': the signature is of \
                 another kind of file",
                hex_upper(guid.contents)
            ),
        )));
    };
    let digest_info = take(
        &mut items,
        TAG_SEQUENCE,
        "the SpcIndirectDataContent's messageDigest",
    )
    .map_err(sip)?;
    let mut digest_items = digest_info.children();
    let algorithm = take(
        &mut digest_items,
        TAG_SEQUENCE,
        "the DigestInfo's algorithm",
    )
    .and_then(|a| take(&mut a.children(), TAG_OID, "the DigestInfo's algorithm OID"))
    .and_then(decode_oid)
    .map_err(sip)?;
    let digest = DigestAlgorithm::from_oid(&algorithm.to_string()).ok_or_else(|| {
        sip(Error::new(
            format!("byte {}", digest_info.offset),
            format!("the digest algorithm {algorithm} is not one of app packages' (SHA-256, SHA-384, SHA-512)"),
        ))
    })?;
    let blob = take(
        &mut digest_items,
        TAG_OCTET_STRING,
        "the DigestInfo's digest",
    )
    .map_err(sip)?;
    let at = format!("AppxSignature.p7x byte {}", blob.offset);
    let rest = blob.contents.strip_prefix(b"APPX").ok_or_else(|| {
        Problem::new(
            Code::InvalidSipClientData,
            &at,
            "the digest does not start with APPX: it is not an app package's",
        )
    })?;
    let width = 4 + digest.output_len();
    if rest.len() % width != 0 {
        return Err(Problem::new(
            Code::InvalidSipClientData,
            &at,
            format!(
                "{} bytes of digests after APPX, not a whole number of {width}-byte tagged {digest} digests",
                rest.len()
            ),
        ));
    }
    let mut digests: TaggedDigests = Vec::new();
    for chunk in rest.chunks(width) {
        let (tag, value) = chunk.split_at(4);
        let tag: [u8; 4] = tag.try_into().unwrap_or_default();
        if !DIGEST_TAGS.iter().any(|t| **t == tag) || digests.iter().any(|(t, _)| *t == tag) {
            return Err(Problem::new(
                Code::InvalidSipClientData,
                &at,
                format!(
                    "the digest tag {:?} is unknown or repeated (app packages carry AXPC, AXCD, AXCT, AXBM and AXCI once each)",
                    String::from_utf8_lossy(&tag)
                ),
            ));
        }
        digests.push((tag, value.to_vec()));
    }
    for required in [b"AXPC", b"AXCD", b"AXCT", b"AXBM"] {
        if !digests.iter().any(|(t, _)| t == required) {
            return Err(Problem::new(
                Code::InvalidSipClientData,
                &at,
                format!(
                    "the signature carries no {} digest, which every app package's does",
                    String::from_utf8_lossy(required)
                ),
            ));
        }
    }
    Ok((digest, bundle, digests))
}

/// The signed attributes' messageDigest is the digest of the SpcIndirectDataContent's
/// contents (its value, without the SEQUENCE's tag and length, as Authenticode has it).
fn check_message_digest(
    signer: &SignerInfo,
    indirect: Tlv<'_>,
) -> std::result::Result<(), Problem> {
    let at = "AppxSignature.p7x signed attributes";
    let algorithm = signer.digest_alg.oid.to_string();
    let digest = DigestAlgorithm::from_oid(&algorithm).ok_or_else(|| {
        Problem::new(
            Code::BadSignature,
            at,
            format!("the signer's digest algorithm {algorithm} is not SHA-256, SHA-384 or SHA-512"),
        )
    })?;
    let claimed = signer
        .signed_attrs
        .as_ref()
        .and_then(|attrs| attrs.iter().find(|a| a.oid == MESSAGE_DIGEST))
        .and_then(|a| a.values.iter().next())
        .filter(|v| v.tag() == Tag::OctetString)
        .ok_or_else(|| {
            Problem::new(
                Code::BadSignature,
                at,
                format!(
                    "there is no messageDigest ({MESSAGE_DIGEST}): the signature signs nothing"
                ),
            )
        })?;
    let actual = digest.digest(indirect.contents);
    if claimed.value() != actual.as_slice() {
        return Err(Problem::new(
            Code::TrustBadDigest,
            "AppxSignature.p7x messageDigest",
            format!(
                "the signed {digest} of the indirect data is {}, the indirect data's is {}: the \
                 signature was altered after signing",
                super::verify::hex(claimed.value()),
                super::verify::hex(&actual)
            ),
        ));
    }
    Ok(())
}

/// The signer's certificate signed the signed attributes (DER, as a SET OF).
fn check_signer_signature(
    signer_tlv: Tlv<'_>,
    signer: &SignerInfo,
    certificate: &Certificate,
) -> std::result::Result<(), Problem> {
    let at = "AppxSignature.p7x SignerInfo";
    let bad = |what: String| Problem::new(Code::BadSignature, at, what);
    let attrs = signer_tlv
        .children()
        .filter_map(std::result::Result::ok)
        .find(|t| t.tag == TAG_CONTEXT_0)
        .ok_or_else(|| bad("has no signed attributes".into()))?;
    let mut message = attrs.raw.to_vec();
    message[0] = TAG_SET;
    let spki = &certificate.tbs_certificate.subject_public_key_info;
    let key = spki.subject_public_key.raw_bytes();
    let digest = signer.digest_alg.oid.to_string();
    let algorithm = signature_algorithm(
        &signer.signature_algorithm.oid.to_string(),
        &digest,
        &spki.algorithm.oid.to_string(),
        spki.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .map(|o| o.to_string())
            .as_deref(),
    )
    .ok_or_else(|| {
        bad(format!(
            "the signature algorithm {} with digest {digest} and key {} is not one Windows \
             verifies app packages with (RSA or ECDSA P-256/P-384 with SHA-2)",
            signer.signature_algorithm.oid, spki.algorithm.oid
        ))
    })?;
    ring::signature::UnparsedPublicKey::new(algorithm, key)
        .verify(&message, signer.signature.as_bytes())
        .map_err(|_| {
            bad(format!(
                "the signer's signature over the signed attributes does not verify with the key \
                 of {}: the signature was altered, or made with another key",
                format_name(&certificate.tbs_certificate.subject)
            ))
        })
}

/// The ring verification algorithm for a SignerInfo's signature algorithm, digest
/// algorithm and the signer key's algorithm (and curve).
fn signature_algorithm(
    signature: &str,
    digest: &str,
    key: &str,
    curve: Option<&str>,
) -> Option<&'static dyn ring::signature::VerificationAlgorithm> {
    use ring::signature as s;
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    let digest = match signature {
        RSA | EC => DigestAlgorithm::from_oid(digest)?,
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => DigestAlgorithm::Sha256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => DigestAlgorithm::Sha384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => DigestAlgorithm::Sha512,
        _ => return None,
    };
    // Windows still verifies 1024-bit RSA signers (Microsoft's own test packages have
    // them); ring names those "legacy", and has no 1024-bit SHA-384.
    Some(match (key, curve, digest) {
        (RSA, _, DigestAlgorithm::Sha256) => &s::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        (RSA, _, DigestAlgorithm::Sha384) => &s::RSA_PKCS1_2048_8192_SHA384,
        (RSA, _, DigestAlgorithm::Sha512) => &s::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        (EC, Some(P256), DigestAlgorithm::Sha256) => &s::ECDSA_P256_SHA256_ASN1,
        (EC, Some(P256), DigestAlgorithm::Sha384) => &s::ECDSA_P256_SHA384_ASN1,
        (EC, Some(P384), DigestAlgorithm::Sha256) => &s::ECDSA_P384_SHA256_ASN1,
        (EC, Some(P384), DigestAlgorithm::Sha384) => &s::ECDSA_P384_SHA384_ASN1,
        _ => return None,
    })
}

/// What a certificate says of itself, for chains: its subject and issuer (as Windows
/// writes names), their DER, its SHA-1 thumbprint, and whether it is self-issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateName {
    /// Subject, as Windows writes it.
    pub subject: String,
    /// Issuer, as Windows writes it.
    pub issuer: String,
    /// The subject's DER.
    pub subject_der: Vec<u8>,
    /// The issuer's DER.
    pub issuer_der: Vec<u8>,
    /// SHA-1 of the certificate's DER, 40 uppercase hex digits.
    pub thumbprint: String,
}

impl CertificateName {
    /// Whether the certificate names itself as its issuer (a root).
    pub fn self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }
}

/// Reads the names and thumbprint of a DER certificate.
pub fn certificate_name(der: &[u8]) -> Result<CertificateName> {
    let cert = Certificate::from_der(der).map_err(|e| der_error(e, 0, "a certificate"))?;
    let tbs = &cert.tbs_certificate;
    Ok(CertificateName {
        subject: format_name(&tbs.subject),
        issuer: format_name(&tbs.issuer),
        subject_der: tbs.subject.to_der().unwrap_or_default(),
        issuer_der: tbs.issuer.to_der().unwrap_or_default(),
        thumbprint: hex_upper(&Sha1::digest(der)),
    })
}

/// Whether two distinguished names are the same name: the same attributes in the same
/// order with the same values, however they are spaced and quoted. Attribute types are
/// compared without case, `ST` is `S`, and `OID.2.5.4.3` is `CN`; values exactly. A name
/// that cannot be parsed is only the same as the very same text.
pub fn same_distinguished_name(a: &str, b: &str) -> bool {
    match (parse_dn(a), parse_dn(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}

/// Formats a name as Windows does (`CertNameToStr` with X.500 keys): most specific
/// attribute first, `, ` between attributes, ` + ` inside a multi-valued RDN.
fn format_name(name: &Name) -> String {
    name.0
        .iter()
        .rev()
        .map(|rdn| {
            rdn.0
                .iter()
                .map(format_attribute)
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- the blob ------------------------------------------------------------------------

fn strip_magic(bytes: &[u8]) -> Result<&[u8]> {
    let too_big = u64::try_from(bytes.len()).map_or(true, |n| n > limits::SIGNATURE_BYTES);
    if too_big {
        return Err(Error::new(
            "byte 0",
            format!(
                "the signature is {} bytes, more than the {} read",
                bytes.len(),
                limits::SIGNATURE_BYTES
            ),
        ));
    }
    bytes.strip_prefix(MAGIC).ok_or_else(|| {
        Error::new(
            "byte 0",
            "does not start with PKCX: this is not an AppxSignature.p7x",
        )
    })
}

/// The parts of a SignedData that are read.
struct SignedParts<'a> {
    encap_content_info: Tlv<'a>,
    certificates: Vec<Tlv<'a>>,
    signer_infos: Vec<Tlv<'a>>,
}

/// Reads a ContentInfo holding a SignedData; `base` is the offset of `der` in the file.
fn signed_data(der: &[u8], base: usize) -> Result<SignedParts<'_>> {
    let content_info = single(der, base, "the ContentInfo")?;
    let content_info = expect(content_info, TAG_SEQUENCE, "the ContentInfo")?;
    let mut items = content_info.children();
    let content_type = take(&mut items, TAG_OID, "the ContentInfo's contentType")?;
    let content_type = decode_oid(content_type)?;
    if content_type != SIGNED_DATA {
        return Err(Error::new(
            format!("byte {}", content_info.offset),
            format!("the ContentInfo holds {content_type}, not SignedData ({SIGNED_DATA})"),
        ));
    }
    let explicit = take(&mut items, TAG_CONTEXT_0, "the ContentInfo's content")?;
    let signed = single(
        explicit.contents,
        explicit.contents_offset,
        "the SignedData",
    )?;
    let signed = expect(signed, TAG_SEQUENCE, "the SignedData")?;
    signed_parts(signed)
}

fn signed_parts(signed: Tlv<'_>) -> Result<SignedParts<'_>> {
    let mut items = signed.children();
    take(&mut items, TAG_INTEGER, "the SignedData's version")?;
    take(&mut items, TAG_SET, "the SignedData's digestAlgorithms")?;
    let encap_content_info = take(
        &mut items,
        TAG_SEQUENCE,
        "the SignedData's encapContentInfo",
    )?;
    let certificates = match take_optional(&mut items, TAG_CONTEXT_0)? {
        Some(set) => set.children().collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    take_optional(&mut items, TAG_CONTEXT_1)?;
    let signer_infos = take(&mut items, TAG_SET, "the SignedData's signerInfos")?;
    Ok(SignedParts {
        encap_content_info,
        certificates,
        signer_infos: signer_infos.children().collect::<Result<Vec<_>>>()?,
    })
}

fn first_signer(signed: &SignedParts<'_>) -> Result<SignerInfo> {
    let first = signed.signer_infos.first().ok_or_else(|| {
        Error::new(
            "SignedData",
            "has no SignerInfo: the package is not signed by anyone",
        )
    })?;
    SignerInfo::from_der(first.raw).map_err(|e| der_error(e, first.offset, "the SignerInfo"))
}

fn signer_certificate<'a>(
    signed: &SignedParts<'a>,
    sid: &SignerIdentifier,
) -> Result<(Certificate, &'a [u8])> {
    let mut undecodable = None;
    for tlv in signed.certificates.iter().filter(|t| t.tag == TAG_SEQUENCE) {
        match Certificate::from_der(tlv.raw) {
            Ok(cert) if is_signer(&cert, sid) => return Ok((cert, tlv.raw)),
            Ok(_) => {}
            Err(e) => {
                undecodable.get_or_insert_with(|| der_error(e, tlv.offset, "a certificate"));
            }
        }
    }
    let mut what = format!(
        "the signer's certificate ({}) is not among the {} certificates of the signature",
        describe_sid(sid),
        signed.certificates.len()
    );
    if let Some(e) = undecodable {
        what.push_str(&format!("; one could not be read: {e}"));
    }
    Err(Error::new("SignedData certificates", what))
}

fn is_signer(cert: &Certificate, sid: &SignerIdentifier) -> bool {
    let tbs = &cert.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            tbs.issuer == id.issuer && tbs.serial_number == id.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(id) => subject_key_id(cert).as_ref() == Some(id),
    }
}

fn subject_key_id(cert: &Certificate) -> Option<SubjectKeyIdentifier> {
    let extensions = cert.tbs_certificate.extensions.as_ref()?;
    let ext = extensions.iter().find(|e| e.extn_id == SUBJECT_KEY_ID)?;
    SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes()).ok()
}

fn describe_sid(sid: &SignerIdentifier) -> String {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => format!(
            "issuer {}, serial number {}",
            format_name(&id.issuer),
            serial_hex(id.serial_number.as_bytes())
        ),
        SignerIdentifier::SubjectKeyIdentifier(id) => {
            format!("subject key identifier {}", hex_upper(id.0.as_bytes()))
        }
    }
}

fn certificate_facts(
    cert: &Certificate,
    raw: &[u8],
    timestamp: Option<jiff::Timestamp>,
) -> Result<SignatureFacts> {
    let tbs = &cert.tbs_certificate;
    Ok(SignatureFacts {
        subject: format_name(&tbs.subject),
        issuer: format_name(&tbs.issuer),
        thumbprint: hex_upper(&Sha1::digest(raw)),
        serial_number: serial_hex(tbs.serial_number.as_bytes()),
        not_before: certificate_time(tbs.validity.not_before, "notBefore")?,
        not_after: certificate_time(tbs.validity.not_after, "notAfter")?,
        code_signing: code_signing(cert)?,
        timestamp,
    })
}

fn certificate_time(time: Time, what: &str) -> Result<jiff::Timestamp> {
    i64::try_from(time.to_unix_duration().as_secs())
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .ok_or_else(|| {
            Error::new(
                "signer certificate",
                format!("its {what} is out of the range of times read"),
            )
        })
}

fn code_signing(cert: &Certificate) -> Result<bool> {
    let Some(extensions) = &cert.tbs_certificate.extensions else {
        return Ok(false);
    };
    let Some(ext) = extensions.iter().find(|e| e.extn_id == EXTENDED_KEY_USAGE) else {
        return Ok(false);
    };
    let usage = ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).map_err(|e| {
        Error::new(
            "signer certificate",
            format!("its extended key usage extension is not a list of OIDs: {e}"),
        )
    })?;
    Ok(usage.0.contains(&CODE_SIGNING))
}

// ---- the timestamp -------------------------------------------------------------------

/// The timestamp: an RFC 3161 token, else a legacy Authenticode countersignature.
fn timestamp(signer: &SignerInfo) -> Result<Option<jiff::Timestamp>> {
    if let Some(token) = unsigned_attribute(signer, RFC3161_TIMESTAMP) {
        let at = format!("timestamp token ({RFC3161_TIMESTAMP})");
        return rfc3161_time(token).map(Some).map_err(|e| e.within(at));
    }
    if let Some(countersignature) = unsigned_attribute(signer, COUNTERSIGNATURE) {
        let at = format!("countersignature ({COUNTERSIGNATURE})");
        return countersignature_time(countersignature)
            .map(Some)
            .map_err(|e| e.within(at));
    }
    Ok(None)
}

fn unsigned_attribute(signer: &SignerInfo, oid: ObjectIdentifier) -> Option<&Any> {
    let attributes = signer.unsigned_attrs.as_ref()?;
    let attribute = attributes.iter().find(|a| a.oid == oid)?;
    attribute.values.iter().next()
}

/// genTime of the TSTInfo inside a timestamp token (a ContentInfo holding a SignedData).
fn rfc3161_time(token: &Any) -> Result<jiff::Timestamp> {
    let der = token
        .to_der()
        .map_err(|e| Error::new("byte 0", format!("cannot be re-encoded: {e}")))?;
    let signed = signed_data(&der, 0)?;
    let mut items = signed.encap_content_info.children();
    let content_type = take(&mut items, TAG_OID, "the token's eContentType")?;
    let content_type = decode_oid(content_type)?;
    if content_type != TST_INFO {
        return Err(Error::new(
            format!("byte {}", signed.encap_content_info.offset),
            format!("the token holds {content_type}, not a TSTInfo ({TST_INFO})"),
        ));
    }
    let explicit = take(&mut items, TAG_CONTEXT_0, "the token's eContent")?;
    let octets = single(explicit.contents, explicit.contents_offset, "the eContent")?;
    let octets = expect(octets, TAG_OCTET_STRING, "the eContent")?;
    let tst_info = single(octets.contents, octets.contents_offset, "the TSTInfo")?;
    let tst_info = expect(tst_info, TAG_SEQUENCE, "the TSTInfo")?;
    gen_time(tst_info)
}

fn gen_time(tst_info: Tlv<'_>) -> Result<jiff::Timestamp> {
    let mut items = tst_info.children();
    take(&mut items, TAG_INTEGER, "the TSTInfo's version")?;
    take(&mut items, TAG_OID, "the TSTInfo's policy")?;
    take(&mut items, TAG_SEQUENCE, "the TSTInfo's messageImprint")?;
    take(&mut items, TAG_INTEGER, "the TSTInfo's serialNumber")?;
    let time = take(&mut items, TAG_GENERALIZED_TIME, "the TSTInfo's genTime")?;
    parse_time(Tag::GeneralizedTime, time.contents).ok_or_else(|| {
        Error::new(
            format!("byte {}", time.offset),
            format!(
                "the TSTInfo's genTime {:?} is not a time",
                String::from_utf8_lossy(time.contents)
            ),
        )
    })
}

/// signingTime of a countersignature (a SignerInfo).
fn countersignature_time(countersignature: &Any) -> Result<jiff::Timestamp> {
    let der = countersignature
        .to_der()
        .map_err(|e| Error::new("byte 0", format!("cannot be re-encoded: {e}")))?;
    let signer = SignerInfo::from_der(&der).map_err(|e| der_error(e, 0, "the SignerInfo"))?;
    let time = signer
        .signed_attrs
        .as_ref()
        .and_then(|attrs| attrs.iter().find(|a| a.oid == SIGNING_TIME))
        .and_then(|a| a.values.iter().next())
        .ok_or_else(|| {
            Error::new(
                "signed attributes",
                format!("has no signingTime ({SIGNING_TIME})"),
            )
        })?;
    parse_time(time.tag(), time.value()).ok_or_else(|| {
        Error::new(
            "signingTime",
            format!(
                "{:?} is not a UTCTime or GeneralizedTime",
                String::from_utf8_lossy(time.value())
            ),
        )
    })
}

/// Parses a UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSS[.f]Z`, the
/// fraction as Microsoft's timestamp authority writes it).
fn parse_time(tag: Tag, text: &[u8]) -> Option<jiff::Timestamp> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        Tag::UtcTime => {
            let (yy, rest) = (number(text.get(..2)?)?, text.get(2..)?);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, rest)
        }
        Tag::GeneralizedTime => (number(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    let (whole, fraction) = match rest.split_once('.') {
        Some((whole, fraction)) if tag == Tag::GeneralizedTime && !fraction.is_empty() => {
            (whole, fraction)
        }
        Some(_) => return None,
        None => (rest, ""),
    };
    if whole.len() != 10 {
        return None;
    }
    let field = |i: usize| -> Option<i8> { i8::try_from(number(whole.get(i..i + 2)?)?).ok() };
    let nanos = fraction_nanos(fraction)?;
    let year = i16::try_from(year).ok()?;
    let civil = jiff::civil::DateTime::new(
        year,
        field(0)?,
        field(2)?,
        field(4)?,
        field(6)?,
        field(8)?,
        nanos,
    )
    .ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

fn number(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn fraction_nanos(fraction: &str) -> Option<i32> {
    if fraction.is_empty() {
        return Some(0);
    }
    if fraction.len() > 9 {
        return None;
    }
    let value = i32::try_from(number(fraction)?).ok()?;
    let scale = 10_i32.checked_pow(u32::try_from(9 - fraction.len()).ok()?)?;
    value.checked_mul(scale)
}

// ---- DER elements --------------------------------------------------------------------

/// One DER element: its tag, where it starts in the blob read, and its contents.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    offset: usize,
    raw: &'a [u8],
    contents: &'a [u8],
    contents_offset: usize,
}

impl<'a> Tlv<'a> {
    fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    fn children(&self) -> Elements<'a> {
        Elements {
            rest: self.contents,
            offset: self.contents_offset,
        }
    }
}

/// DER elements laid end to end; an error ends the iteration.
#[derive(Debug, Clone)]
struct Elements<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<Tlv<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = read_tlv(self.rest, self.offset);
        match &item {
            Ok(tlv) => {
                self.rest = self.rest.get(tlv.raw.len()..).unwrap_or_default();
                self.offset = self.offset.saturating_add(tlv.raw.len());
            }
            Err(_) => self.rest = &[],
        }
        Some(item)
    }
}

fn read_tlv(bytes: &[u8], offset: usize) -> Result<Tlv<'_>> {
    let at = || format!("byte {offset}");
    let (&tag, rest) = bytes
        .split_first()
        .ok_or_else(|| Error::new(at(), "the DER ends where an element should start"))?;
    if tag & 0x1F == 0x1F {
        return Err(Error::new(
            at(),
            format!("tag 0x{tag:02X} has a multi-byte tag number, not read"),
        ));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or_else(|| Error::new(at(), "the DER ends inside an element's header"))?;
    let (length, length_bytes) = match first {
        0..=0x7F => (usize::from(first), 0),
        0x80 => {
            return Err(Error::new(
                at(),
                "an indefinite length (BER), which DER does not allow",
            ));
        }
        _ => long_length(rest, usize::from(first & 0x7F)).ok_or_else(|| {
            Error::new(
                at(),
                "the DER ends inside an element's length, or it is too long",
            )
        })?,
    };
    let header = 2 + length_bytes;
    let left = bytes.len().saturating_sub(header);
    let raw = header
        .checked_add(length)
        .and_then(|end| bytes.get(..end))
        .ok_or_else(|| {
            Error::new(
                at(),
                format!(
                    "an element (tag 0x{tag:02X}) of {length} bytes runs past the end of what \
                     holds it ({left} bytes left): the signature is truncated or corrupt"
                ),
            )
        })?;
    Ok(Tlv {
        tag,
        offset,
        raw,
        contents: raw.get(header..).unwrap_or_default(),
        contents_offset: offset.saturating_add(header),
    })
}

/// A long-form length of `count` bytes (at most 4); the length and `count`.
fn long_length(bytes: &[u8], count: usize) -> Option<(usize, usize)> {
    if count > 4 {
        return None;
    }
    let length = bytes
        .get(..count)?
        .iter()
        .fold(0_usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((length, count))
}

/// Checks that the elements nest at most [`MAX_DEPTH`] deep and that no SET (nor an
/// implicitly tagged one) holds more than [`MAX_SET_ITEMS`] elements.
fn check_shape(bytes: &[u8], offset: usize, depth: usize) -> Result<()> {
    for tlv in (Elements {
        rest: bytes,
        offset,
    }) {
        let tlv = tlv?;
        if !tlv.constructed() {
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err(Error::new(
                format!("byte {}", tlv.offset),
                format!("elements nest more than {MAX_DEPTH} deep"),
            ));
        }
        let sorted = tlv.tag == TAG_SET || tlv.tag & 0xE0 == 0xA0;
        if sorted && tlv.children().take(MAX_SET_ITEMS + 1).count() > MAX_SET_ITEMS {
            return Err(Error::new(
                format!("byte {}", tlv.offset),
                format!("a SET of more than {MAX_SET_ITEMS} elements, more than read"),
            ));
        }
        check_shape(tlv.contents, tlv.contents_offset, depth + 1)?;
    }
    Ok(())
}

/// The only element of `bytes`.
fn single<'a>(bytes: &'a [u8], offset: usize, what: &str) -> Result<Tlv<'a>> {
    let tlv =
        read_tlv(bytes, offset).map_err(|e| Error::new(e.at, format!("{what}: {}", e.what)))?;
    if tlv.raw.len() < bytes.len() {
        return Err(Error::new(
            format!("byte {}", offset.saturating_add(tlv.raw.len())),
            format!(
                "{} bytes follow {what}, which should be all there is",
                bytes.len() - tlv.raw.len()
            ),
        ));
    }
    Ok(tlv)
}

fn expect<'a>(tlv: Tlv<'a>, tag: u8, what: &str) -> Result<Tlv<'a>> {
    if tlv.tag == tag {
        Ok(tlv)
    } else {
        Err(Error::new(
            format!("byte {}", tlv.offset),
            format!(
                "{what} should have tag 0x{tag:02X}, not 0x{:02X}: not a PKCS#7 SignedData",
                tlv.tag
            ),
        ))
    }
}

fn take<'a>(items: &mut Elements<'a>, tag: u8, what: &str) -> Result<Tlv<'a>> {
    let offset = items.offset;
    let tlv = items
        .next()
        .ok_or_else(|| Error::new(format!("byte {offset}"), format!("{what} is missing")))??;
    expect(tlv, tag, what)
}

fn take_optional<'a>(items: &mut Elements<'a>, tag: u8) -> Result<Option<Tlv<'a>>> {
    let mut peek = items.clone();
    match peek.next().transpose()? {
        Some(tlv) if tlv.tag == tag => {
            *items = peek;
            Ok(Some(tlv))
        }
        _ => Ok(None),
    }
}

fn decode_oid(tlv: Tlv<'_>) -> Result<ObjectIdentifier> {
    ObjectIdentifier::from_der(tlv.raw).map_err(|e| der_error(e, tlv.offset, "an OID"))
}

/// A `der` error while decoding `what` at `offset`, said at the byte it happened.
fn der_error(e: der::Error, offset: usize, what: &str) -> Error {
    let at = e
        .position()
        .and_then(|p| usize::try_from(p).ok())
        .map_or(offset, |p| offset.saturating_add(p));
    Error::new(
        format!("byte {at}"),
        format!("bad DER in {what}: {}", e.kind()),
    )
}

// ---- names ---------------------------------------------------------------------------

/// Windows' X.500 keys, by OID, as `CertNameToStr` writes them.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "S"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "T"),
    ("2.5.4.13", "Description"),
    ("2.5.4.17", "PostalCode"),
    ("2.5.4.18", "POBox"),
    ("2.5.4.20", "Phone"),
    ("2.5.4.42", "G"),
    ("2.5.4.43", "I"),
    ("2.5.4.46", "dnQualifier"),
    ("1.2.840.113549.1.9.1", "E"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// Other spellings of the same keys that Windows reads.
const ALIASES: &[(&str, &str)] = &[
    ("ST", "S"),
    ("EMAIL", "E"),
    ("TITLE", "T"),
    ("GIVENNAME", "G"),
    ("INITIALS", "I"),
];

fn format_attribute(attribute: &AttributeTypeAndValue) -> String {
    let oid = attribute.oid.to_string();
    let key = SHORT_NAMES
        .iter()
        .find(|(o, _)| *o == oid)
        .map_or_else(|| format!("OID.{oid}"), |(_, short)| (*short).to_string());
    let value = match attribute_text(&attribute.value) {
        Some(text) => quote_value(&text),
        None => format!(
            "#{}",
            hex_upper(&attribute.value.to_der().unwrap_or_default())
        ),
    };
    format!("{key}={value}")
}

/// The text of a directory string (others are written as `#` and the hex of their DER).
fn attribute_text(value: &Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::NumericString => std::str::from_utf8(bytes).ok().map(str::to_owned),
        // T.61 as Latin-1, as Windows reads it.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => utf16_be(bytes),
        _ => None,
    }
}

fn utf16_be(bytes: &[u8]) -> Option<String> {
    let (pairs, rest) = bytes.as_chunks::<2>();
    if !rest.is_empty() {
        return None;
    }
    let units: Vec<u16> = pairs.iter().map(|&p| u16::from_be_bytes(p)).collect();
    String::from_utf16(&units).ok()
}

/// Quotes a value as Windows does: within `"`, with `"` doubled, when it has leading or
/// trailing white space or one of `, + = " < > # ;` or a line break.
fn quote_value(value: &str) -> String {
    let special = |c: char| {
        matches!(
            c,
            ',' | '+' | '=' | '"' | '<' | '>' | '#' | ';' | '\r' | '\n'
        )
    };
    let padded = value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace);
    if padded || value.contains(special) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// A name's (type, value) pairs, types canonical; `None` when it is not a name.
fn parse_dn(name: &str) -> Option<Vec<(String, String)>> {
    if name.trim().is_empty() {
        return Some(Vec::new());
    }
    split_unquoted(name)
        .into_iter()
        .map(|part| {
            let (key, value) = part.split_once('=')?;
            Some((canonical_key(key.trim())?, unquote(value.trim())?))
        })
        .collect()
}

/// Splits at `,` and `+` outside quotes.
fn split_unquoted(name: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in name.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' | '+' if !quoted => {
                parts.push(name.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(name.get(start..).unwrap_or_default());
    parts
}

fn unquote(value: &str) -> Option<String> {
    if !value.starts_with('"') {
        return Some(value.to_owned());
    }
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\"\"", "\""))
}

/// The uppercase X.500 key for a key, an alias or an OID (`OID.2.5.4.3` or `2.5.4.3`).
fn canonical_key(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let upper = key.to_ascii_uppercase();
    let oid = upper.strip_prefix("OID.").unwrap_or(&upper);
    if oid.starts_with(|c: char| c.is_ascii_digit()) {
        let short = SHORT_NAMES.iter().find(|(o, _)| *o == oid);
        return Some(short.map_or_else(|| format!("OID.{oid}"), |(_, s)| s.to_ascii_uppercase()));
    }
    match ALIASES.iter().find(|(a, _)| *a == upper) {
        Some((_, k)) => Some((*k).to_owned()),
        None => Some(upper),
    }
}

// ---- hex -----------------------------------------------------------------------------

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A serial number's hex, without the zero byte DER puts before a high first byte.
fn serial_hex(bytes: &[u8]) -> String {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex_upper(bytes.get(first..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
    use cms::content_info::{CmsVersion, ContentInfo};
    use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
    use der::asn1::{OctetString, SetOfVec, UtcTime};
    use x509_cert::attr::Attribute;
    use x509_cert::name::RelativeDistinguishedName;
    use x509_cert::spki::AlgorithmIdentifierOwned;

    const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
    const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");

    /// A throwaway code-signing certificate: Contoso Ltd, serial 80 01 02, 2024 to 2025.
    fn certificate() -> Vec<u8> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "US");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Contoso Ltd");
        params
            .distinguished_name
            .push(DnType::CommonName, "Contoso Ltd");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(vec![0x80, 0x01, 0x02].into());
        params.not_before = rcgen::date_time_ymd(2024, 1, 2);
        params.not_after = rcgen::date_time_ymd(2025, 1, 2);
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    fn algorithm(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        }
    }

    fn signer(sid: SignerIdentifier, unsigned: Option<Vec<Attribute>>) -> SignerInfo {
        SignerInfo {
            version: CmsVersion::V1,
            sid,
            digest_alg: algorithm(SHA256),
            signed_attrs: None,
            signature_algorithm: algorithm(SHA256),
            signature: OctetString::new(vec![7; 64]).expect("octets"),
            unsigned_attrs: unsigned.map(|a| SetOfVec::try_from(a).expect("attrs")),
        }
    }

    fn by_issuer_and_serial(cert: &[u8]) -> SignerIdentifier {
        let cert = Certificate::from_der(cert).expect("cert");
        SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        })
    }

    fn content_info(content_type: ObjectIdentifier, content: &impl Encode) -> Vec<u8> {
        let info = ContentInfo {
            content_type,
            content: Any::from_der(&content.to_der().expect("der")).expect("any"),
        };
        info.to_der().expect("der")
    }

    /// A p7x: `PKCX` and a SignedData with `certs` and `signers`.
    fn p7x(certs: &[&[u8]], signers: Vec<SignerInfo>) -> Vec<u8> {
        let mut set = SetOfVec::new();
        for cert in certs {
            let cert = Certificate::from_der(cert).expect("cert");
            set.insert(CertificateChoices::Certificate(cert))
                .expect("insert");
        }
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![algorithm(SHA256)]).expect("set"),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(CertificateSet(set)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(signers).expect("signers")),
        };
        [MAGIC, &content_info(SIGNED_DATA, &signed)].concat()
    }

    fn signed_by(cert: &[u8], unsigned: Option<Vec<Attribute>>) -> Vec<u8> {
        p7x(&[cert], vec![signer(by_issuer_and_serial(cert), unsigned)])
    }

    fn attribute(oid: ObjectIdentifier, value: Any) -> Attribute {
        Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).expect("values"),
        }
    }

    /// One DER element, by hand.
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let len = contents.len();
        let mut out = vec![tag];
        if len < 0x80 {
            out.push(u8::try_from(len).expect("len"));
        } else {
            let bytes = u32::try_from(len).expect("len").to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | u8::try_from(4 - skip).expect("n"));
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn timestamp_at(text: &str) -> jiff::Timestamp {
        text.parse().expect("timestamp")
    }

    /// An RFC 3161 token whose TSTInfo says `gen_time`, carrying `cert` twice as
    /// osslsigncode's TSA does.
    fn rfc3161_token(cert: &[u8], gen_time: &str) -> Any {
        let oid = |o: ObjectIdentifier| o.to_der().expect("oid");
        let tst_info = tlv(
            TAG_SEQUENCE,
            &[
                tlv(TAG_INTEGER, &[1]),
                oid(ObjectIdentifier::new_unwrap("1.2.3.4.1")),
                tlv(
                    TAG_SEQUENCE,
                    &[
                        tlv(TAG_SEQUENCE, &oid(SHA256)),
                        tlv(TAG_OCTET_STRING, &[0; 32]),
                    ]
                    .concat(),
                ),
                tlv(TAG_INTEGER, &[0x3F, 0x8C]),
                tlv(TAG_GENERALIZED_TIME, gen_time.as_bytes()),
            ]
            .concat(),
        );
        let encap = tlv(
            TAG_SEQUENCE,
            &[
                oid(TST_INFO),
                tlv(TAG_CONTEXT_0, &tlv(TAG_OCTET_STRING, &tst_info)),
            ]
            .concat(),
        );
        let signed = tlv(
            TAG_SEQUENCE,
            &[
                tlv(TAG_INTEGER, &[3]),
                tlv(TAG_SET, &[]),
                encap,
                tlv(TAG_CONTEXT_0, &[cert, cert].concat()),
                tlv(TAG_SET, &[]),
            ]
            .concat(),
        );
        let token = tlv(
            TAG_SEQUENCE,
            &[oid(SIGNED_DATA), tlv(TAG_CONTEXT_0, &signed)].concat(),
        );
        Any::from_der(&token).expect("token")
    }

    #[test]
    fn facts_of_the_signer_certificate() {
        let cert = certificate();
        let facts = read_p7x(&signed_by(&cert, None)).expect("facts");
        assert_eq!(facts.subject, "CN=Contoso Ltd, O=Contoso Ltd, C=US");
        assert_eq!(facts.issuer, "CN=Contoso Ltd, O=Contoso Ltd, C=US");
        assert_eq!(facts.thumbprint, hex_upper(&Sha1::digest(&cert)));
        assert_eq!(facts.thumbprint.len(), 40);
        assert_eq!(facts.serial_number, "800102");
        assert_eq!(facts.not_before, timestamp_at("2024-01-02T00:00:00Z"));
        assert_eq!(facts.not_after, timestamp_at("2025-01-02T00:00:00Z"));
        assert!(facts.code_signing);
        assert_eq!(facts.timestamp, None);
    }

    #[test]
    fn the_signer_is_found_by_subject_key_identifier_among_others() {
        let cert = certificate();
        let other = certificate();
        let parsed = Certificate::from_der(&cert).expect("cert");
        let ski = subject_key_id(&parsed).expect("rcgen writes a subject key identifier");
        let blob = p7x(
            &[&other, &cert],
            vec![signer(SignerIdentifier::SubjectKeyIdentifier(ski), None)],
        );
        let facts = read_p7x(&blob).expect("facts");
        assert_eq!(facts.thumbprint, hex_upper(&Sha1::digest(&cert)));
    }

    #[test]
    fn an_rfc3161_token_gives_its_gen_time_even_with_a_certificate_twice() {
        let cert = certificate();
        let token = rfc3161_token(&cert, "20231114221320.125Z");
        let blob = signed_by(&cert, Some(vec![attribute(RFC3161_TIMESTAMP, token)]));
        let facts = read_p7x(&blob).expect("facts");
        assert_eq!(
            facts.timestamp,
            Some(timestamp_at("2023-11-14T22:13:20.125Z"))
        );
    }

    #[test]
    fn a_legacy_countersignature_gives_its_signing_time() {
        let cert = certificate();
        let time = UtcTime::from_unix_duration(std::time::Duration::from_secs(1_700_000_000))
            .expect("time");
        let mut countersigner = signer(by_issuer_and_serial(&cert), None);
        countersigner.signed_attrs = Some(
            SetOfVec::try_from(vec![attribute(
                SIGNING_TIME,
                Any::encode_from(&time).expect("any"),
            )])
            .expect("attrs"),
        );
        let value = Any::encode_from(&countersigner).expect("any");
        let blob = signed_by(&cert, Some(vec![attribute(COUNTERSIGNATURE, value)]));
        let facts = read_p7x(&blob).expect("facts");
        assert_eq!(facts.timestamp, Some(timestamp_at("2023-11-14T22:13:20Z")));
    }

    #[test]
    fn a_bad_token_is_an_error_that_says_so() {
        let cert = certificate();
        let token = rfc3161_token(&cert, "2023111422132Z");
        let blob = signed_by(&cert, Some(vec![attribute(RFC3161_TIMESTAMP, token)]));
        let e = read_p7x(&blob).expect_err("bad genTime");
        assert!(e.at.starts_with("timestamp token"), "{e}");
        assert!(e.what.contains("genTime"), "{e}");
    }

    #[test]
    fn bad_blobs_say_what_is_wrong() {
        let cert = certificate();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "PKCX"),
            (b"PKCY".to_vec(), "PKCX"),
            (b"PKCX".to_vec(), "ends where an element should start"),
            (b"PKCX\x30\x80\x00\x00".to_vec(), "indefinite"),
            (b"PKCX\x30\x05\x06\x03".to_vec(), "runs past the end"),
            (
                b"PKCX\x04\x00".to_vec(),
                "the ContentInfo should have tag 0x30",
            ),
            (b"PKCX\x30\x00\x30\x00".to_vec(), "bytes follow"),
            (
                [
                    MAGIC,
                    &content_info(ID_DATA, &OctetString::new(vec![1]).expect("o")),
                ]
                .concat(),
                "not SignedData",
            ),
            (p7x(&[&cert], Vec::new()), "no SignerInfo"),
            (
                p7x(&[], vec![signer(by_issuer_and_serial(&cert), None)]),
                "is not among the 0 certificates",
            ),
        ];
        for (blob, expected) in cases {
            let e = read_p7x(&blob).expect_err(expected);
            assert!(e.to_string().contains(expected), "{expected:?} not in {e}");
        }
    }

    #[test]
    fn der_errors_give_the_byte_of_the_file() {
        let cert = certificate();
        let blob = signed_by(&cert, None);
        let e = read_p7x(&blob[..blob.len() - 1]).expect_err("truncated");
        assert_eq!(e.at, "byte 4", "{e}");
        assert!(e.what.contains("truncated"), "{e}");
        // The signer's digest algorithm OID made unterminated: `der` refuses it inside
        // the SignerInfo, and the error is said at a byte of the file.
        let oid = SHA256.to_der().expect("oid");
        let start = blob
            .windows(oid.len())
            .rposition(|w| w == oid.as_slice())
            .expect("the signer's digest algorithm");
        let mut bad = blob.clone();
        bad[start + 2..start + oid.len()].fill(0x80);
        let e = read_p7x(&bad).expect_err("bad oid");
        assert!(e.what.contains("bad DER in"), "{e}");
        assert!(e.at.starts_with("byte "), "{e}");
    }

    #[test]
    fn truncated_and_flipped_blobs_never_panic() {
        let cert = certificate();
        let token = rfc3161_token(&cert, "20231114221320Z");
        let blob = signed_by(&cert, Some(vec![attribute(RFC3161_TIMESTAMP, token)]));
        for len in 0..blob.len() {
            assert!(read_p7x(&blob[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..blob.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = blob.clone();
                flipped[i] ^= bit;
                let _ = read_p7x(&flipped);
            }
        }
    }

    #[test]
    fn random_bytes_are_an_error() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for len in [1, 7, 64, 1000, 4096] {
            let mut blob = MAGIC.to_vec();
            blob.extend((0..len).map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            }));
            assert!(read_p7x(&blob).is_err());
            assert!(read_p7x(&blob[4..]).is_err());
        }
    }

    #[test]
    fn deep_nesting_and_huge_sets_are_refused() {
        let mut deep = tlv(TAG_SEQUENCE, &[]);
        for _ in 0..100 {
            deep = tlv(TAG_SEQUENCE, &deep);
        }
        let e = read_p7x(&[MAGIC, &deep].concat()).expect_err("deep");
        assert!(e.what.contains("nest"), "{e}");
        let items = tlv(TAG_INTEGER, &[1]).repeat(MAX_SET_ITEMS + 1);
        let e = read_p7x(&[MAGIC, &tlv(TAG_SET, &items)].concat()).expect_err("wide");
        assert!(e.what.contains("SET of more than"), "{e}");
        let big = vec![0; 2 << 20];
        assert!(read_p7x(&big).expect_err("big").what.contains("more than"));
    }

    fn rdn(oid: &str, tag: Tag, value: &[u8]) -> RelativeDistinguishedName {
        let atv = AttributeTypeAndValue {
            oid: oid.parse().expect("oid"),
            value: Any::new(tag, value).expect("value"),
        };
        RelativeDistinguishedName(SetOfVec::try_from(vec![atv]).expect("rdn"))
    }

    #[test]
    fn names_are_written_as_windows_writes_them() {
        let name = Name::from(vec![
            rdn("0.9.2342.19200300.100.1.25", Tag::Ia5String, b"com"),
            rdn("2.5.4.6", Tag::PrintableString, b"US"),
            rdn("2.5.4.8", Tag::Utf8String, b"Washington"),
            rdn("2.5.4.7", Tag::Utf8String, b"Redmond"),
            rdn("2.5.4.9", Tag::Utf8String, b"1 Main St"),
            rdn("2.5.4.15", Tag::Utf8String, b"Private Organization"),
            rdn("2.5.4.10", Tag::Utf8String, b"Contoso, Inc."),
            rdn("2.5.4.11", Tag::BmpString, &[0, b'I', 0, b'T']),
            rdn("1.2.840.113549.1.9.1", Tag::Ia5String, b"a@contoso.com"),
            rdn("2.5.4.3", Tag::TeletexString, b"Caf\xe9 \"Bar\""),
        ]);
        assert_eq!(
            format_name(&name),
            "CN=\"Café \"\"Bar\"\"\", E=a@contoso.com, OU=IT, O=\"Contoso, Inc.\", \
             OID.2.5.4.15=Private Organization, STREET=1 Main St, L=Redmond, S=Washington, \
             C=US, DC=com"
        );
    }

    #[test]
    fn values_are_quoted_when_windows_quotes_them() {
        for (value, quoted) in [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("a+b", "\"a+b\""),
            ("a=b", "\"a=b\""),
            ("a\"b", "\"a\"\"b\""),
            (" lead", "\" lead\""),
            ("trail ", "\"trail \""),
            ("a;b", "\"a;b\""),
            ("#1", "\"#1\""),
            ("in side", "in side"),
        ] {
            assert_eq!(quote_value(value), quoted);
        }
    }

    #[test]
    fn multi_valued_rdns_and_other_values() {
        let two = [
            AttributeTypeAndValue {
                oid: "2.5.4.3".parse().expect("oid"),
                value: Any::new(Tag::Utf8String, b"A".as_slice()).expect("v"),
            },
            AttributeTypeAndValue {
                oid: "2.5.4.11".parse().expect("oid"),
                value: Any::new(Tag::Integer, [5_u8].as_slice()).expect("v"),
            },
        ];
        let rdn = RelativeDistinguishedName(SetOfVec::try_from(two.to_vec()).expect("rdn"));
        assert_eq!(format_name(&Name::from(vec![rdn])), "CN=A + OU=#020105");
    }

    #[test]
    fn distinguished_names_compare_as_names() {
        let same = [
            (
                "CN=Contoso Ltd, O=Contoso Ltd, C=US",
                "CN=Contoso Ltd,O=Contoso Ltd,C=US",
            ),
            (
                "CN=Contoso Ltd, O=Contoso Ltd, C=US",
                "cn=Contoso Ltd ,  o=Contoso Ltd, c=US",
            ),
            ("CN=Contoso, S=Washington", "CN=Contoso, ST=Washington"),
            ("CN=Contoso, C=US", "OID.2.5.4.3=Contoso, 2.5.4.6=US"),
            ("O=\"Contoso, Inc.\", C=US", "O=\"Contoso, Inc.\",C=US"),
            ("CN=\"a\"\"b\"", "CN=\"a\"\"b\""),
            ("CN=Contoso", "CN=\"Contoso\""),
            ("OID.2.5.4.15=Private", "oid.2.5.4.15=Private"),
            ("", "  "),
            ("not a name", "not a name"),
        ];
        for (a, b) in same {
            assert!(same_distinguished_name(a, b), "{a:?} vs {b:?}");
        }
        let different = [
            (
                "CN=Contoso Ltd, O=Contoso Ltd, C=US",
                "CN=Contoso Ltd, C=US, O=Contoso Ltd",
            ),
            ("CN=Contoso Ltd, C=US", "CN=contoso ltd, C=US"),
            ("CN=Contoso Ltd, C=US", "CN=Contoso Ltd"),
            ("O=\"Contoso, Inc.\"", "O=Contoso, Inc."),
            ("CN=Contoso", "O=Contoso"),
            ("CN=Contoso", "not a name"),
            ("CN=Contoso", ""),
        ];
        for (a, b) in different {
            assert!(!same_distinguished_name(a, b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn times_are_read_as_asn1_writes_them() {
        let at = |tag, text: &str| parse_time(tag, text.as_bytes());
        assert_eq!(
            at(Tag::UtcTime, "491231235959Z"),
            Some(timestamp_at("2049-12-31T23:59:59Z"))
        );
        assert_eq!(
            at(Tag::UtcTime, "500101000000Z"),
            Some(timestamp_at("1950-01-01T00:00:00Z"))
        );
        assert_eq!(
            at(Tag::GeneralizedTime, "20231114221320.5Z"),
            Some(timestamp_at("2023-11-14T22:13:20.5Z"))
        );
        for bad in [
            "20231114221320",
            "2023111422132Z",
            "20231314221320Z",
            "2023111422132xZ",
            "20231114221320.Z",
            "20231114221320.1234567891Z",
        ] {
            assert_eq!(at(Tag::GeneralizedTime, bad), None, "{bad}");
        }
        assert_eq!(at(Tag::UtcTime, "231114221320.5Z"), None);
    }

    #[test]
    fn serial_numbers_lose_only_the_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x01]), "01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }
}
