//! The chain of trust the session hosts have: the roots (and intermediates) an
//! administrator declares, and whether a package's signer chains to one of them, for code
//! signing, at the time it was signed (the timestamp's, else now).
//!
//! The chain is built and checked by `rustls-webpki` (signatures, validity, basic
//! constraints, name constraints, extended key usage along the path). The timestamp's own
//! signature is not verified: its time is taken as the signature says it.

use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;

use super::signature::{CertificateName, Vouched, certificate_name};
use super::verify::{Code, Problem};
use super::{Error, Result};

/// The code-signing extended key usage, 1.3.6.1.5.5.7.3.3, as its DER value.
const CODE_SIGNING_EKU: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Most certificates read from one declaration.
pub const MAX_CERTIFICATES: usize = 1_000;

/// One declared certificate.
#[derive(Debug, Clone)]
struct Declared {
    der: Vec<u8>,
    name: CertificateName,
}

/// The certificates session hosts trust: self-issued ones are roots; others are
/// intermediates the hosts have (and are trusted as anchors too, as a Windows
/// "Trusted People" or intermediate store entry would be for a chain ending there).
#[derive(Debug, Clone, Default)]
pub struct TrustedRoots {
    declared: Vec<Declared>,
}

/// Where a signer's chain leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainRoot {
    /// The root's subject, as Windows writes it.
    pub subject: String,
    /// The root's SHA-1 thumbprint, when the root is known (declared, or carried by the
    /// signature).
    pub thumbprint: Option<String>,
    /// Whether the chain was checked against declared roots (and led to this one).
    pub trusted: bool,
}

impl TrustedRoots {
    /// Reads certificates in PEM (`-----BEGIN CERTIFICATE-----` blocks, any number) or
    /// one DER certificate; `source` names where they came from, for errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Self> {
        let mut out = Self::default();
        out.add(bytes, source)?;
        Ok(out)
    }

    /// Adds the certificates of another declaration.
    pub fn add(&mut self, bytes: &[u8], source: &str) -> Result<()> {
        let ders = if bytes.starts_with(&[0x30]) {
            vec![bytes.to_vec()]
        } else {
            pem_certificates(bytes, source)?
        };
        if ders.is_empty() {
            return Err(Error::new(
                source,
                "holds no certificate (PEM blocks -----BEGIN CERTIFICATE----- or one DER certificate)",
            ));
        }
        for (i, der) in ders.into_iter().enumerate() {
            if self.declared.len() >= MAX_CERTIFICATES {
                return Err(Error::new(
                    source,
                    format!("more than {MAX_CERTIFICATES} certificates"),
                ));
            }
            let name = certificate_name(&der).map_err(|e| {
                Error::new(format!("{source} certificate {}", i + 1), e.to_string())
            })?;
            webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice())).map_err(
                |e| {
                    Error::new(
                        format!("{source} certificate {} ({})", i + 1, name.subject),
                        format!("cannot be a trust anchor: {e:?}"),
                    )
                },
            )?;
            if !self.declared.iter().any(|d| d.der == der) {
                self.declared.push(Declared { der, name });
            }
        }
        Ok(())
    }

    /// Whether no certificate is declared.
    pub fn is_empty(&self) -> bool {
        self.declared.is_empty()
    }

    /// The declared certificates' subjects and thumbprints.
    pub fn names(&self) -> impl Iterator<Item = &CertificateName> {
        self.declared.iter().map(|d| &d.name)
    }

    /// Whether a certificate with this thumbprint (any case) is declared.
    pub fn has_thumbprint(&self, thumbprint: &str) -> bool {
        self.declared
            .iter()
            .any(|d| d.name.thumbprint.eq_ignore_ascii_case(thumbprint))
    }

    /// Checks that the signer of `vouched` chains to a declared certificate, for code
    /// signing, at the signature's timestamp (else at `now`). The chain may use the
    /// certificates the signature carries and the declared intermediates.
    pub fn check(
        &self,
        vouched: &Vouched,
        now: jiff::Timestamp,
    ) -> std::result::Result<ChainRoot, Problem> {
        let at = "AppxSignature.p7x signer's chain";
        if let Some(direct) = self.directly_trusted(vouched, now, at) {
            return direct;
        }
        let declared: Vec<CertificateDer<'_>> = self
            .declared
            .iter()
            .map(|d| CertificateDer::from(d.der.as_slice()))
            .collect();
        let anchors: Vec<_> = declared
            .iter()
            .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
            .collect();
        let intermediates: Vec<CertificateDer<'_>> = vouched
            .certificates
            .iter()
            .chain(self.declared.iter().map(|d| &d.der))
            .filter(|der| **der != vouched.signer)
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        let signer_der = CertificateDer::from(vouched.signer.as_slice());
        let signer = webpki::EndEntityCert::try_from(&signer_der).map_err(|e| {
            Problem::new(
                Code::Chaining,
                at,
                format!("the signer's certificate cannot be read for chain building: {e:?}"),
            )
        })?;
        let when = vouched.facts.timestamp.unwrap_or(now);
        let seconds = u64::try_from(when.as_second()).unwrap_or(0);
        let time = UnixTime::since_unix_epoch(Duration::from_secs(seconds));
        let timed = if vouched.facts.timestamp.is_some() {
            format!("at its timestamp {when}")
        } else {
            format!("now ({when}; the signature has no timestamp)")
        };
        match signer.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::required(CODE_SIGNING_EKU),
            None,
            None,
        ) {
            Ok(path) => {
                let subject = path.anchor().subject.as_ref();
                let root = self
                    .declared
                    .iter()
                    .find(|d| der_contents(&d.name.subject_der) == subject);
                Ok(ChainRoot {
                    subject: root.map_or_else(String::new, |r| r.name.subject.clone()),
                    thumbprint: root.map(|r| r.name.thumbprint.clone()),
                    trusted: true,
                })
            }
            Err(e) => Err(self.explain(vouched, &e, at, &timed)),
        }
    }

    /// A signer whose own certificate is declared is trusted as it is, as Windows trusts a
    /// certificate in a host's Trusted People store (a self-signed line-of-business
    /// signer, say): it must still allow code signing and be valid at the signing time.
    fn directly_trusted(
        &self,
        vouched: &Vouched,
        now: jiff::Timestamp,
        at: &str,
    ) -> Option<std::result::Result<ChainRoot, Problem>> {
        let facts = &vouched.facts;
        if !self.has_thumbprint(&facts.thumbprint) {
            return None;
        }
        let when = facts.timestamp.unwrap_or(now);
        Some(if !facts.code_signing {
            Err(Problem::new(
                Code::WrongUsage,
                at,
                "the signer's certificate does not allow code signing (1.3.6.1.5.5.7.3.3): \
                 sign with a code-signing certificate",
            ))
        } else if when < facts.not_before || when > facts.not_after {
            Err(Problem::new(
                Code::Expired,
                at,
                format!(
                    "the signer's certificate is valid from {} to {}, not at {when}: re-sign the \
                     package (with a timestamp, so it outlives its certificate)",
                    facts.not_before, facts.not_after
                ),
            ))
        } else {
            Ok(ChainRoot {
                subject: facts.subject.clone(),
                thumbprint: Some(facts.thumbprint.clone()),
                trusted: true,
            })
        })
    }

    /// A Windows error and message for a chain webpki refused.
    fn explain(&self, vouched: &Vouched, e: &webpki::Error, at: &str, timed: &str) -> Problem {
        use webpki::Error as W;
        let top = chain_top(vouched);
        let roots = self.describe();
        match e {
            W::CertExpired { .. } | W::CertNotValidYet { .. } => Problem::new(
                Code::Expired,
                at,
                format!(
                    "a certificate of the chain is not valid {timed}: re-sign the package (with a \
                     timestamp, so it outlives its certificate)"
                ),
            ),
            #[allow(deprecated)]
            W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => Problem::new(
                Code::WrongUsage,
                at,
                "the signer's certificate (or one above it) does not allow code signing \
                 (1.3.6.1.5.5.7.3.3): sign with a code-signing certificate",
            ),
            W::UnknownIssuer if top.trusted => {
                Problem::new(Code::Chaining, at, format!("cannot be built: {e:?}"))
            }
            W::UnknownIssuer => {
                let (code, lead) = match &top.thumbprint {
                    Some(t) => (
                        Code::UntrustedRoot,
                        format!("ends in the root {} (thumbprint {t})", top.subject),
                    ),
                    None => (
                        Code::Chaining,
                        format!(
                            "goes up to {}, a certificate neither the signature nor the declared \
                             roots carry",
                            top.subject
                        ),
                    ),
                };
                Problem::new(
                    code,
                    at,
                    format!(
                        "{lead}, which is not among the roots the session hosts trust ({roots}): \
                         add it to the declared roots if the hosts trust it, or sign with a \
                         certificate that chains to one of them"
                    ),
                )
            }
            other => Problem::new(
                Code::Chaining,
                at,
                format!("does not verify to a declared root ({roots}): {other:?}"),
            ),
        }
    }

    /// The declared roots, for messages: `CN=A (thumbprint ...), CN=B (...)`.
    pub fn describe(&self) -> String {
        if self.declared.is_empty() {
            return "none declared".into();
        }
        self.declared
            .iter()
            .take(5)
            .map(|d| format!("{} ({})", d.name.subject, d.name.thumbprint))
            .chain((self.declared.len() > 5).then(|| format!("{} more", self.declared.len() - 5)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A DER element's contents, without its tag and length (webpki keeps an anchor's
/// subject so).
fn der_contents(der: &[u8]) -> &[u8] {
    let header = match der.get(1) {
        Some(&l) if l < 0x80 => 2,
        Some(&l) => 2 + usize::from(l & 0x7F),
        None => return &[],
    };
    der.get(header..).unwrap_or_default()
}

/// Where the certificates a signature carries lead, unchecked: from the signer up
/// through the issuers it carries, to a self-issued root (with its thumbprint) or to the
/// issuer named by the topmost certificate carried (without).
pub fn chain_top(vouched: &Vouched) -> ChainRoot {
    let carried: Vec<CertificateName> = vouched
        .certificates
        .iter()
        .filter_map(|d| certificate_name(d).ok())
        .collect();
    let Ok(mut current) = certificate_name(&vouched.signer) else {
        return ChainRoot {
            subject: vouched.facts.issuer.clone(),
            thumbprint: None,
            trusted: false,
        };
    };
    for _ in 0..16 {
        if current.self_issued() {
            return ChainRoot {
                subject: current.subject,
                thumbprint: Some(current.thumbprint),
                trusted: false,
            };
        }
        match carried
            .iter()
            .find(|c| c.subject_der == current.issuer_der && c.thumbprint != current.thumbprint)
        {
            Some(issuer) => current = issuer.clone(),
            None => break,
        }
    }
    ChainRoot {
        subject: current.issuer,
        thumbprint: None,
        trusted: false,
    }
}

/// The DER of each `CERTIFICATE` block of a PEM text.
fn pem_certificates(bytes: &[u8], source: &str) -> Result<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::new(source, "is neither PEM text nor a DER certificate"))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body = &rest[start + "-----BEGIN CERTIFICATE-----".len()..];
        let end = body.find("-----END CERTIFICATE-----").ok_or_else(|| {
            Error::new(
                source,
                format!(
                    "certificate {} has no -----END CERTIFICATE-----",
                    out.len() + 1
                ),
            )
        })?;
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| {
                Error::new(
                    source,
                    format!("certificate {} is not base64: {e}", out.len() + 1),
                )
            })?;
        out.push(der);
        if out.len() > MAX_CERTIFICATES {
            return Err(Error::new(
                source,
                format!("more than {MAX_CERTIFICATES} certificates"),
            ));
        }
        rest = &body[end..];
    }
    Ok(out)
}
